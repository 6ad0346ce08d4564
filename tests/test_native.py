"""The C kernels of ``dartsnas.ops.native``: the depthwise weight gradient against a float64 reference, max
pooling against ATen element for element (ties and NaN included), the search step with and without them, and the
fallback when they cannot be built."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dartsnas.ops import OPS, native
from dartsnas.ops.depthwise import depthwise_backward
from dartsnas.ops.lean import lean_forward

needs_native = pytest.mark.skipif(not native.available(), reason=f"{native.status()}")
CL = torch.channels_last


def _cl(*shape, dtype=torch.float32, gen=None):
    return torch.randn(*shape, dtype=dtype, generator=gen).contiguous(memory_format=CL)


@pytest.fixture
def no_native(monkeypatch):
    """The kernels as on a machine without a C compiler."""
    monkeypatch.setattr(native, "_tried", True)
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_error", "test: turned off")


@needs_native
@pytest.mark.parametrize("k,s,p,d", [(5, 1, 2, 1), (5, 1, 4, 2), (3, 1, 1, 1), (3, 1, 2, 2), (5, 2, 2, 1),
                                     (3, 2, 1, 1), (7, 1, 3, 1), (5, 1, 0, 1), (5, 2, 4, 2)])
@pytest.mark.parametrize("B,C,H,W", [(3, 16, 8, 8), (2, 20, 7, 9), (1, 32, 6, 6), (2, 5, 4, 4), (2, 64, 3, 5)])
def test_depthwise_weight_grad_equals_float64_reference(k, s, p, d, B, C, H, W):
    gen = torch.Generator().manual_seed(k * 100 + C)
    x = _cl(B, C, H, W, gen=gen)
    Ho, Wo = (H + 2 * p - d * (k - 1) - 1) // s + 1, (W + 2 * p - d * (k - 1) - 1) // s + 1
    if Ho < 1 or Wo < 1:
        pytest.skip("empty output")
    g = _cl(B, C, Ho, Wo, gen=gen)
    ours = native.depthwise_weight_grad(g, x, k, s, p, d)
    ref = torch.ops.aten.convolution_backward(g.double(), x.double(), torch.empty(C, 1, k, k, dtype=torch.float64),
                                              None, [s, s], [p, p], [d, d], False, [0, 0], C,
                                              [False, True, False])[1]
    assert ours.shape == (C, 1, k, k) and ours.dtype == torch.float32
    assert torch.allclose(ours.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


@needs_native
@pytest.mark.parametrize("k,p,d", [(5, 4, 2), (5, 2, 1), (3, 2, 2)])
def test_depthwise_backward_uses_the_kernel_for_5x5_and_dilated_and_matches_onednn(k, p, d, monkeypatch):
    """The path ``depthwise_backward`` takes for a float32 5x5 or dilated kernel, and its result against
    oneDNN's."""
    calls = []
    real = native.depthwise_weight_grad
    monkeypatch.setattr(native, "depthwise_weight_grad", lambda *a: calls.append(a[2:]) or real(*a))
    x, g, w = _cl(4, 16, 12, 12), _cl(4, 16, 12, 12), torch.randn(16, 1, k, k)
    gx, gw = depthwise_backward(g, x, w, (False, 1, p, d), True, True)
    assert calls == [(k, 1, p, d)]
    ref_x, ref_w, _ = torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [p, p], [d, d], False, [0, 0], 16,
                                                          [True, True, False])
    assert torch.allclose(gw, ref_w, rtol=1e-5, atol=1e-4) and torch.allclose(gx, ref_x, atol=1e-5)


@needs_native
def test_kernels_decline_what_they_do_not_handle():
    x64 = _cl(2, 4, 6, 6, dtype=torch.float64)
    nchw = torch.randn(2, 4, 6, 6)
    assert native.depthwise_weight_grad(x64, x64, 3, 1, 1, 1) is None
    assert native.depthwise_weight_grad(nchw, nchw, 3, 1, 1, 1) is None
    assert native.max_pool3(nchw, 1) is None and native.max_pool3(x64, 1) is None
    assert native.max_pool3(_cl(2, 4, 6, 6), 3) is None
    assert native.avg_pool3(nchw, 1) is None and native.avg_pool3_backward(nchw, nchw.shape, 1) is None
    assert native.max_pool3_backward(_cl(2, 4, 5, 5), _cl(2, 4, 6, 6), 1) is None  # wrong gradient shape


def _pool_inputs():
    gen = torch.Generator().manual_seed(3)
    cases = []
    for B, C, H, W in [(2, 16, 8, 8), (3, 20, 7, 9), (2, 32, 5, 6), (1, 64, 4, 4), (2, 5, 1, 3), (2, 16, 2, 1)]:
        x = _cl(B, C, H, W, gen=gen)
        cases.append(("random", x))
        tied = x.clone()
        tied[:, :, : H // 2 + 1] = 0.5  # equal values: which element gets the gradient is ATen's rule
        tied[:, ::3] = -float("inf")
        cases.append(("ties", tied.contiguous(memory_format=CL)))
        quantised = (x * 2).round().contiguous(memory_format=CL)  # many ties scattered about
        cases.append(("quantised", quantised))
    nan = _cl(2, 16, 6, 6, gen=gen)
    nan[0, 3, 2, 2] = nan[1, 5, 0, 0] = nan[1, 5, 0, 1] = float("nan")
    cases.append(("nan", nan))
    return cases


@needs_native
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name,x", _pool_inputs(), ids=lambda v: v if isinstance(v, str) else "")
def test_max_pool_equals_aten_exactly(stride, name, x):
    ours = native.max_pool3(x, stride)
    ref = F.max_pool2d(x, 3, stride, 1)
    assert ours.is_contiguous(memory_format=CL)
    assert torch.equal(ours.nan_to_num(nan=7.0), ref.nan_to_num(nan=7.0))
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=CL)
    xr = x.clone().requires_grad_()
    F.max_pool2d(xr, 3, stride, 1).backward(g)
    gx = native.max_pool3_backward(g, x, stride)
    # the same element of each window gets the gradient: only the order of a sum may differ
    assert torch.allclose(gx, xr.grad, rtol=0, atol=1e-6), (gx - xr.grad).abs().max()


def _search_op(name: str) -> nn.Module:
    """The op as the search network holds it (pooling followed by a non-affine BN)."""
    op = OPS[name](16, 1, False)
    if "pool" in name:
        op = nn.Sequential(op, nn.BatchNorm2d(16, affine=False))
    return op.to(memory_format=CL).train()


@pytest.mark.parametrize("op", ["max_pool_3x3", "avg_pool_3x3", "sep_conv_5x5", "dil_conv_5x5"])
def test_lean_ops_same_gradients_with_and_without_the_kernels(op, monkeypatch):
    """The lean autograd of a mixed-op branch gives the same gradients with the C kernels and with PyTorch's."""
    torch.manual_seed(0)
    module = _search_op(op)
    x = _cl(4, 16, 10, 10).requires_grad_()
    g = _cl(4, 16, 10, 10)

    def grads():
        out = lean_forward(module, x)
        return torch.autograd.grad(out, [x] + [p for p in module.parameters()], g)

    with_kernels = grads()
    monkeypatch.setattr(native, "_tried", True)
    monkeypatch.setattr(native, "_lib", None)
    without = grads()
    for a, b in zip(with_kernels, without):  # float32 sums in another order: tolerance relative to the scale
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(b.abs().max())))


def test_a_failed_build_leaves_pytorch_kernels(monkeypatch, tmp_path):
    """No working compiler: ``available()`` is false, the reason is reported, and the ops still run."""
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    monkeypatch.setenv("DARTSNAS_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "SOURCE", native.SOURCE + "\n/* another build */\n")  # not the cached library
    assert not native.available()
    assert "off" in native.status() and "false failed" in native.status()
    x = _cl(2, 16, 6, 6)
    assert native.max_pool3(x, 1) is None
    module = _search_op("max_pool_3x3")
    assert lean_forward(module, x.requires_grad_()).shape == x.shape


def test_turned_off_by_environment(monkeypatch):
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setenv("DARTSNAS_NATIVE", "0")
    assert not native.available() and "DARTSNAS_NATIVE=0" in native.status()


@needs_native
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("B,C,H,W", [(2, 16, 8, 8), (3, 20, 7, 9), (2, 32, 5, 6), (1, 64, 4, 4), (2, 5, 1, 3),
                                     (2, 16, 2, 1)])
def test_avg_pool_equals_aten(stride, B, C, H, W):
    """Average pooling without counting the padding, and its input gradient, as ATen's."""
    gen = torch.Generator().manual_seed(C + H)
    x = _cl(B, C, H, W, gen=gen)
    ref = F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    ours = native.avg_pool3(x, stride)
    assert ours.is_contiguous(memory_format=CL) and torch.allclose(ours, ref, rtol=1e-6, atol=1e-6)
    g = _cl(*ref.shape, gen=gen)
    gx = native.avg_pool3_backward(g, x.shape, stride)
    ref_gx = torch.ops.aten.avg_pool2d_backward(g, x, [3, 3], [stride, stride], [1, 1], False, False, None)
    assert gx.is_contiguous(memory_format=CL) and torch.allclose(gx, ref_gx, rtol=1e-6, atol=1e-6)


@needs_native
@pytest.mark.parametrize("B,C,H,W", [(4, 16, 6, 6), (3, 20, 5, 7), (2, 64, 2, 2), (2, 5, 1, 1), (8, 32, 4, 4)])
@pytest.mark.parametrize("with_acc,relu", [(False, False), (True, False), (False, True)])
def test_batch_norm_equals_aten(B, C, H, W, with_acc, relu):
    """Output, mean, invstd and the updated running statistics as ``torch.native_batch_norm`` (training), and the
    gated sum ``acc += gate * output`` done in the same pass, or the ReLU of the output (NaN kept, as F.relu)."""
    gen = torch.Generator().manual_seed(C)
    z = (_cl(B, C, H, W, gen=gen) * 3 + 5).contiguous(memory_format=CL)  # a mean far from 0
    z[:, 1] = 2.5  # a constant channel: variance 0
    rm, rv = torch.rand(C, generator=gen), torch.rand(C, generator=gen) + 0.5
    rm_ref, rv_ref = rm.clone(), rv.clone()
    acc = _cl(B, C, H, W, gen=gen) if with_acc else None
    acc_ref = acc.clone() if with_acc else None
    if relu and B * H * W > 1:
        z[0, 2, 0, 0] = float("nan")  # a NaN channel: NaN statistics and outputs, as ATen's
    out, mean, invstd = native.batch_norm_train(z, rm, rv, 0.1, 1e-5, acc, 0.37, relu=relu)
    ref, ref_mean, ref_invstd = torch.native_batch_norm(z, None, None, rm_ref, rv_ref, True, 0.1, 1e-5)
    if relu:
        ref = F.relu(ref)
        assert torch.equal(out.isnan(), ref.isnan()) and (out.isnan().any() or B * H * W == 1)
        out, ref = out.nan_to_num(), ref.nan_to_num()
        mean, ref_mean, invstd, ref_invstd = (t.nan_to_num() for t in (mean, ref_mean, invstd, ref_invstd))
        rm, rm_ref, rv, rv_ref = (t.nan_to_num() for t in (rm, rm_ref, rv, rv_ref))
    assert out.is_contiguous(memory_format=CL)
    # atol: on the constant channel ATen's float mean is off by an ulp, which invstd = 1/sqrt(eps) magnifies
    assert torch.allclose(out, ref, rtol=1e-5, atol=5e-5)
    assert torch.allclose(mean, ref_mean, rtol=1e-6, atol=1e-6)
    assert torch.allclose(invstd, ref_invstd, rtol=1e-4)
    assert torch.allclose(rm, rm_ref, rtol=1e-6, atol=1e-7) and torch.allclose(rv, rv_ref, rtol=1e-5)
    if with_acc:
        assert torch.allclose(acc, acc_ref + 0.37 * ref, rtol=1e-5, atol=5e-5)


@needs_native
def test_batch_norm_declines_what_it_does_not_handle():
    z = _cl(2, 4, 3, 3)
    assert native.batch_norm_train(z.double(), None, None, 0.1, 1e-5) is None
    assert native.batch_norm_train(z.contiguous(), None, None, 0.1, 1e-5) is None
    assert native.batch_norm_train(z, torch.zeros(4, dtype=torch.float64), None, 0.1, 1e-5) is None
    assert native.batch_norm_train(z, None, None, 0.1, 1e-5, acc=_cl(2, 4, 3, 4)) is None


@needs_native
@pytest.mark.parametrize("B,C,H,W", [(4, 16, 6, 6), (3, 20, 5, 7), (2, 64, 2, 2), (2, 5, 1, 1)])
@pytest.mark.parametrize("need", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm_backward_equals_aten(B, C, H, W, need, relu):
    """The backward from the output (mean 0, invstd 1 standing for the input) with the invstd, times a gate, as
    the affine weight: ATen's ``native_batch_norm_backward`` called the same way; with ``relu``, after ATen's
    ReLU backward (``threshold_backward`` on the BN output)."""
    gen = torch.Generator().manual_seed(C * 7)
    g, y = _cl(B, C, H, W, gen=gen), _cl(B, C, H, W, gen=gen)
    y[0, 0, 0, 0] = 0.0  # the ReLU's edge: no gradient at 0
    w = torch.rand(C, generator=gen) + 0.1
    gin, gw = native.batch_norm_backward(g, y, w, *need, relu=relu)
    g_ref = torch.ops.aten.threshold_backward(g, y, 0) if relu else g
    ref_in, ref_w, _ = torch.ops.aten.native_batch_norm_backward(g_ref, y, w, None, None, torch.zeros(C),
                                                                 torch.ones(C), True, 1e-5, [*need, False])
    assert (gin is None) == (not need[0]) and (gw is None) == (not need[1])
    if need[0]:
        assert gin.is_contiguous(memory_format=CL) and torch.allclose(gin, ref_in, rtol=1e-5, atol=1e-5)
    if need[1]:
        assert torch.allclose(gw, ref_w, rtol=1e-5, atol=1e-4)


@needs_native
@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm_output_made_again_from_the_input(relu):
    """``batch_norm_apply`` with the forward's statistics gives the forward's output bit for bit, and the
    backward from BN's input (``centre``) equals the backward from that output (the ReLU's mask included)."""
    gen = torch.Generator().manual_seed(3)
    z = (_cl(3, 20, 5, 7, gen=gen) * 2 + 1).contiguous(memory_format=CL)
    out, mean, invstd = native.batch_norm_train(z, None, None, 0.1, 1e-5, relu=relu)
    assert torch.equal(native.batch_norm_apply(z, mean, invstd, relu), out)
    y = native.batch_norm_train(z, None, None, 0.1, 1e-5)[0]  # the output before the ReLU
    g, w = _cl(3, 20, 5, 7, gen=gen), torch.rand(20, generator=gen) + 0.1
    from_input = native.batch_norm_backward(g, z, w, True, True, relu=relu, centre=(mean, invstd))
    from_output = native.batch_norm_backward(g, y, w, True, True, relu=relu)
    assert torch.allclose(from_input[0], from_output[0], rtol=1e-5, atol=1e-6)
    assert torch.allclose(from_input[1], from_output[1], rtol=1e-5, atol=1e-5)
    assert native.batch_norm_apply(z, mean.double(), invstd, relu) is None  # statistics of another dtype


@needs_native
def test_batch_norm_sum_alone_writes_no_output():
    """Without ``keep_output`` the gated sum is the same, bit for bit, and no output is made."""
    gen = torch.Generator().manual_seed(5)
    z, acc = _cl(4, 16, 6, 6, gen=gen), _cl(4, 16, 6, 6, gen=gen)
    acc2 = acc.clone()
    out, mean, invstd = native.batch_norm_train(z, None, None, 0.1, 1e-5, acc, 0.3)
    none, mean2, invstd2 = native.batch_norm_train(z, None, None, 0.1, 1e-5, acc2, 0.3, keep_output=False)
    assert none is None and out is not None
    assert torch.equal(acc, acc2) and torch.equal(mean, mean2) and torch.equal(invstd, invstd2)


def test_unwritable_cache_falls_back_to_the_temporary_directory(monkeypatch, tmp_path):
    if not native.available():
        pytest.skip(native.status())
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("DARTSNAS_CACHE", str(blocker / "cache"))  # cannot be created
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_lib", None)
    assert native.available() and "dartsnas-" in native.status()


@needs_native
def test_batch_norm_variance_far_from_zero_and_wrong_running_stats():
    """The variance of a channel whose mean dwarfs its spread keeps its digits (sums around a shift), and
    running statistics of the wrong size are declined, not written past."""
    gen = torch.Generator().manual_seed(5)
    z = (3000 + 0.003 * _cl(8, 16, 8, 8, gen=gen)).contiguous(memory_format=CL)
    out, mean, invstd = native.batch_norm_train(z, None, None, 0.1, 1e-12)
    ref_var = z.double().var(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(invstd.double(), 1 / torch.sqrt(ref_var + 1e-12), rtol=1e-3)
    assert native.batch_norm_train(_cl(2, 16, 3, 3), torch.zeros(4), torch.ones(4), 0.1, 1e-5) is None


def test_the_temporary_cache_must_be_private(monkeypatch, tmp_path):
    monkeypatch.setattr(native.tempfile, "gettempdir", lambda: str(tmp_path))
    shared = tmp_path / f"dartsnas-{native.os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # others may write: a library there could be planted
    with pytest.raises(OSError, match="not a private directory"):
        native._private_tmp()
    shared.chmod(0o700)
    assert native._private_tmp() == shared
