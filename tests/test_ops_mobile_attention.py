"""Mobile (MobileNet / EfficientNet) and transformer (CoAtNet) ops: shapes, residuals, parameter counts by hand,
the relative position bias, gradients, float64, channels_last and FLOP counting."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import dartsnas.ops.attention  # noqa: F401  (registers the ops)
import dartsnas.ops.mobile  # noqa: F401
from dartsnas.ops import OPS, build_op
from dartsnas.ops.attention import ATTENTION_OPS, FeedForward, RelativeSelfAttention
from dartsnas.ops.mobile import MOBILE_OPS, FusedMBConv, MBConv, MobileSepConv

NEW_OPS = MOBILE_OPS + ATTENTION_OPS
RESIDUAL_OPS = tuple(n for n in NEW_OPS if n.startswith(("mbconv", "fused_mbconv", "mb_conv", "fused_mb_conv"))
                     or n in ATTENTION_OPS)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def zero_all_parameters(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()


def test_every_variant_is_registered():
    assert len(MOBILE_OPS) == 16 and len(set(MOBILE_OPS)) == 16
    expected = {"mb_sep_conv_3x3", "mb_sep_conv_5x5", "attention", "ffn", "mb_conv_3x3", "fused_mb_conv_3x3"}
    expected |= {f"mbconv_{k}x{k}_e{e}{s}" for k in (3, 5) for e in (3, 6) for s in ("", "_se")}
    expected |= {f"fused_mbconv_3x3_e{e}{s}" for e in (3, 6) for s in ("", "_se")}
    assert set(NEW_OPS) == expected
    assert all(name in OPS for name in expected)
    assert isinstance(build_op("mbconv_5x5_e6_se", 8, 1, True), MBConv)
    assert isinstance(build_op("fused_mbconv_3x3_e3", 8, 2, True), FusedMBConv)
    assert isinstance(build_op("mb_sep_conv_5x5", 8, 1, True), MobileSepConv)
    assert isinstance(build_op("attention", 8, 1, True), RelativeSelfAttention)
    assert isinstance(build_op("ffn", 8, 1, True), FeedForward)


@pytest.mark.parametrize("name", NEW_OPS)
def test_output_shapes(name):
    torch.manual_seed(0)
    for C in (4, 16):
        for stride in (1, 2):
            op = build_op(name, C, stride, False)
            for H, W in ((8, 8), (7, 7), (5, 6)):
                out = op(torch.randn(2, C, H, W))
                assert out.shape == (2, C, math.ceil(H / stride), math.ceil(W / stride)), (C, stride, H, W)


@pytest.mark.parametrize("name", NEW_OPS)
def test_residual_exactly_at_stride_one(name):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 7)
    for stride in (1, 2):
        op = build_op(name, 4, stride, True)
        zero_all_parameters(op)
        out = op(x)
        if name not in RESIDUAL_OPS:
            expected = torch.zeros_like(out)
        elif stride == 1:
            expected = x
        elif name in ATTENTION_OPS:  # the residual is taken on the pooled map
            expected = F.max_pool2d(x, 3, 2, 1)
        else:
            expected = torch.zeros_like(out)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_mobile_sep_conv_parameter_count():
    C = 16
    by_hand = C * 3 * 3 + C * C + 2 * (2 * C)  # depthwise, pointwise, two affine BNs
    assert n_params(build_op("mb_sep_conv_3x3", C, 1, True)) == by_hand == 464
    assert n_params(build_op("mb_sep_conv_3x3", C, 1, False)) == C * 9 + C * C


def test_mbconv_se_parameter_count():
    C, e = 16, 6
    hidden = C * e
    squeeze = C // 4  # 0.25 of the block's input channels
    expand = C * hidden + 2 * hidden
    depthwise = hidden * 3 * 3 + 2 * hidden
    se = (hidden * squeeze + squeeze) + (squeeze * hidden + hidden)  # 1x1 convs with bias
    project = hidden * C + 2 * C
    with_se = build_op("mbconv_3x3_e6_se", C, 1, True)
    without = build_op("mbconv_3x3_e6", C, 1, True)
    assert n_params(with_se) == expand + depthwise + se + project == 5220
    assert n_params(with_se) - n_params(without) == se == 868
    fused = build_op("fused_mbconv_3x3_e6_se", C, 1, True)
    assert n_params(fused) == (C * hidden * 9 + 2 * hidden) + se + project


@pytest.mark.parametrize("name", [n for n in MOBILE_OPS if n.endswith("_se")])
def test_squeeze_excitation_changes_the_output(name):
    torch.manual_seed(0)
    op = build_op(name, 8, 1, True).eval()
    x = torch.randn(2, 8, 6, 6)
    with_se = op(x)
    op.se = torch.nn.Identity()
    assert not torch.allclose(with_se, op(x))
    expand = int(name.split("_e")[-1].split("_")[0])
    # squeeze to max(1, 3 // 4) = 1 channel: a quarter of the block's input channels, not of the expanded ones
    assert tuple(build_op(name, 3, 1, True).se.reduce.weight.shape[:2]) == (1, 3 * expand)


def test_attention_heads_and_channel_checks():
    assert build_op("attention", 4, 1, False).heads == 1
    assert build_op("attention", 64, 1, False).heads == 2
    assert build_op("attention", 96, 1, False).head_dim == 32
    with pytest.raises(ValueError, match="divisible"):
        RelativeSelfAttention(100)  # 3 heads
    assert n_params(build_op("attention", 16, 1, False)) == 16 * 48 + 16 * 16 + 16 + 63 * 63


def test_position_bias_matches_a_direct_lookup_with_clamping():
    torch.manual_seed(0)
    M = 3
    op = RelativeSelfAttention(8, head_channels=4, max_distance=M)  # 2 heads, offsets clamped to +-2
    H, W = 5, 4
    bias = op.position_bias(H, W)
    assert bias.shape == (2, H * W, H * W)
    table = op.relative_bias.detach()
    for i in range(H * W):
        for j in range(H * W):
            dy = max(-(M - 1), min(M - 1, i // W - j // W))
            dx = max(-(M - 1), min(M - 1, i % W - j % W))
            torch.testing.assert_close(bias[:, i, j].detach(), table[:, dy + M - 1, dx + M - 1])


def _permute_positions(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    N, C, H, W = x.shape
    return x.flatten(2)[:, :, perm].reshape(N, C, H, W)


def test_relative_bias_breaks_permutation_equivariance():
    # Without a position bias, attention + 1x1 convs commute with any permutation of the positions; a nonzero
    # bias table must break that, so the bias really reaches the output.
    torch.manual_seed(0)
    op = RelativeSelfAttention(8, affine=True).eval()
    x = torch.randn(2, 8, 5, 5)
    perm = torch.randperm(25)
    with torch.no_grad():
        op.relative_bias.zero_()
        torch.testing.assert_close(op(_permute_positions(x, perm)), _permute_positions(op(x), perm))
        plain = op(x)
        op.relative_bias.normal_(std=1.0)
        biased = op(x)
        assert not torch.allclose(biased, plain, atol=1e-4)
        assert not torch.allclose(op(_permute_positions(x, perm)), _permute_positions(biased, perm), atol=1e-4)


@pytest.mark.parametrize("name", NEW_OPS)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    for stride in (1, 2):
        op = build_op(name, 8, stride, True)
        out = op(torch.randn(3, 8, 6, 6))
        assert torch.isfinite(out).all()
        (out * torch.randn_like(out)).sum().backward()  # a random projection: BN makes plain sums degenerate
        bad = [n for n, p in op.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not bad, (stride, bad)


@pytest.mark.parametrize("name", NEW_OPS)
def test_float64_and_channels_last(name):
    torch.manual_seed(0)
    for stride in (1, 2):
        op = build_op(name, 8, stride, True)
        x = torch.randn(2, 8, 7, 7)
        ref = op(x)
        op64 = build_op(name, 8, stride, True).double()
        op64.load_state_dict(op.state_dict())
        out64 = op64(x.double())
        assert out64.dtype == torch.float64
        torch.testing.assert_close(out64.float(), ref, rtol=1e-4, atol=1e-4)

        xc = x.clone().to(memory_format=torch.channels_last).requires_grad_()
        out_cl = op(xc)
        torch.testing.assert_close(out_cl, ref, rtol=1e-5, atol=1e-5)
        out_cl.square().sum().backward()
        assert xc.grad is not None and torch.isfinite(xc.grad).all()


@pytest.mark.parametrize("stride", [1, 2])
def test_flop_counter_sees_the_attention_matmuls(stride):
    N, C, H, W = 2, 16, 8, 8
    op = build_op("attention", C, stride, False).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:  # as in dartsnas.profile.count_macs
        op(torch.randn(N, C, H, W))
    L = math.ceil(H / stride) * math.ceil(W / stride)
    convs = 2 * N * L * C * (3 * C) + 2 * N * L * C * C  # qkv and output projection
    matmuls = 2 * (2 * N * L * L * C)  # q k^T and attn v over all heads
    assert counter.get_total_flops() == convs + matmuls > convs
