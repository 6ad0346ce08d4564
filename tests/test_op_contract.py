"""The op contract, for every registered op (the shipped ones and the README's example user ops): built from
(C, stride, affine), C channels in and out, spatial size divided by stride, gradients reach every parameter,
works inside the supernet and in a trained network, and its multiply-adds are counted."""
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from dartsnas.genotype import CellDesign, Genotype
from dartsnas.network import EvalNetwork
from dartsnas.ops import OPS, build_op
from dartsnas.plugins import load_ops_module
from dartsnas.profile import count_macs
from dartsnas.space import SearchSpace
from dartsnas.supernet import SearchNetwork

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_ops.py"
load_ops_module(str(EXAMPLE))
ALL_OPS = sorted(OPS.names())
C = 8


def _has_params(op: nn.Module) -> bool:
    return any(p.numel() for p in op.parameters())


@pytest.mark.parametrize("name", ALL_OPS)
@pytest.mark.parametrize("stride", [1, 2])
def test_shapes_and_gradients(name, stride):
    torch.manual_seed(0)
    op = build_op(name, C, stride, True)
    x = torch.randn(2, C, 8, 8, requires_grad=True)
    y = op(x)
    assert y.shape == (2, C, 8 // stride, 8 // stride)
    if name == "none":
        assert not y.any()
        return
    (y * torch.randn_like(y)).sum().backward()
    for pname, p in op.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"
    assert x.grad is not None and x.grad.abs().sum() > 0
    # channels-last input and float64 give the same result (no layout or precision assumption)
    op64 = build_op(name, C, stride, True).double()
    op64.load_state_dict(op.state_dict())
    op.eval(), op64.eval()
    with torch.no_grad():
        a = op(x.detach().contiguous(memory_format=torch.channels_last))
        b = op64(x.detach().double())
    assert torch.allclose(a.double(), b, atol=1e-4, rtol=1e-3) or name.startswith("approx_")  # 8-bit rounding


@pytest.mark.parametrize("name", ALL_OPS)
def test_inside_the_supernet_and_in_a_trained_network(name):
    torch.manual_seed(0)
    prims = (name, "skip_connect") if name != "skip_connect" else (name, "max_pool_3x3")
    space = SearchSpace(primitives=prims, nodes=2, multiplier=2)
    net = SearchNetwork(space, 4, 3, 3, in_channels=1)
    x = torch.randn(2, 1, 8, 8)
    logits = net(x)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in net.alphas())
    design = CellDesign(nodes=[[(name, 0), (name, 1)], [(name, 1), (name, 2)]], concat=[2, 3])
    genotype = Genotype(normal=design, reduce=design, primitives=space.primitives)
    model = EvalNetwork(genotype, 8, 3, 3, in_channels=1)
    out = model(x)
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape == (2, 3)
    out.sum().backward()


def _conv_linear_macs(op: nn.Module, x: torch.Tensor) -> int:
    """Independent count: multiply-adds of every Conv2d and Linear from forward hooks."""
    total = [0]

    def conv_hook(m, inp, out):
        total[0] += out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, inp, out):
        total[0] += out.numel() // out.shape[0] * m.in_features

    handles = [m.register_forward_hook(conv_hook) for m in op.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_hook(linear_hook) for m in op.modules() if isinstance(m, nn.Linear)]
    op.eval()
    with torch.no_grad():
        op(x)
    for h in handles:
        h.remove()
    return total[0]


@pytest.mark.parametrize("name", ALL_OPS)
def test_multiply_adds_are_counted(name):
    op = build_op(name, C, 1, True)
    x = torch.zeros(1, C, 8, 8)
    reference = _conv_linear_macs(op, x)
    counted = count_macs(op, (C, 8, 8))
    if name == "attention":  # the attention matmuls come on top of its 1x1 convs
        assert counted > reference > 0
    else:
        assert counted == reference
    assert (counted > 0) == _has_params(op)


def test_every_shipped_op_has_a_description():
    from dartsnas.ops import describe_op

    missing = [n for n in ALL_OPS if not describe_op(n)]
    assert not missing


def test_the_example_user_ops_are_registered():
    assert {"conv_3x3_gelu", "grouped_bottleneck_3x3"} <= set(ALL_OPS)
    # loaded by path once: naming it again returns the same module and registers nothing twice
    assert load_ops_module(str(EXAMPLE)) is load_ops_module(str(EXAMPLE.parent / ".." / "examples" / "my_ops.py"))
