"""A depthwise convolution with faster CPU paths: the same numbers as ``nn.Conv2d(C, C, k, groups=C)``.

Profiling the supernet step on CPU (``benchmarks/search_step.py``) showed that oneDNN's depthwise kernels are
slow in two places, and both have an exact rewrite:

- **stride 2 with dilation 2** (the dilated convolutions on a reduction cell's input edges) takes 10x the time of
  the same convolution on a subsampled input, and it *is* that convolution: with padding ``k - 1`` every tap
  lands on an even pixel, so it equals a stride-1, undilated ``k x k`` convolution (padding ``(k - 1) / 2``) of
  ``x[:, :, ::2, ::2]``;
- the **input gradient at stride 1** of a dilated convolution runs at a fifth of the speed of a forward
  convolution, and with "same" padding it is one: the correlation of the output gradient with the flipped
  kernel. On the CPU a small autograd function computes it so (the weight gradient stays oneDNN's).

Elsewhere (other strides, paddings, GPUs, mixed precision) it is ``nn.Conv2d``'s own forward.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


Geometry = tuple[bool, int, int, int]  # (subsample, stride, padding, dilation) of the convolution actually run


def depthwise_forward(x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """The depthwise convolution with ``geom`` (see ``DepthwiseConv2d.geometry``)."""
    subsample, s, p, d = geom
    if subsample:
        x = x[:, :, ::2, ::2]
    return F.conv2d(x, weight, None, s, p, d, weight.shape[0])


def depthwise_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, geom: Geometry, need_x: bool,
                       need_w: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of ``depthwise_forward(x, weight, geom)``. At stride 1 with "same" padding the input gradient is
    the correlation with the flipped kernel; the rest is oneDNN's backward."""
    subsample, s, p, d = geom
    groups = weight.shape[0]
    inp = x[:, :, ::2, ::2] if subsample else x
    grad_x = grad_w = None
    if need_x and s == 1 and 2 * p == d * (weight.shape[-1] - 1):
        grad_x = F.conv2d(grad, weight.flip(-1, -2), None, 1, p, d, groups)
        need_x = False
    if need_x or need_w:
        gi, grad_w, _ = torch.ops.aten.convolution_backward(grad, inp, weight, None, [s, s], [p, p], [d, d], False,
                                                            [0, 0], groups, [need_x, need_w, False])
        grad_x = gi if need_x else grad_x
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
        if x.device.type == "cpu" and x.dtype == w.dtype and not torch.is_autocast_enabled("cpu"):
            return _Depthwise.apply(x, w, geom)
        return depthwise_forward(x, w, geom)
