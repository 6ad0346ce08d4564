"""``dartsnas.ops.pointwise``: a 1x1 convolution as a matrix product, against ``F.conv2d`` and its backward."""
import pytest
import torch
import torch.nn.functional as F

from dartsnas.ops.pointwise import pointwise_backward, pointwise_forward

CL = torch.channels_last


@pytest.mark.parametrize("shape,out_ch", [((3, 8, 5, 7), 12), ((2, 16, 1, 1), 16), ((4, 6, 4, 4), 3)])
@pytest.mark.parametrize("layout", [CL, torch.contiguous_format])
def test_pointwise_equals_conv2d_float64(shape, out_ch, layout):
    gen = torch.Generator().manual_seed(shape[1] * out_ch)
    a = torch.randn(*shape, dtype=torch.float64, generator=gen).contiguous(memory_format=layout)
    w = torch.randn(out_ch, shape[1], 1, 1, dtype=torch.float64, generator=gen)
    out = pointwise_forward(a, w)
    assert torch.allclose(out, F.conv2d(a, w), rtol=1e-12, atol=1e-12)
    assert out.is_contiguous(memory_format=layout)
    g = torch.randn(out.shape, dtype=torch.float64, generator=gen).contiguous(memory_format=layout)
    ref_a, ref_w, _ = torch.ops.aten.convolution_backward(g, a, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                                                          [True, True, False])
    for need_a, need_w in [(True, True), (True, False), (False, True)]:
        ga, gw = pointwise_backward(g, a if need_w else None, w, need_a, need_w)
        assert (ga is None) == (not need_a) and (gw is None) == (not need_w)
        if need_a:
            assert torch.allclose(ga, ref_a, rtol=1e-12, atol=1e-12) and ga.shape == a.shape
            assert ga.is_contiguous(memory_format=layout)
        if need_w:
            assert torch.allclose(gw, ref_w, rtol=1e-12, atol=1e-12) and gw.shape == w.shape


def test_pointwise_float32_channels_last_within_float_tolerance():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(8, 16, 12, 12, generator=gen).contiguous(memory_format=CL)
    w = torch.randn(32, 16, 1, 1, generator=gen)
    assert torch.allclose(pointwise_forward(a, w), F.conv2d(a, w), rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError):  # weights of another dtype: F.conv2d's own error, not a silent cast
        pointwise_forward(a, w.double())
