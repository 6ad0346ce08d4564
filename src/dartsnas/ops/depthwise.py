"""A depthwise convolution with faster CPU paths: the same numbers as ``nn.Conv2d(C, C, k, groups=C)``.

Profiling the supernet step on CPU (``benchmarks/search_step.py``) showed that oneDNN's depthwise kernels are
slow in two places, and both have an exact rewrite:

- **stride 2 with dilation 2** (the dilated convolutions on a reduction cell's input edges) takes 10x the time of
  the same convolution on a subsampled input, and it *is* that convolution: with padding ``k - 1`` every tap
  lands on an even pixel, so it equals a stride-1, undilated ``k x k`` convolution (padding ``(k - 1) / 2``) of
  ``x[:, :, ::2, ::2]``;
- the **input gradient at stride 1** of a dilated convolution runs at a fifth of the speed of a forward
  convolution, and with "same" padding it is one: the correlation of the output gradient with the flipped
  kernel. On the CPU a small autograd function computes it so;
- the **weight gradient of a dilated convolution** (dilation 2, stride 1, "same" padding) runs at half the speed
  of the undilated one, or at a fifth when the padding is as wide as the image (``dil_conv_5x5`` on an 8x8
  map), and on an even-sized map it is one: every tap of a dilation-2 kernel joins pixels of the same parity,
  so the four pixel phases of the input (``x[:, :, a::2, b::2]``), stacked along the batch, meet an undilated
  kernel with half the padding, and summing over that batch sums over the phases. Where oneDNN's own kernel is
  faster (a 5x5 kernel on larger maps) it keeps it. In float32 the C kernel of ``ops/native.py`` comes first
  (2.3x faster than the phases for a dilated 3x3 kernel); the phases serve float64 and a machine without it.

One more is a correctness fix, not a speed-up: on the CPU, oneDNN's **bfloat16 weight gradient of a dilated
stride-1 depthwise convolution** is wrong on maps of about 31 pixels and more (torch 2.14.1, channels-last:
relative errors of 1 and up to 1e35; forward and input gradient are right, and so is float16). It is computed
in float32 and rounded to bfloat16 instead, for a bf16 module as well as under CPU autocast, which therefore
runs this convolution through the same autograd function.

Elsewhere (other strides, paddings, GPUs) it is ``nn.Conv2d``'s own forward.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import native

Geometry = tuple[bool, int, int, int]  # (subsample, stride, padding, dilation) of the convolution actually run


def depthwise_forward(x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """The depthwise convolution with ``geom`` (see ``DepthwiseConv2d.geometry``)."""
    subsample, s, p, d = geom
    if subsample:
        x = x[:, :, ::2, ::2]
    return F.conv2d(x, weight, None, s, p, d, weight.shape[0])


def _phases(t: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` (channels-last, H and W even) to ``[4N, C, H/2, W/2]``: the four pixel phases
    ``t[:, :, a::2, b::2]`` stacked along the batch, channels-last, in one copy."""
    N, C, H, W = t.shape
    s = t.permute(0, 2, 3, 1).reshape(N, H // 2, 2, W // 2, 2, C).permute(2, 4, 0, 1, 3, 5)
    return s.reshape(4 * N, H // 2, W // 2, C).permute(0, 3, 1, 2)


def _phase_weight_grad(grad: torch.Tensor, inp: torch.Tensor, k: int, s: int, p: int, d: int) -> bool:
    """Whether the dilation-2 weight gradient goes through the pixel phases (see the module docstring): CPU,
    channels-last, even sizes, "same" padding, and where it measured faster (every 3x3 kernel; a 5x5 kernel
    only when its padding spans the map)."""
    H, W = inp.shape[-2:]
    return (d == 2 and s == 1 and k % 2 == 1 and p == k - 1 and H % 2 == 0 and W % 2 == 0
            and inp.device.type == "cpu" and inp.is_contiguous(memory_format=torch.channels_last)
            and grad.is_contiguous(memory_format=torch.channels_last) and (k == 3 or min(H, W) <= 2 * p))


def depthwise_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, geom: Geometry, need_x: bool,
                       need_w: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of ``depthwise_forward(x, weight, geom)``. At stride 1 with "same" padding the input gradient is
    the correlation with the flipped kernel, and a dilation-2 weight gradient may go through the pixel phases;
    the rest is oneDNN's backward."""
    subsample, s, p, d = geom
    groups = weight.shape[0]
    inp = x[:, :, ::2, ::2] if subsample else x
    grad_x = grad_w = None
    k = weight.shape[-1]
    if need_w and inp.dtype == torch.bfloat16 and d > 1 and s == 1 and inp.device.type == "cpu":
        # oneDNN's bf16 kernel is wrong here (module docstring): float32, then rounded
        g32, x32 = grad.float(), inp.float()
        grad_w = native.depthwise_weight_grad(g32, x32, k, s, p, d)  # (d > 1 here)
        if grad_w is None:
            grad_w = torch.ops.aten.convolution_backward(g32, x32, weight.float(), None, [s, s], [p, p], [d, d],
                                                         False, [0, 0], groups, [False, True, False])[1]
        grad_w = grad_w.to(weight.dtype)
        need_w = False
    if need_w and (k >= 5 or d > 1) and weight.dtype == torch.float32:
        # oneDNN's 5x5 and dilated depthwise weight gradients are 3-6x slower than the C kernel (ops/native.py),
        # which is also 2.3x faster than the pixel phases below for a dilated 3x3 kernel
        grad_w = native.depthwise_weight_grad(grad, inp, k, s, p, d)
        need_w = grad_w is None
    if need_w and _phase_weight_grad(grad, inp, k, s, p, d):
        grad_w = torch.ops.aten.convolution_backward(_phases(grad), _phases(inp), weight, None, [1, 1],
                                                     [p // 2, p // 2], [1, 1], False, [0, 0], groups,
                                                     [False, True, False])[1]
        need_w = False
    if need_x and s == 1 and 2 * p == d * (k - 1):
        grad_x = F.conv2d(grad, weight.flip(-1, -2), None, 1, p, d, groups)
        need_x = False
    if need_x or need_w:
        gi, gw, _ = torch.ops.aten.convolution_backward(grad, inp, weight, None, [s, s], [p, p], [d, d], False,
                                                        [0, 0], groups, [need_x, need_w, False])
        grad_x = gi if need_x else grad_x
        grad_w = gw if need_w else grad_w
    if grad_x is not None and subsample:
        full = torch.zeros_like(x)
        full[:, :, ::2, ::2] = grad_x
        grad_x = full
    return grad_x, grad_w


class _Depthwise(torch.autograd.Function):
    """``depthwise_forward`` with ``depthwise_backward`` as its gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geom = geom
        return depthwise_forward(x, weight, geom)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        return (*depthwise_backward(grad, x, weight, ctx.geom, *ctx.needs_input_grad[:2]), None)


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(C, C, kernel_size, stride, padding, dilation, groups=C, bias=False)`` (same parameters, same
    state dict) with the exact CPU rewrites described in this module's docstring."""

    def __init__(self, C: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1):
        super().__init__(C, C, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=C,
                         bias=False)
        k, s, p, d = kernel_size, stride, padding, dilation
        same = k % 2 == 1 and p == d * (k - 1) // 2
        # stride 2, dilation 2, same padding: a stride-1 undilated conv of the even pixels
        self._subsample = same and s == 2 and d == 2
        self._same_stride1 = same and s == 1

    def geometry(self) -> Geometry:
        """(subsample, stride, padding, dilation) of the convolution actually run."""
        if self._subsample:
            return True, 1, (self.kernel_size[0] - 1) // 2, 1
        return False, self.stride[0], self.padding[0], self.dilation[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self._subsample or self._same_stride1):
            return super().forward(x)
        w, geom = self.weight, self.geometry()
        if x.device.type == "cpu":
            if not torch.is_autocast_enabled("cpu"):
                if x.dtype == w.dtype:
                    return _Depthwise.apply(x, w, geom)
            elif (x.is_floating_point() and x.dtype != torch.float64
                  and torch.get_autocast_dtype("cpu") == torch.bfloat16):
                # what autocast would do (a bf16 convolution), through the function that fixes its backward
                with torch.autocast("cpu", enabled=False):
                    return _Depthwise.apply(x.to(torch.bfloat16), w.to(torch.bfloat16), geom)
        return depthwise_forward(x, w, geom)
