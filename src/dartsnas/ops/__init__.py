"""Candidate operations and the `OPS` registry.

An op is built as ``OPS[name](C, stride, affine)``: it maps ``C`` channels to ``C`` channels and divides the
spatial size by ``stride``. ``affine=False`` during search (BN without learnable scale and shift, as in DARTS),
``True`` in the trained network. Users add ops with ``@register_op("name")`` without editing dartsnas.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from ..registry import Registry

OpBuilder = Callable[[int, int, bool], nn.Module]

OPS: Registry[OpBuilder] = Registry("op")


def register_op(name: str, builder: OpBuilder | None = None, *, override: bool = False):
    """Register an op builder ``(C, stride, affine) -> nn.Module`` under ``name``; usable as a decorator."""
    return OPS.register(name, builder, override=override)


def build_op(name: str, C: int, stride: int, affine: bool) -> nn.Module:
    """Build the op registered under ``name`` (unknown names raise with the list of known ones)."""
    return OPS.get(name)(C, stride, affine)


from . import darts  # noqa: E402,F401  (registers the eight DARTS primitives)
from .darts import (  # noqa: E402
    DARTS_PRIMITIVES,
    DilConv,
    FactorizedReduce,
    Identity,
    ReLUConvBN,
    SepConv,
    Zero,
)

__all__ = [
    "OPS",
    "register_op",
    "build_op",
    "DARTS_PRIMITIVES",
    "DilConv",
    "FactorizedReduce",
    "Identity",
    "ReLUConvBN",
    "SepConv",
    "Zero",
]
