"""The layout-keeping data movements (ops/layout.py): the same values and gradients as the plain operations, with
every gradient in the input's memory format, and twice differentiable (the exact hypergradient needs that)."""
import pytest
import torch
import torch.nn.functional as F

from dartsnas import SearchNetwork, SearchSpace
from dartsnas.genotype import published_genotype
from dartsnas.network import EvalNetwork
from dartsnas.ops.darts import FactorizedReduce
from dartsnas.ops.layout import cat_channels, even_odd_pixels, global_avg_pool

CL = torch.channels_last


def _cl(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_(True)


def _is_cl(t):
    return t.is_contiguous(memory_format=CL) and not t.is_contiguous()


def test_cat_channels_values_and_channels_last_gradients():
    xs = [_cl(3, c, 5, 4, seed=c) for c in (2, 3, 4)]
    out = cat_channels(xs)
    torch.testing.assert_close(out, torch.cat(xs, dim=1))
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, xs, g)
    ref = torch.autograd.grad(torch.cat(xs, dim=1), xs, g)
    for got, want in zip(grads, ref):
        torch.testing.assert_close(got, want)
        assert _is_cl(got)
    # the plain operation's gradients are channel slices, not channels-last (what this module is for)
    assert not all(_is_cl(r) for r in ref)


def test_even_odd_pixels_values_and_gradient():
    for h, w in ((6, 6), (7, 5)):
        x = _cl(2, 3, h, w)
        even, odd = even_odd_pixels(x)
        torch.testing.assert_close(even, x[:, :, ::2, ::2])
        torch.testing.assert_close(odd, x[:, :, 1::2, 1::2])
        assert _is_cl(even) and _is_cl(odd)
        ge, go = torch.randn_like(even), torch.randn_like(odd)
        (grad,) = torch.autograd.grad((even * ge).sum() + (odd * go).sum(), x)
        (ref,) = torch.autograd.grad((x[:, :, ::2, ::2] * ge).sum() + (x[:, :, 1::2, 1::2] * go).sum(), x)
        torch.testing.assert_close(grad, ref)
        assert _is_cl(grad)
        # one output unused: its gradient is None, the other still lands
        (grad_even_only,) = torch.autograd.grad((even * ge).sum(), x)
        torch.testing.assert_close(grad_even_only, torch.autograd.grad((x[:, :, ::2, ::2] * ge).sum(), x)[0])


def test_global_avg_pool_values_and_gradient():
    x = _cl(4, 5, 3, 6)
    out = global_avg_pool(x)
    torch.testing.assert_close(out, F.adaptive_avg_pool2d(x, 1).flatten(1))
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, g)
    torch.testing.assert_close(grad, torch.autograd.grad(F.adaptive_avg_pool2d(x, 1).flatten(1), x, g)[0])
    assert _is_cl(grad)


def test_twice_differentiable():
    x = _cl(2, 2, 4, 4)
    y = _cl(2, 3, 4, 4, seed=1)
    assert torch.autograd.gradcheck(lambda a, b: cat_channels([a, b]), (x, y))
    assert torch.autograd.gradgradcheck(lambda a, b: cat_channels([a * a, b * b]), (x, y))
    assert torch.autograd.gradgradcheck(lambda a: [t * t for t in even_odd_pixels(a)], (x,))
    assert torch.autograd.gradgradcheck(lambda a: global_avg_pool(a * a), (x,))


def test_nchw_inputs_take_the_plain_operations():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    assert cat_channels([x, x]).grad_fn.name().startswith("Cat")
    assert global_avg_pool(x).grad_fn.name() != "_GlobalAvgPoolBackward"


def test_factorized_reduce_gradient_is_channels_last_and_equal():
    torch.manual_seed(0)
    fr = FactorizedReduce(4, 6).double()
    relu_grads = []
    fr.relu.register_forward_hook(lambda m, i, out: out.register_hook(relu_grads.append) and None)
    for h in (8, 7):
        x = torch.randn(3, 4, h, h, dtype=torch.float64)
        x_cl = x.contiguous(memory_format=CL).requires_grad_(True)
        x_nc = x.clone().requires_grad_(True)
        out_cl, out_nc = fr(x_cl), fr(x_nc)
        torch.testing.assert_close(out_cl, out_nc)
        g = torch.randn_like(out_nc)
        (grad_cl,) = torch.autograd.grad(out_cl, x_cl, g)
        (grad_nc,) = torch.autograd.grad(out_nc, x_nc, g)
        torch.testing.assert_close(grad_cl, grad_nc)
        assert _is_cl(grad_cl) and _is_cl(relu_grads[-2])  # [-1] is the NCHW run's


@pytest.mark.parametrize("recompute", ["off", "ops", "eval"])
def test_network_gradients_stay_channels_last(recompute):
    """Every module output's gradient in a channels-last supernet (or discrete network) is channels-last (mixed
    layouts cost 10x in elementwise kernels on the CPU)."""
    torch.manual_seed(0)
    if recompute == "eval":
        net = EvalNetwork(published_genotype("DARTS_V2"), 4, 10, 3)
    else:
        net = SearchNetwork(SearchSpace(nodes=2, multiplier=2), C=4, layers=3, recompute=recompute)
    net.to(memory_format=CL)
    x = torch.randn(4, 3, 8, 8).contiguous(memory_format=CL)
    bad = []

    def hook(module, inputs, out):
        if torch.is_tensor(out) and out.dim() == 4 and out.requires_grad and out.shape[-1] > 1:
            name = type(module).__name__
            out.register_hook(lambda g: None if _is_cl(g) else bad.append((name, g.shape, g.stride())))

    for m in net.modules():
        m.register_forward_hook(hook)
    out = net(x)
    F.cross_entropy(out[0] if isinstance(out, tuple) else out, torch.tensor([0, 1, 2, 3])).backward()
    assert not bad


def test_cat_channels_with_an_input_that_wants_no_gradient():
    a = _cl(2, 3, 4, 4)
    b = torch.randn(2, 2, 4, 4, dtype=torch.float64).contiguous(memory_format=CL)  # no gradient wanted
    out = cat_channels([a, b])
    (grad,) = torch.autograd.grad(out, a, torch.ones_like(out))
    assert torch.equal(grad, torch.ones_like(a)) and _is_cl(grad)
