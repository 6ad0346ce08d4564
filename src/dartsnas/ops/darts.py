"""The eight DARTS primitives, defined as in the paper's code (ReLU-Conv-BN order).

- separable convolutions are applied twice (depthwise k x k, pointwise 1 x 1, BN, then again at stride 1);
- dilated convolutions are one depthwise k x k with dilation 2, pointwise 1 x 1, BN;
- a stride-2 skip connection is a factorized reduce (two 1 x 1 stride-2 convolutions, one shifted by a pixel);
- pooling ops are followed by a non-affine BN in the search network only (see ``supernet.py``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register_op
from .depthwise import DepthwiseConv2d
from .layout import cat_channels, even_odd_pixels

DARTS_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution, BN."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise (dilated) k x k convolution, pointwise 1 x 1 convolution, BN."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int,
                 affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            DepthwiseConv2d(C_in, kernel_size, stride=stride, padding=padding, dilation=dilation),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """The DARTS separable convolution: two depthwise-separable blocks, the first carrying the stride."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine),
        )


class Identity(nn.Module):
    """The skip connection at stride 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The `none` op: zeros with the output shape. The supernet skips it (its output adds nothing)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def _conv1x1_dense(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` (1x1, stride 2, no padding) applied to ``x`` already subsampled by 2: a stride-1 convolution."""
    return F.conv2d(x.contiguous(memory_format=torch.channels_last), conv.weight, conv.bias)


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two 1 x 1 stride-2 convolutions (one shifted by a pixel), concatenated."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = x[:, :, 1:, 1:]
        if shifted.shape[-1] == 0 or shifted.shape[-2] == 0:  # 1x1 input: nothing to shift
            shifted = x
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # Channels-last: subsample first, then a stride-1 1x1 convolution (the same numbers). torch 2.14.1's
            # CPU backward of a strided 1x1 convolution corrupts the heap in channels-last for some small
            # shapes (e.g. 4 channels, batch 25), so it is never called here.
            if shifted is x:
                even, odd = x[:, :, ::2, ::2], x[:, :, ::2, ::2]
            else:  # both in one function, whose backward keeps x's gradient channels-last
                even, odd = even_odd_pixels(x)
            a = _conv1x1_dense(self.conv_1, even)
            b = _conv1x1_dense(self.conv_2, odd)
        else:
            a, b = self.conv_1(x), self.conv_2(shifted)
        if a.shape != b.shape:  # odd sizes: the shifted branch is one pixel short
            b = nn.functional.pad(b, (0, a.shape[-1] - b.shape[-1], 0, a.shape[-2] - b.shape[-2]))
        return self.bn(cat_channels([a, b]))


def _pool(kind: str):
    def build(C: int, stride: int, affine: bool) -> nn.Module:
        if kind == "max":
            return nn.MaxPool2d(3, stride=stride, padding=1)
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)

    return build


DESCRIPTIONS = {
    "none": "no connection: zeros (strided at stride 2); weighs an edge's absence during search",
    "max_pool_3x3": "3x3 max pooling",
    "avg_pool_3x3": "3x3 average pooling (padding not counted)",
    "skip_connect": "identity; at stride 2 a factorized reduce (two offset 1x1 convs, BN)",
    "sep_conv_3x3": "DARTS separable conv: (ReLU, depthwise 3x3, pointwise 1x1, BN) twice",
    "sep_conv_5x5": "DARTS separable conv: (ReLU, depthwise 5x5, pointwise 1x1, BN) twice",
    "sep_conv_7x7": "DARTS separable conv: (ReLU, depthwise 7x7, pointwise 1x1, BN) twice",
    "dil_conv_3x3": "ReLU, depthwise 3x3 with dilation 2, pointwise 1x1, BN",
    "dil_conv_5x5": "ReLU, depthwise 5x5 with dilation 2, pointwise 1x1, BN",
    "conv_7x1_1x7": "ReLU, 1x7 conv, 7x1 conv, BN (full convolutions)",
}
BUILDERS = {
    "none": lambda C, stride, affine: Zero(stride),
    "max_pool_3x3": _pool("max"),
    "avg_pool_3x3": _pool("avg"),
    "skip_connect": lambda C, stride, affine: Identity() if stride == 1 else FactorizedReduce(C, C, affine),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine),
    "sep_conv_7x7": lambda C, stride, affine: SepConv(C, C, 7, stride, 3, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine),
    "conv_7x1_1x7": lambda C, stride, affine: nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(C, affine=affine),
    ),
}
for _name, _build in BUILDERS.items():
    register_op(_name, _build, description=DESCRIPTIONS[_name])
