"""The candidate ops of D-DARTS' DARTOpti spaces (aheuillet/D-DARTS, ``operations.py``), by its names and with
its exact layers, so that its searched files build with the D-DARTS code's parameter and multiply-add counts.

- ``simple_conv_1x1``, ``simple_conv_3x3``, ``simple_conv_5x5``: ReLU, one full k x k convolution, BN;
- ``conv_3x1_1x3``: ReLU, a 1 x 3 convolution (stride along the width), a 3 x 1 one (stride along the height),
  BN (full convolutions, like DARTS's ``conv_7x1_1x7``; D-DARTS calls the block ``RectConv``);
- ``bottleneck_1x3x1``: ReLU, 1 x 1 conv, BN, 3 x 3 conv (strided), BN, 1 x 1 conv to ``4 C``, BN, ReLU,
  1 x 1 conv back to ``C``, BN (D-DARTS' ``ResConv``; no residual of its own: the residual is a
  ``skip_connect`` gene beside it).

With DARTS's ``max_pool_3x3``, ``avg_pool_3x3``, ``skip_connect``, ``sep_conv_*``, ``dil_conv_*`` and
``conv_7x1_1x7`` they make D-DARTS' twelve DARTOpti primitives (:data:`DARTOPTI_PRIMITIVES`, in its order).
"""
from __future__ import annotations

import torch.nn as nn

from . import register_op
from .darts import ReLUConvBN

__all__ = ["Bottleneck", "DARTOPTI_PRIMITIVES", "RectConv"]


class RectConv(nn.Sequential):
    """ReLU, 1 x k then k x 1 full convolutions (the stride split between them), BN."""

    def __init__(self, C: int, k: int, stride: int, affine: bool):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, (1, k), stride=(1, stride), padding=(0, k // 2), bias=False),
            nn.Conv2d(C, C, (k, 1), stride=(stride, 1), padding=(k // 2, 0), bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )


class Bottleneck(nn.Sequential):
    """D-DARTS' bottleneck: 1 x 1, 3 x 3 (strided), 1 x 1 to ``expand * C`` and back, each followed by BN."""

    def __init__(self, C: int, stride: int, affine: bool, expand: int = 4):
        wide = expand * C
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, 1, bias=False),
            nn.BatchNorm2d(C, affine=affine),
            nn.Conv2d(C, C, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(C, affine=affine),
            nn.Conv2d(C, wide, 1, bias=False),
            nn.BatchNorm2d(wide, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(wide, C, 1, bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )


for _k in (1, 3, 5):
    register_op(f"simple_conv_{_k}x{_k}",
                lambda C, stride, affine, k=_k: ReLUConvBN(C, C, k, stride, k // 2, affine),
                description=f"D-DARTS simple conv: ReLU, full {_k}x{_k} conv, BN")
register_op("conv_3x1_1x3", lambda C, stride, affine: RectConv(C, 3, stride, affine),
            description="D-DARTS rectangular conv: ReLU, 1x3 conv, 3x1 conv, BN (full convolutions)")
register_op("bottleneck_1x3x1", lambda C, stride, affine: Bottleneck(C, stride, affine),
            description="D-DARTS bottleneck: ReLU, 1x1, 3x3, 1x1 to 4C, ReLU, 1x1 back to C, BN after each conv")
del _k

DARTOPTI_PRIMITIVES: tuple[str, ...] = (
    "conv_3x1_1x3", "conv_7x1_1x7", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "simple_conv_1x1",
    "simple_conv_3x3", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "bottleneck_1x3x1",
)
"""D-DARTS' DARTOpti candidate set, in its order (``genotypes.PRIMITIVES``)."""
