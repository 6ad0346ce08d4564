"""The lean autograd of the DARTS ops (``--recompute ops``) and the faster depthwise convolution: the same
numbers as plain autograd, less kept for the backward pass."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dartsnas.ops import OPS, ReLUConvBN
from dartsnas.ops.depthwise import DepthwiseConv2d
from dartsnas.ops.lean import lean_forward, plain_autograd
from dartsnas.space import SearchSpace
from dartsnas.supernet import SearchNetwork


@pytest.mark.parametrize("k,stride,dilation", [(3, 1, 1), (5, 1, 1), (3, 1, 2), (5, 1, 2), (3, 2, 1), (5, 2, 1),
                                               (3, 2, 2), (5, 2, 2)])
@pytest.mark.parametrize("size", [8, 7])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_depthwise_conv_equals_nn_conv2d_twice_differentiated(k, stride, dilation, size, fmt):
    """Forward, gradients and the double backward (the exact hypergradient needs it) equal ``nn.Conv2d``'s,
    in float64, odd and even sizes, both memory formats."""
    torch.manual_seed(0)
    pad = dilation * (k - 1) // 2
    ours = DepthwiseConv2d(4, k, stride, pad, dilation).double()
    ref = nn.Conv2d(4, 4, k, stride, pad, dilation, groups=4, bias=False).double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 4, size, size, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
    y_ours, y_ref = ours(x), ref(x)
    assert torch.allclose(y_ours, y_ref, rtol=0, atol=1e-13)
    g = torch.randn_like(y_ref)
    first = [torch.autograd.grad(y, (x, m.weight), g, create_graph=True) for y, m in ((y_ours, ours), (y_ref, ref))]
    for a, b in zip(*first):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    second = [torch.autograd.grad(sum((t ** 2).sum() for t in grads), (x, m.weight))
              for grads, m in zip(first, (ours, ref))]
    for a, b in zip(*second):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-11)


def _grads(module, x):
    out = module(x)
    g = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    return out, torch.autograd.grad(out, (x, *module.parameters()), g)


def _search_op(name: str, stride: int) -> nn.Module:
    """A candidate op as the supernet builds it (affine-free BN; pooling gets one), or a cell's preprocessing."""
    if name == "preprocess":
        return ReLUConvBN(6, 6, 1, 1, 0, affine=False)
    op = OPS[name](6, stride, False)
    return nn.Sequential(op, nn.BatchNorm2d(6, affine=False)) if "pool" in name else op


@pytest.mark.parametrize("name,stride", [(n, s) for n in ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
                                                          "dil_conv_5x5", "max_pool_3x3", "avg_pool_3x3")
                                         for s in (1, 2)] + [("skip_connect", 2), ("preprocess", 1)])
@pytest.mark.parametrize("size,fmt", [(9, torch.channels_last), (8, torch.contiguous_format), (1, torch.channels_last)])
def test_lean_op_equals_the_module(name, stride, size, fmt):
    """Output, input and weight gradients, and BN running statistics (and their counter) equal the module's: the
    candidate ops, the factorized reduce (a reduction's skip op) and the 1x1 preprocessing, on odd, even and
    one-pixel maps."""
    torch.manual_seed(1)
    op = _search_op(name, stride).double()
    twin = copy.deepcopy(op)
    x = torch.randn(4, 6, size, size, dtype=torch.float64).contiguous(memory_format=fmt)
    x.requires_grad_()

    class Lean(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, t):
            out = lean_forward(self.inner, t)
            assert out is not None, "the lean path must cover this op"
            return out

    out_ref, grads_ref = _grads(op, x)
    out_lean, grads_lean = _grads(Lean(twin), x)
    assert torch.allclose(out_lean, out_ref, rtol=0, atol=1e-12)
    for a, b in zip(grads_lean, grads_ref):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    for (n, a), b in zip(op.named_buffers(), twin.buffers()):
        assert torch.allclose(a.double(), b.double(), rtol=0, atol=1e-14), n


def test_lean_forward_leaves_other_ops_to_their_modules():
    assert lean_forward(OPS["skip_connect"](4, 1, False), torch.randn(2, 4, 8, 8)) is None  # an identity
    assert lean_forward(OPS["skip_connect"](4, 2, True).train(), torch.randn(2, 4, 8, 8)) is None  # affine BN
    assert lean_forward(OPS["sep_conv_3x3"](4, 1, True).train(), torch.randn(2, 4, 8, 8)) is None  # affine BN
    assert lean_forward(nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.BatchNorm2d(4)), torch.randn(2, 4, 8, 8)) is None


def _saved_bytes(net, x, y):
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(net(x), y)
    return sum(seen.values())


def test_ops_mode_keeps_under_a_quarter_of_plain_autograd():
    """What the backward pass keeps, measured by autograd's saved-tensor hooks on the paper's cell: 0.21 of plain
    autograd's (0.36 before the pooling ops, the factorized reduce and the preprocessing kept only their inputs)."""
    torch.manual_seed(0)
    plain = SearchNetwork(SearchSpace(), C=8, layers=3, recompute="off")
    lean = copy.deepcopy(plain).set_recompute("ops")
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    assert _saved_bytes(lean, x, y) < 0.25 * _saved_bytes(plain, x, y)


def test_a_double_backward_through_the_lean_functions_is_a_clear_error():
    torch.manual_seed(0)
    net = SearchNetwork(SearchSpace(nodes=2, multiplier=2), C=4, layers=3, stem_multiplier=1, recompute="ops")
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    with pytest.raises(RuntimeError, match="plain_autograd"):
        torch.autograd.grad(F.cross_entropy(net(x), y), net.weights(), create_graph=True)


def test_plain_autograd_gives_the_double_backward_of_plain_modules():
    """Under ``plain_autograd()`` an ops-mode network differentiates twice exactly as an ``off`` one."""
    torch.manual_seed(0)
    space = SearchSpace(nodes=2, multiplier=2)
    nets = [SearchNetwork(space, C=4, layers=3, stem_multiplier=1, recompute=m).double() for m in ("off", "ops")]
    nets[1].load_state_dict(nets[0].state_dict())
    x, y = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (4,))
    results = []
    for net in nets:
        with plain_autograd():
            g = torch.autograd.grad(F.cross_entropy(net(x), y), net.weights(), create_graph=True)
            results.append(torch.autograd.grad(sum((t ** 2).sum() for t in g), net.alphas()))
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", ["sep_conv_5x5", "dil_conv_3x3", "max_pool_3x3", "skip_connect"])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("with_acc", [False, True])
@pytest.mark.parametrize("frozen_input", [False, True])
def test_gated_lean_op_equals_the_weighted_module(name, fmt, with_acc, frozen_input):
    """``lean_forward(op, x, (gates, k, acc))`` is ``acc + gates[k] * op(x)``: values, and the gradients of acc,
    the gates (from BN's backward), x and the op's weights, in both memory formats, also when x wants no
    gradient (an edge fed by a frozen stem)."""
    torch.manual_seed(3)
    op = _search_op(name, 2 if name == "skip_connect" else 1).double()  # skip: a reduction's factorized reduce
    twin = copy.deepcopy(op)
    x = torch.randn(4, 6, 7, 7, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_(not frozen_input)
    if "sep" in name or "dil" in name:
        x_in = F.relu(x)  # the supernet feeds these ops relu(x) and strips their leading ReLU
    else:
        x_in = x
    gates = torch.rand(8, dtype=torch.float64, requires_grad=True)
    size = 4 if name == "skip_connect" else 7
    acc0 = torch.randn(4, 6, size, size, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_(True)
    g = torch.randn(4, 6, size, size, dtype=torch.float64)
    wants = [t for t in (acc0, gates, x) if t.requires_grad]

    ref_out = gates[5] * op(x_in)
    if with_acc:
        ref_out = acc0 * 1.0 + ref_out
    ref = torch.autograd.grad(ref_out, [*wants, *op.parameters()], g, allow_unused=True, retain_graph=True)

    if "sep" in name or "dil" in name:
        from dartsnas.supernet import _strip_leading_relu
        assert _strip_leading_relu(twin)
    acc = acc0 * 1.0 if with_acc else None  # a non-leaf, modified in place
    out = lean_forward(twin, x_in, (gates, 5, acc))
    if with_acc:
        assert out is acc
    got = torch.autograd.grad(out, [*wants, *twin.parameters()], g, allow_unused=True)
    assert torch.allclose(out, ref_out, rtol=0, atol=1e-12)
    for a, b in zip(got, ref):
        if b is None:
            assert a is None or not a.abs().any()
            continue
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("mode", ["ops", "edges"])
def test_first_order_hypergradient_and_weight_step_match_plain_autograd(mode, fmt):
    """The first-order alpha step (an alpha-only backward: the lean functions skip weight gradients and their
    recomputation) and a weight step give plain autograd's numbers, BN statistics included."""
    from dartsnas import Architect

    torch.manual_seed(2)
    space = SearchSpace(nodes=2, multiplier=2)
    nets = [SearchNetwork(space, C=4, layers=3, stem_multiplier=1, recompute=m).double().to(memory_format=fmt)
            for m in ("off", mode)]
    nets[1].load_state_dict(nets[0].state_dict())
    x, y = torch.randn(6, 3, 8, 8, dtype=torch.float64).contiguous(memory_format=fmt), torch.randint(0, 10, (6,))
    out = []
    for net in nets:
        hyper = Architect(net, order=1).hypergradient((x, y), (x, y))
        for a in net.alphas():
            a.requires_grad_(False)
        F.cross_entropy(net(x), y).backward()
        out.append((hyper, [p.grad for p in net.weights()], list(net.buffers())))
    for a, b in zip(out[0][0], out[1][0]):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)
    for a, b in zip(out[0][1], out[1][1]):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)
    for a, b in zip(out[0][2], out[1][2]):
        assert torch.allclose(a.double(), b.double(), rtol=0, atol=1e-14)


def test_lean_block_with_a_leading_relu_and_a_frozen_depthwise_weight():
    """The pointwise gradient is rebuilt from relu(x) even when the depthwise weight wants no gradient."""
    from dartsnas.ops.darts import DilConv

    torch.manual_seed(3)
    op = DilConv(4, 4, 3, 1, 2, 2, affine=False).double()
    op[1].weight.requires_grad_(False)
    twin = copy.deepcopy(op)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    ref = torch.autograd.grad(op(x).square().sum(), (x, op[2].weight))
    ours = torch.autograd.grad(lean_forward(twin, x).square().sum(), (x, twin[2].weight))
    for a, b in zip(ref, ours):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_lean_forward_refuses_what_it_would_not_reproduce():
    from dartsnas.ops.darts import DilConv

    class Residual(DilConv):  # a user op overriding forward
        def forward(self, x):
            return x + super().forward(x)

    x = torch.randn(2, 4, 6, 6)
    assert lean_forward(Residual(4, 4, 3, 1, 1, 1, affine=False), x) is None
    hooked = OPS["dil_conv_3x3"](4, 1, False)
    hooked[2].register_forward_hook(lambda m, i, o: o * 2)
    assert lean_forward(hooked, x) is None
    non_square = nn.Sequential(nn.MaxPool2d((3, 1), stride=(2, 1), padding=(1, 0)), nn.BatchNorm2d(4, affine=False))
    assert lean_forward(non_square, x) is None
    counted = nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=True), nn.BatchNorm2d(4, affine=False))
    assert lean_forward(counted, x) is None


def test_lean_bn_with_one_value_per_channel_is_the_error_batchnorm_gives():
    op = OPS["dil_conv_3x3"](4, 2, False)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        op(torch.randn(1, 4, 2, 2))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        lean_forward(copy.deepcopy(op), torch.randn(1, 4, 2, 2, requires_grad=True))


def test_gated_lean_op_refuses_a_sum_it_cannot_add_into():
    """An accumulator without gates, or of another shape or dtype, is a clear error (never a silently dropped or
    broadcast sum)."""
    op = OPS["dil_conv_3x3"](4, 1, False)
    x = torch.randn(2, 4, 6, 6)
    gates = torch.rand(8, requires_grad=True)
    with pytest.raises(ValueError, match="needs the gates"):
        lean_forward(copy.deepcopy(op), x, (None, 1, torch.zeros(2, 4, 6, 6)))
    with pytest.raises(RuntimeError, match="one shape and dtype"):
        lean_forward(copy.deepcopy(op), x, (gates, 1, torch.zeros(2, 4, 3, 3) * gates[0]))
    with pytest.raises(RuntimeError, match="one shape and dtype"):
        lean_forward(copy.deepcopy(op), x, (gates, 1, torch.zeros(2, 4, 6, 6, dtype=torch.float64) * gates[0]))


@pytest.mark.parametrize("k,size,phases", [(3, 8, True), (3, 6, True), (5, 8, True), (5, 16, False), (3, 7, False)])
def test_dilated_weight_gradient_through_pixel_phases(k, size, phases, monkeypatch):
    """A dilation-2 weight gradient on an even channels-last map goes through the four pixel phases where that
    is the faster kernel, and equals oneDNN's own in float64 either way."""
    from dartsnas.ops import depthwise

    taken = []
    real = depthwise._phases
    monkeypatch.setattr(depthwise, "_phases", lambda t: taken.append(t.shape) or real(t))
    torch.manual_seed(3)
    C, p = 5, k - 1
    x = torch.randn(2, C, size, size, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    g = torch.randn(2, C, size, size, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(C, 1, k, k, dtype=torch.float64)
    _, grad_w = depthwise.depthwise_backward(g, x, w, (False, 1, p, 2), False, True)
    ref = torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [p, p], [2, 2], False, [0, 0], C,
                                              [False, True, False])[1]
    assert bool(taken) == phases
    assert torch.allclose(grad_w, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("how", ["autocast", "autocast, bf16 input", "autocast, fp16 input", "bf16 module"])
def test_bf16_dilated_depthwise_weight_gradient_is_right_on_the_cpu(k, how):
    """oneDNN's bf16 weight gradient of a dilated stride-1 depthwise convolution is wrong on the CPU on maps of
    32 pixels (relative error above 1 on torch 2.14.1, channels-last); ours is the float32 one, rounded."""
    torch.manual_seed(4)
    conv = DepthwiseConv2d(8, k, 1, k - 1, 2)
    ref_w = conv.weight.detach().clone().requires_grad_()
    x = torch.randn(2, 8, 32, 32).contiguous(memory_format=torch.channels_last)
    g = torch.randn(2, 8, 32, 32).contiguous(memory_format=torch.channels_last)
    if how.startswith("autocast"):
        x = x.bfloat16() if "bf16 input" in how else x.half() if "fp16 input" in how else x
        with torch.autocast("cpu", dtype=torch.bfloat16):  # inside a network the input is often bf16 already
            y = conv(x)
        assert y.dtype == torch.bfloat16
        y.backward(g.bfloat16())
        grad = conv.weight.grad
    else:
        conv = conv.bfloat16()
        conv(x.bfloat16()).backward(g.bfloat16())
        grad = conv.weight.grad.float()
    F.conv2d(x.bfloat16().float(), ref_w.bfloat16().float(), None, 1, k - 1, 2, 8).backward(g.bfloat16().float())
    err = (grad - ref_w.grad).abs().max() / ref_w.grad.abs().max()
    assert err < 0.02


def test_small_statistics_share_blocks():
    """BN statistics kept until the backward come from shared blocks (not one heap allocation each), 64-byte
    aligned and disjoint; a request too large for a block gets a tensor of its own."""
    from dartsnas.ops.slab import BLOCK_FLOATS, float_pieces

    a, b = float_pieces(5, 64)
    c, = float_pieces(3)
    assert (a.numel(), b.numel(), c.numel()) == (5, 64, 3)
    base = a.untyped_storage().data_ptr()
    assert b.untyped_storage().data_ptr() == base and c.untyped_storage().data_ptr() == base
    assert all(t.data_ptr() % 64 == 0 for t in (a, b, c))
    a.fill_(1), b.fill_(2), c.fill_(3)
    assert a.eq(1).all() and b.eq(2).all() and c.eq(3).all()  # no overlap
    big, = float_pieces(BLOCK_FLOATS)
    assert big.untyped_storage().data_ptr() != base and big.untyped_storage().nbytes() == 4 * BLOCK_FLOATS
