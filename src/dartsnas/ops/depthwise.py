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


class _SameDepthwise(torch.autograd.Function):
    """Stride-1 depthwise convolution with "same" padding ``dilation * (k - 1) / 2`` (square, odd kernel)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, padding: int, dilation: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.dilation = padding, dilation
        return F.conv2d(x, weight, None, 1, padding, dilation, weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        p, d, groups = ctx.padding, ctx.dilation, weight.shape[0]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:  # the transposed convolution at stride 1 is a correlation with the flip
            grad_x = F.conv2d(grad, weight.flip(-1, -2), None, 1, p, d, groups)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], [p, p], [d, d], False, [0, 0], groups, [False, True, False])[1]
        return grad_x, grad_w, None, None


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if self._subsample:
            x, padding, dilation = x[:, :, ::2, ::2], (self.kernel_size[0] - 1) // 2, 1
        elif self._same_stride1:
            padding, dilation = self.padding[0], self.dilation[0]
        else:
            return super().forward(x)
        if x.device.type == "cpu" and x.dtype == w.dtype and not torch.is_autocast_enabled("cpu"):
            return _SameDepthwise.apply(x, w, padding, dilation)
        return F.conv2d(x, w, None, 1, padding, dilation, self.groups)
