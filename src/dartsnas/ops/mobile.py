"""Mobile convolution ops: MobileNetV1 separable conv, EfficientNet MBConv, EfficientNetV2 Fused-MBConv.

- ``mb_sep_conv_{k}x{k}``: one depthwise-separable block (depthwise k x k, BN, ReLU, pointwise 1 x 1, BN, ReLU),
  unlike DARTS's ``sep_conv_*`` which applies two;
- ``mbconv_{k}x{k}_e{e}[_se]``: inverted bottleneck (1 x 1 expansion to ``e * C``, depthwise k x k, optional
  squeeze-and-excitation, linear 1 x 1 projection), with a residual at stride 1;
- ``fused_mbconv_{k}x{k}_e{e}[_se]``: the expansion and depthwise convolutions fused into one full k x k
  convolution, then the same SE and projection, residual at stride 1;
- ``mb_conv_3x3`` and ``fused_mb_conv_3x3``: the two blocks as pt.darts (HAJEKEL's fork, ``models/ops.py``)
  defines them, so its searched genotypes build: expansion x3, ReLU6 instead of SiLU, no SE, and a fused
  expansion that is a *grouped* 3 x 3 convolution (``C`` groups), not a full one.

All keep ``C`` channels and divide the spatial size by ``stride`` (rounding up).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from . import OpBuilder, register_op

__all__ = ["MobileSepConv", "SqueezeExcite", "MBConv", "FusedMBConv", "MOBILE_OPS"]


class MobileSepConv(nn.Sequential):
    """MobileNetV1 depthwise-separable conv: depthwise k x k (strided), BN, ReLU, 1 x 1, BN, ReLU."""

    def __init__(self, C: int, kernel_size: int, stride: int, *, affine: bool = True):
        super().__init__(
            nn.Conv2d(C, C, kernel_size, stride=stride, padding=kernel_size // 2, groups=C, bias=False),
            nn.BatchNorm2d(C, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, 1, bias=False),
            nn.BatchNorm2d(C, affine=affine),
            nn.ReLU(inplace=False),
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global average pool, 1 x 1 reduce, SiLU, 1 x 1 expand, sigmoid gate on ``x``."""

    def __init__(self, channels: int, squeeze_channels: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = nn.SiLU(inplace=False)
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


def _se_or_identity(se: bool, hidden: int, C: int) -> nn.Module:
    # EfficientNet's squeeze ratio 0.25 is taken of the block's input channels, not the expanded ones
    return SqueezeExcite(hidden, max(1, C // 4)) if se else nn.Identity()


def _conv_bn_act(c_in: int, c_out: int, kernel_size: int, stride: int, groups: int, affine: bool,
                 act: type[nn.Module]) -> nn.Sequential:
    """Convolution (padding ``kernel_size // 2``, no bias), BN, activation."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out, affine=affine),
        act(inplace=False),
    )


def _projection(hidden: int, C: int, affine: bool) -> nn.Sequential:
    """Linear bottleneck: 1 x 1 convolution and BN, no activation."""
    return nn.Sequential(nn.Conv2d(hidden, C, 1, bias=False), nn.BatchNorm2d(C, affine=affine))


class MBConv(nn.Module):
    """EfficientNet MBConv: 1 x 1 expansion, depthwise k x k, optional SE, 1 x 1 projection; residual at stride 1.

    Expansion to ``expand * C``, BN, SiLU; depthwise k x k with ``stride``, BN, SiLU; SE; projection to ``C``, BN
    (no activation); plus the input when ``stride == 1``."""

    def __init__(self, C: int, kernel_size: int, stride: int, expand: int, *, se: bool = False,
                 affine: bool = True, act: type[nn.Module] = nn.SiLU):
        super().__init__()
        hidden = C * expand
        self.expand = _conv_bn_act(C, hidden, 1, 1, 1, affine, act)
        self.depthwise = _conv_bn_act(hidden, hidden, kernel_size, stride, hidden, affine, act)
        self.se = _se_or_identity(se, hidden, C)
        self.project = _projection(hidden, C, affine)
        self.residual = stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + out if self.residual else out


class FusedMBConv(nn.Module):
    """EfficientNetV2 Fused-MBConv: full k x k expansion, optional SE, 1 x 1 projection; residual at stride 1.

    Full k x k convolution ``C -> expand * C`` with ``stride`` (grouped with ``groups``), BN, SiLU; SE;
    projection to ``C``, BN (no activation); plus the input when ``stride == 1``."""

    def __init__(self, C: int, kernel_size: int, stride: int, expand: int, *, se: bool = False,
                 affine: bool = True, act: type[nn.Module] = nn.SiLU, groups: int = 1):
        super().__init__()
        hidden = C * expand
        self.conv = _conv_bn_act(C, hidden, kernel_size, stride, groups, affine, act)
        self.se = _se_or_identity(se, hidden, C)
        self.project = _projection(hidden, C, affine)
        self.residual = stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.conv(x)))
        return x + out if self.residual else out


def _sep(k: int) -> OpBuilder:
    return lambda C, stride, affine: MobileSepConv(C, k, stride, affine=affine)


def _mb(cls: type[nn.Module], k: int, e: int, se: bool) -> OpBuilder:
    return lambda C, stride, affine: cls(C, k, stride, e, se=se, affine=affine)


_names: list[str] = []
for _k in (3, 5):
    _names.append(f"mb_sep_conv_{_k}x{_k}")
    register_op(_names[-1], _sep(_k), description=f"MobileNetV1 separable conv: depthwise {_k}x{_k}, BN, ReLU, "
                                                    "pointwise 1x1, BN, ReLU")
for _se in (False, True):
    _with = ", squeeze-and-excitation" if _se else ""
    for _k in (3, 5):
        for _e in (3, 6):
            _names.append(f"mbconv_{_k}x{_k}_e{_e}" + ("_se" if _se else ""))
            register_op(_names[-1], _mb(MBConv, _k, _e, _se),
                        description=f"EfficientNet MBConv: 1x1 expand x{_e}, depthwise {_k}x{_k}{_with}, 1x1 "
                                    "project, residual at stride 1")
    for _e in (3, 6):
        _names.append(f"fused_mbconv_3x3_e{_e}" + ("_se" if _se else ""))
        register_op(_names[-1], _mb(FusedMBConv, 3, _e, _se),
                    description=f"EfficientNetV2 Fused-MBConv: full 3x3 conv expand x{_e}{_with}, 1x1 project, "
                                "residual at stride 1")
del _with
_names.append("mb_conv_3x3")
register_op("mb_conv_3x3", lambda C, stride, affine: MBConv(C, 3, stride, 3, affine=affine, act=nn.ReLU6),
            description="pt.darts (HAJEKEL) MBConv: 1x1 expand x3, depthwise 3x3, 1x1 project, ReLU6, residual at "
                        "stride 1")
_names.append("fused_mb_conv_3x3")
register_op("fused_mb_conv_3x3",
            lambda C, stride, affine: FusedMBConv(C, 3, stride, 3, affine=affine, act=nn.ReLU6, groups=C),
            description="pt.darts (HAJEKEL) Fused-MBConv: grouped 3x3 expand x3 (C groups), 1x1 project, ReLU6, "
                        "residual at stride 1")

MOBILE_OPS: tuple[str, ...] = tuple(_names)
"""Names of the ops this module registers."""

del _names, _k, _e, _se
