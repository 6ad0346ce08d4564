"""The Architect against an independent exact hypergradient (autograd through the virtual step)."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dartsnas import Architect
from dartsnas.space import SearchSpace
from dartsnas.supernet import SearchNetwork


class SmoothMixture(nn.Module):
    """A smooth model with the supernet's interface: softmax(alpha)-mixed tanh / sin / softplus branches."""

    def __init__(self, d_in=5, d_hidden=6, classes=3):
        super().__init__()
        self.branches = nn.ModuleList(nn.Linear(d_in, d_hidden) for _ in range(3))
        self.head = nn.Linear(d_hidden, classes)
        self.alpha = nn.Parameter(0.3 * torch.randn(2, 3))

    def weights(self):
        return [p for n, p in self.named_parameters() if n != "alpha"]

    def alphas(self):
        return [self.alpha]

    def forward(self, x):
        w = torch.softmax(self.alpha, -1)
        acts = (torch.tanh, torch.sin, F.softplus)
        h = sum(w[0, k] * f(b(x)) for k, (f, b) in enumerate(zip(acts, self.branches)))
        h = torch.tanh(h) * (1 + w[1, 0]) + w[1, 1] * h ** 2 / 4 + w[1, 2] * torch.sin(h)
        return self.head(h)


def exact_unrolled_hypergradient(net, train, val, lr, mu, wd, momentum):
    """Reference written independently of the Architect: rebuild a copy whose weights are the virtual step
    w' = w - lr * (mu * m + grad_w L_train + wd * w) as functions of alpha, and differentiate L_val(w', alpha)."""
    net = copy.deepcopy(net)
    names = [n for n, p in net.named_parameters() if all(p is not a for a in net.alphas())]
    params = dict(net.named_parameters())
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    loss_t = F.cross_entropy(torch.func.functional_call(net, {**params, **buffers}, (train[0],)), train[1])
    grads = torch.autograd.grad(loss_t, [params[n] for n in names], create_graph=True)
    virtual = dict(params)
    for n, g in zip(names, grads):
        m = momentum.get(n, torch.zeros_like(g))
        virtual[n] = params[n] - lr * (mu * m + g + wd * params[n])
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    loss_v = F.cross_entropy(torch.func.functional_call(net, {**virtual, **buffers}, (val[0],)), val[1])
    return torch.autograd.grad(loss_v, net.alphas())


def _momentum_by_name(net, opt):
    by_id = {id(p): n for n, p in net.named_parameters()}
    return {by_id[id(p)]: s["momentum_buffer"] for p, s in opt.state.items() if "momentum_buffer" in s}


def _take_weight_steps(net, opt, batches):
    for x, y in batches:
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    for a in net.alphas():
        a.grad = None


def _rel(a, b):
    a = torch.cat([t.flatten() for t in a])
    b = torch.cat([t.flatten() for t in b])
    return float((a - b).norm() / b.norm())


@pytest.fixture
def smooth_setup():
    torch.manual_seed(0)
    net = SmoothMixture().double()
    data = [(torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))) for _ in range(4)]
    opt = torch.optim.SGD(net.weights(), lr=0.1, momentum=0.9, weight_decay=3e-3)
    _take_weight_steps(net, opt, data[2:])  # non-zero momentum buffers, as mid-search
    return net, opt, data[0], data[1]


def test_second_order_finite_difference_matches_exact_on_a_smooth_model(smooth_setup):
    net, opt, train, val = smooth_setup
    ref = exact_unrolled_hypergradient(net, train, val, 0.1, 0.9, 3e-3, _momentum_by_name(net, opt))
    fd = Architect(net, order=2).hypergradient(train, val, opt)
    assert _rel(fd, ref) < 1e-4
    # the second-order term is not negligible here: first order is far from it
    first = Architect(net, order=1).hypergradient(train, val, opt)
    assert _rel(first, ref) > 1e-2


def test_exact_mode_matches_the_reference(smooth_setup):
    net, opt, train, val = smooth_setup
    ref = exact_unrolled_hypergradient(net, train, val, 0.1, 0.9, 3e-3, _momentum_by_name(net, opt))
    exact = Architect(net, order=2, hessian="exact").hypergradient(train, val, opt)
    assert _rel(exact, ref) < 1e-10


def test_finite_difference_on_the_supernet_with_a_tiny_radius():
    # On ReLU/max-pool networks the paper's radius crosses kinks; with a tiny radius in float64 the central
    # difference converges to the exact product (BN in train mode, momentum and weight decay included).
    torch.manual_seed(1)
    net = SearchNetwork(SearchSpace(nodes=2, multiplier=2), 3, 4, 3).double()
    data = [(torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.randint(0, 4, (6,))) for _ in range(3)]
    opt = torch.optim.SGD(net.weights(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    _take_weight_steps(net, opt, data[2:])
    with torch.no_grad():
        for a in net.alphas():
            a.normal_(0, 0.5)
    from dartsnas.ops.lean import plain_autograd

    with plain_autograd():  # the reference differentiates twice; the Architect runs the default (lean) path
        ref = exact_unrolled_hypergradient(net, data[0], data[1], 0.05, 0.9, 3e-4, _momentum_by_name(net, opt))
    fd = Architect(net, order=2, fd_radius=1e-6).hypergradient(data[0], data[1], opt)
    assert _rel(fd, ref) < 1e-5
    exact = Architect(net, order=2, hessian="exact").hypergradient(data[0], data[1], opt)
    assert _rel(exact, ref) < 1e-10


def test_first_order_is_the_validation_gradient(smooth_setup):
    net, opt, train, val = smooth_setup
    (g,) = Architect(net, order=1).hypergradient(train, val, opt)
    (ref,) = torch.autograd.grad(F.cross_entropy(net(val[0]), val[1]), net.alphas())
    assert torch.allclose(g, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("order", [1, 2])
def test_hypergradient_changes_nothing_and_step_moves_only_alphas(order):
    torch.manual_seed(0)
    net = SearchNetwork(SearchSpace(nodes=2, multiplier=2), 4, 5, 3)
    opt = torch.optim.SGD(net.weights(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    batch = lambda: (torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,)))  # noqa: E731
    _take_weight_steps(net, opt, [batch()])
    train, val = batch(), batch()
    before = copy.deepcopy(net.state_dict())
    opt_before = copy.deepcopy(opt.state_dict())
    arch = Architect(net, order=order)
    arch.hypergradient(train, val, opt)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights, alphas and BN statistics
    assert all(p.grad is None for p in net.alphas())
    assert str(opt.state_dict()) == str(opt_before)
    info = arch.step(train, val, opt)
    assert set(info) >= {"arch_loss", "arch_grad_norm"} and info["arch_grad_norm"] > 0
    after = net.state_dict()
    for k in before:
        moved = not torch.equal(before[k], after[k])
        assert moved == k.startswith("alpha_"), k


def test_second_order_needs_the_weight_optimizer():
    net = SmoothMixture()
    with pytest.raises(ValueError, match="weight optimizer"):
        Architect(net, order=2).hypergradient((torch.randn(2, 5), torch.tensor([0, 1])),
                                              (torch.randn(2, 5), torch.tensor([0, 1])), None)
    with pytest.raises(ValueError, match="order"):
        Architect(net, order=3)


class _OutsideAlpha(SmoothMixture):
    """The same model with its alphas held as a plain tensor, not a registered parameter."""

    def __init__(self):
        super().__init__()
        alpha = self.alpha.detach().clone().requires_grad_(True)
        del self.alpha
        self.alpha = alpha


def test_second_order_accepts_alphas_that_are_not_registered_parameters():
    torch.manual_seed(0)
    registered = SmoothMixture()
    outside = _OutsideAlpha()
    outside.load_state_dict({k: v for k, v in registered.state_dict().items() if k != "alpha"})
    with torch.no_grad():
        outside.alpha.copy_(registered.alpha)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    grads = []
    for net in (registered, outside):
        opt = torch.optim.SGD(net.weights(), 0.1, momentum=0.9, weight_decay=3e-4)
        grads.append(Architect(net, order=2).hypergradient((x, y), (x, y), opt))
    torch.testing.assert_close(grads[0], grads[1])


def test_tensor_swap_replaces_and_restores_every_name():
    """``TensorSwap`` as ``functional_call`` behaves: plain tensors in place of parameters and buffers, tied
    weights under both names, everything restored after the block and after an error, an unknown name an
    error, and a parameter replaced since the last swap found again."""
    from dartsnas.architect import TensorSwap

    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 3))
    net[2].weight = net[0].weight  # tied
    swap = TensorSwap(net)
    before = {n: t for n, t in net.named_parameters()} | {n: t for n, t in net.named_buffers()}
    new_w, new_mean = torch.zeros(3, 3, requires_grad=True), torch.full((3,), 7.0)
    with swap.swapped({"0.weight": new_w, "1.running_mean": new_mean}):
        assert net[0].weight is new_w and net[2].weight is new_w and net[1].running_mean is new_mean
        out = net.eval()(torch.ones(2, 3)).sum()
    out.backward()
    assert new_w.grad is not None  # the forward ran on the swapped tensor
    assert all(t is before[n] for n, t in (*net.named_parameters(), *net.named_buffers()))
    with pytest.raises(KeyError, match="no parameter or buffer"):
        with swap.swapped({"0.bias": torch.ones(3), "nope": torch.ones(3)}):
            pass
    assert net[0].bias is before["0.bias"]
    net[0].bias = nn.Parameter(torch.ones(3))  # replaced: the index is rebuilt
    with swap.swapped({"0.bias": torch.zeros(3)}):
        assert float(net[0].bias.sum()) == 0.0
    assert float(net[0].bias.detach().sum()) == 3.0
