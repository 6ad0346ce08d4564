"""The supernet: the original's exact sizes, mixed-op semantics, alphas kept apart from weights."""
import pytest
import torch
import torch.nn.functional as F

from dartsnas.errors import ConfigError, UnknownNameError
from dartsnas.ops import DARTS_PRIMITIVES, OPS, register_op
from dartsnas.space import SearchSpace, get_space
from dartsnas.supernet import MixedOp, SearchNetwork, recomputed, reduction_positions


def test_default_network_matches_the_original_sizes():
    # The 2018 code's Network(16, 10, 8, criterion): 1,930,618 weights, 2 x 14 x 8 = 224 alphas.
    net = SearchNetwork(get_space("darts"), 16, 10, 8)
    assert net.num_weights() == 1_930_618
    assert net.num_alphas() == 224
    assert [tuple(a.shape) for a in net.alphas()] == [(14, 8), (14, 8)]
    assert net.reductions == (2, 5)


def test_alphas_are_in_the_state_dict_but_not_in_the_weights():
    net = SearchNetwork(SearchSpace(nodes=2, multiplier=2), 4, 10, 3)
    state = net.state_dict()
    assert "alpha_normal" in state and "alpha_reduce" in state
    weight_ids = {id(w) for w in net.weights()}
    assert all(id(a) not in weight_ids for a in net.alphas())
    assert len(net.weights()) + len(net.alphas()) == len(list(net.parameters()))
    # initialised to 1e-3 * randn
    assert max(float(a.detach().abs().max()) for a in net.alphas()) < 1e-2


def test_forward_shapes_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    net = SearchNetwork(SearchSpace(nodes=3, multiplier=2), 4, 7, 3, in_channels=1)
    x = torch.randn(2, 1, 8, 8)
    out = net(x)
    assert out.shape == (2, 7)
    F.cross_entropy(out, torch.tensor([1, 2])).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_mixed_op_is_the_softmax_weighted_sum_and_skips_none():
    torch.manual_seed(0)
    prims = DARTS_PRIMITIVES
    mixed = MixedOp(prims, 4, 1).eval()
    x = torch.randn(2, 4, 6, 6)
    w = torch.softmax(torch.randn(len(prims)), 0)
    expected = 0
    for k, op in zip(mixed.indices, mixed.ops):  # fresh ops, as registered (with their own leading ReLU)
        ref = OPS[prims[k]](4, 1, False)
        if "pool" in prims[k]:
            ref = torch.nn.Sequential(ref, torch.nn.BatchNorm2d(4, affine=False))
        ref.load_state_dict(op.state_dict())
        expected = expected + w[k] * ref.eval()(x)
    assert torch.allclose(mixed(x, w), expected, atol=1e-6)
    assert sum(mixed.relu_fed) == 4  # the four convolutions share one relu(x)
    assert prims.index("none") not in mixed.indices
    # the none weight still matters through the softmax: a larger none alpha shrinks the output
    a = torch.zeros(len(prims))
    a2 = a.clone()
    a2[prims.index("none")] = 3.0
    y1, y2 = mixed(x, torch.softmax(a, 0)), mixed(x, torch.softmax(a2, 0))
    assert y2.abs().sum() < y1.abs().sum()


def test_reduction_cells_halve_the_size_and_double_channels():
    net = SearchNetwork(SearchSpace(), 4, 10, 6)
    assert reduction_positions(6) == (2, 4)
    shapes = []
    s0 = s1 = net.stem(torch.randn(1, 3, 16, 16))
    wn, wr = net.gates()
    for cell in net.cells:
        s0, s1 = s1, cell(s0, s1, wr if cell.reduction else wn)
        shapes.append(tuple(s1.shape[1:]))
    assert shapes[1] == (16, 16, 16) and shapes[2] == (32, 8, 8) and shapes[4] == (64, 4, 4)


def test_genotype_keeps_two_edges_per_node_and_never_none():
    torch.manual_seed(0)
    net = SearchNetwork(SearchSpace(), 4, 10, 3)
    with torch.no_grad():
        net.alpha_normal[:, 0] = 5.0  # none dominates every edge
    g = net.genotype()
    for cell in (g.normal, g.reduce):
        assert len(cell.nodes) == 4
        for i, node in enumerate(cell.nodes):
            assert len(node) == 2
            assert all(op != "none" and 0 <= j < 2 + i for op, j in node)
        assert list(cell.concat) == [2, 3, 4, 5]


def test_space_without_none_and_custom_multiplier():
    space = SearchSpace(primitives=("skip_connect", "sep_conv_3x3"), nodes=3, multiplier=2)
    net = SearchNetwork(space, 4, 10, 3)
    assert net.alphas()[0].shape == (9, 2)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    assert list(net.genotype().normal.concat) == [3, 4]


def test_bad_spaces_and_sizes_raise_clear_errors():
    with pytest.raises(UnknownNameError, match="unknown op 'sep_conv_9x9'; known: .*sep_conv_3x3"):
        SearchSpace(primitives=("sep_conv_9x9",))
    with pytest.raises(ConfigError, match="multiplier"):
        SearchSpace(nodes=2, multiplier=3)
    with pytest.raises(ConfigError, match="nodes"):
        SearchSpace(nodes=0)
    with pytest.raises(ConfigError, match="more than once"):
        SearchSpace(primitives=("skip_connect", "skip_connect"))
    with pytest.raises(ConfigError, match="init_channels"):
        SearchNetwork(SearchSpace(), 0, 10, 8)
    with pytest.raises(ConfigError, match="layers"):
        SearchNetwork(SearchSpace(), 4, 10, 0)


def test_registered_op_is_usable_in_the_supernet():
    @register_op("test_double_conv")
    def build(C, stride, affine):
        return torch.nn.Sequential(torch.nn.Conv2d(C, C, 3, stride, 1, bias=False),
                                   torch.nn.BatchNorm2d(C, affine=affine))

    try:
        with pytest.raises(Exception, match="already registered"):
            register_op("test_double_conv", build)
        net = SearchNetwork(SearchSpace(primitives=("none", "test_double_conv"), nodes=2, multiplier=2), 4, 10, 3)
        assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)
        assert net.genotype().normal.ops() == ["test_double_conv"]
    finally:
        OPS.unregister("test_double_conv")


@pytest.mark.parametrize("name", [n for n in DARTS_PRIMITIVES if n != "none"])
@pytest.mark.parametrize("stride", [1, 2])
def test_darts_primitives_keep_channels_and_divide_size(name, stride):
    op = OPS[name](6, stride, False)
    y = op(torch.randn(2, 6, 8, 8))
    assert y.shape == (2, 6, 8 // stride, 8 // stride)


@pytest.mark.parametrize("mode", ["ops", "cells", "edges", "all"])
def test_recompute_gives_the_same_gradients_and_bn_statistics(mode):
    torch.manual_seed(0)
    space = SearchSpace(primitives=tuple(DARTS_PRIMITIVES), nodes=2, multiplier=2)
    plain = SearchNetwork(space, 4, 10, 3, stem_multiplier=1).double()
    lean = SearchNetwork(space, 4, 10, 3, stem_multiplier=1, recompute=mode).double()
    lean.load_state_dict(plain.state_dict())
    x, y = torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (6,))
    for net in (plain, lean):
        F.cross_entropy(net(x), y).backward()
    for (n, a), b in zip(plain.named_parameters(), lean.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-12), n
    for (n, a), b in zip(plain.named_buffers(), lean.buffers()):
        # running statistics updated once, not again by the recomputation (the lean mixed op adds its terms in
        # another order: the states, and so the statistics, may differ in the last bits)
        if a.is_floating_point():
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-15), n
        else:
            assert torch.equal(a, b), n


def test_recompute_uses_the_parameters_the_forward_saw():
    """Inside functional_call (the Architect's virtual step) the backward must differentiate the substituted
    weights, not the module's own."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    w = torch.randn(2, 3, requires_grad=True)
    x = torch.randn(4, 3)
    out = torch.func.functional_call(lin, {"weight": w, "bias": lin.bias}, (x,))
    ref = torch.autograd.grad(out.square().sum(), w)[0]
    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return recomputed(self.lin, x)
    wrap = Wrap()
    out = torch.func.functional_call(wrap, {"lin.weight": w, "lin.bias": lin.bias}, (x,))
    assert torch.allclose(torch.autograd.grad(out.square().sum(), w)[0], ref)


def test_partial_channels_send_a_quarter_through_the_ops_and_shuffle_the_rest():
    from dartsnas.supernet import channel_shuffle

    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    torch.manual_seed(0)
    prims = ("skip_connect", "sep_conv_3x3")
    edge = MixedOp(prims, 8, 1, partial=4).eval()
    assert all(m.in_channels == 2 for m in edge.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.randn(2, 8, 5, 5)
    out = edge(x, torch.tensor([1.0, 0.0]))  # only skip: the first quarter passes, all shuffled
    assert torch.allclose(out, channel_shuffle(x, 4))
    down = MixedOp(prims, 8, 2, partial=4).eval()(x, torch.tensor([0.5, 0.5]))
    assert down.shape == (2, 8, 3, 3)


def test_pc_darts_edge_weights_enter_the_forward_and_the_genotype():
    torch.manual_seed(0)
    space = SearchSpace(primitives=tuple(DARTS_PRIMITIVES), nodes=3, multiplier=2)
    net = SearchNetwork(space, 8, 10, 3, stem_multiplier=1, partial_channels=4)
    assert net.alpha_names() == ["alpha_normal", "alpha_reduce", "beta_normal", "beta_reduce"]
    assert net.beta_normal.shape == (space.num_edges,)
    e_normal, _ = net.edge_gates()
    assert torch.allclose(torch.stack([e_normal[0:2].sum(), e_normal[2:5].sum(), e_normal[5:9].sum()]),
                          torch.ones(3))
    F.cross_entropy(net(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 3])).backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in net.alphas())
    assert all(p.grad is not None for p in net.weights() if p.requires_grad)
    # make edge 3 (node 1, input 1) the strongest by its op weights, then kill it with its beta: not chosen
    with torch.no_grad():
        net.alpha_normal.zero_()
        net.alpha_normal[3, DARTS_PRIMITIVES.index("sep_conv_3x3")] = 5.0
        net.beta_normal.zero_()
    assert ("sep_conv_3x3", 1) in net.genotype().normal.nodes[1]
    with torch.no_grad():
        net.beta_normal[3] = -20.0
    assert all(inp != 1 for _, inp in net.genotype().normal.nodes[1])


@pytest.mark.parametrize("size", [8, 7])
def test_factorized_reduce_is_the_same_in_channels_last(size):
    """Channels-last takes another code path (subsample, then a stride-1 1x1 convolution) that avoids a heap
    corruption in torch's strided 1x1 convolution backward; the numbers must not change."""
    from dartsnas.ops import FactorizedReduce

    torch.manual_seed(0)
    ref = FactorizedReduce(4, 4, affine=False).double()
    lean = FactorizedReduce(4, 4, affine=False).double().to(memory_format=torch.channels_last)
    lean.load_state_dict(ref.state_dict())
    x = torch.randn(25, 4, size, size, dtype=torch.float64)
    xr, xl = x.clone().requires_grad_(), x.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    a, b = ref(xr), lean(xl)
    assert torch.allclose(a, b, atol=1e-12)
    a.square().sum().backward()
    b.square().sum().backward()
    assert torch.allclose(xr.grad, xl.grad, atol=1e-12)
    assert torch.allclose(ref.conv_1.weight.grad, lean.conv_1.weight.grad, atol=1e-10)


def test_the_library_default_is_the_fast_path_and_switches_for_a_double_backward():
    """SearchNetwork(space, ...) alone runs what `dartsnas search` runs (lean ops, channels-last); the exact
    hypergradient still equals plain autograd's in NCHW, and a double backward done by hand is an error."""
    from dartsnas.architect import Architect

    torch.manual_seed(0)
    space = SearchSpace(nodes=2, multiplier=2)
    fast = SearchNetwork(space, 4, 5, 3).double()
    assert fast.recompute == "ops" and all(e.lean for c in fast.cells for e in c.edges)
    assert fast.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    plain = SearchNetwork(space, 4, 5, 3, recompute="off", channels_last=False).double()
    plain.load_state_dict(fast.state_dict())
    assert plain.stem[0].weight.is_contiguous()
    x, y = torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.randint(0, 5, (6,))
    xv, yv = torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.randint(0, 5, (6,))
    out_fast, out_plain = fast(x), plain(x)  # an NCHW input is taken in the network's own format
    assert torch.allclose(out_fast, out_plain, atol=1e-12)
    grads = []
    for net in (fast, plain):
        opt = torch.optim.SGD(net.weights(), 0.1, momentum=0.9)
        arch = Architect(net, order=2, lr=3e-4, hessian="exact")
        grads.append(arch.hypergradient((x, y), (xv, yv), opt))
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(*grads))
    loss = F.cross_entropy(fast(x), y)
    with pytest.raises(RuntimeError, match="plain_autograd"):  # never a silently wrong second derivative
        torch.autograd.grad(loss, fast.alphas()[0], create_graph=True)
