"""Seeing and preventing collapse: the alpha-Hessian eigenvalue (against a dense Hessian), DARTS-ES and the
robust-DARTS remedies."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from dartsnas import SearchNetwork, SearchSpace
from dartsnas.hessian import alpha_hessian_eigenvalue
from dartsnas.ops.lean import plain_autograd


def _tiny_network(seed=0):
    torch.manual_seed(seed)
    net = SearchNetwork(SearchSpace(nodes=2, multiplier=2), 2, 3, 3, in_channels=1, stem_multiplier=1).double()
    with torch.no_grad():  # away from the uniform start, so the Hessian has some structure
        for a in net.alphas():
            a.normal_(0, 0.5)
    return net


def _dense_hessian(net, batches):
    names = net.alpha_names()
    shapes = [a.shape for a in net.alphas()]
    flat = torch.cat([a.detach().reshape(-1) for a in net.alphas()])
    total = sum(len(y) for _, y in batches)

    def loss(v):
        parts = dict(zip(names, (p.view(s) for p, s in zip(torch.split(v, [s.numel() for s in shapes]), shapes))))
        return sum(F.cross_entropy(functional_call(net, parts, (x,)), y) * len(y) / total for x, y in batches)

    with plain_autograd():
        return torch.autograd.functional.hessian(loss, flat)


def test_the_eigenvalue_is_the_dense_hessians_largest():
    """Train mode (BatchNorm on batch statistics, which the computation must not disturb), two batches of
    different sizes, float64."""
    net = _tiny_network()
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])),
               (torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64), torch.tensor([2, 2, 1, 0]))]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    ours = alpha_hessian_eigenvalue(net, batches=batches, tol=1e-12, max_iter=200)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())  # weights, alphas, BN statistics
    assert all(p.grad is None for p in net.parameters())
    dense = _dense_hessian(net, batches)
    assert torch.allclose(dense, dense.T, atol=1e-10)
    assert ours == pytest.approx(float(torch.linalg.eigvalsh(dense)[-1]), rel=1e-6)
    # one batch through x, y; the same start each call, so the same number
    x, y = batches[0]
    assert alpha_hessian_eigenvalue(net, x, y, max_iter=5) == alpha_hessian_eigenvalue(net, batches=[(x, y)],
                                                                                        max_iter=5)


def test_the_default_tolerance_is_close_and_cheap():
    net = _tiny_network(3)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(8, 1, 8, 8, generator=g, dtype=torch.float64), torch.arange(8) % 3
    net.eval()  # eval mode too
    exact = float(torch.linalg.eigvalsh(_dense_hessian(net, [(x, y)]))[-1])
    assert alpha_hessian_eigenvalue(net, x, y) == pytest.approx(exact, rel=1e-2)
