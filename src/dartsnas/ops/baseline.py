"""The plain convolutions of the handcrafted baselines (ResNet, Xception) as candidate ops, for the search
spaces built around those networks (``--space resnet18|resnet50|xception``)."""
from __future__ import annotations

import torch.nn as nn

from . import register_op
from .darts import ReLUConvBN


class XceptionSepConv(nn.Sequential):
    """Xception's separable convolution unit: ReLU, depthwise k x k (strided), pointwise 1 x 1, BN."""

    def __init__(self, C: int, kernel_size: int, stride: int, affine: bool):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, kernel_size, stride=stride, padding=kernel_size // 2, groups=C, bias=False),
            nn.Conv2d(C, C, 1, bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )


register_op("conv_1x1", lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine),
            description="ReLU, 1x1 conv, BN (ResNet bottleneck ends)")
register_op("conv_3x3", lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine),
            description="ReLU, full 3x3 conv, BN (ResNet blocks)")
register_op("xsep_conv_3x3", lambda C, stride, affine: XceptionSepConv(C, 3, stride, affine),
            description="Xception separable conv: ReLU, depthwise 3x3, pointwise 1x1, BN")

BASELINE_OPS = ("conv_1x1", "conv_3x3", "xsep_conv_3x3")
