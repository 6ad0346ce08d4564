"""Layout-keeping versions of three data movements, so that gradients stay in the activations' memory format.

In channels-last, autograd's own backward of three ordinary operations hands the next kernel a gradient in
another layout, and every elementwise kernel that then meets a channels-last activation (ReLU's backward,
BatchNorm's backward, the weighted sum's dot products) runs several times slower on the CPU (measured: a ReLU
backward of a 64 x 64 x 32 x 32 tensor takes 11 ms with mixed layouts, 1.1 ms with one):

- the backward of ``torch.cat`` along channels gives channel slices of the output gradient, which are not
  contiguous in channels-last;
- the backward of a pixel subsampling ``x[:, :, ::2, ::2]`` scatters into a new NCHW-contiguous tensor;
- the backward of a global average pool expands into an NCHW-contiguous tensor.

The functions here compute the same values, and their backward passes return gradients in the memory format
of the corresponding input. They are differentiable twice (their backward passes are ordinary torch
operations), so the exact hypergradient goes through them. On NCHW tensors they are the ordinary operations.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _channels_last(t: torch.Tensor) -> bool:
    return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


class _CatChannels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.sizes = [t.shape[1] for t in tensors]
        return torch.cat(tensors, dim=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return tuple(part.contiguous(memory_format=torch.channels_last) if need else None
                     for part, need in zip(grad.split(ctx.sizes, dim=1), ctx.needs_input_grad))


def cat_channels(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(tensors, dim=1)``; in channels-last, each input's gradient comes back channels-last."""
    tensors = list(tensors)
    if len(tensors) > 1 and torch.is_grad_enabled() and all(_channels_last(t) for t in tensors):
        return _CatChannels.apply(*tensors)
    return torch.cat(tensors, dim=1)


class _EvenOddPixels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor):
        ctx.shape = x.shape
        even = x[:, :, ::2, ::2].contiguous(memory_format=torch.channels_last)
        odd = x[:, :, 1::2, 1::2].contiguous(memory_format=torch.channels_last)
        return even, odd

    @staticmethod
    def backward(ctx, g_even: torch.Tensor, g_odd: torch.Tensor):
        grad = None
        for offset, g in ((0, g_even), (1, g_odd)):
            if g is None:
                continue
            if grad is None:
                grad = torch.empty(ctx.shape, dtype=g.dtype, device=g.device,
                                   memory_format=torch.channels_last).zero_()
            grad[:, :, offset::2, offset::2] = g
        return grad


def even_odd_pixels(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x[:, :, ::2, ::2], x[:, :, 1::2, 1::2])``, both dense, in ``x``'s memory format when it is channels-last
    (with one channels-last gradient for ``x``)."""
    if _channels_last(x):
        return _EvenOddPixels.apply(x)
    return x[:, :, ::2, ::2], x[:, :, 1::2, 1::2]


class _GlobalAvgPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, w = ctx.shape[2], ctx.shape[3]
        return (grad / (h * w))[:, :, None, None].expand(ctx.shape).contiguous(memory_format=torch.channels_last)


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, 1).flatten(1)``; in channels-last, the gradient comes back channels-last."""
    if _channels_last(x) and torch.is_grad_enabled():
        return _GlobalAvgPool.apply(x)
    return F.adaptive_avg_pool2d(x, 1).flatten(1)
