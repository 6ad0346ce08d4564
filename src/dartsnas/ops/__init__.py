"""Candidate operations and the `OPS` registry.

An op is built as ``OPS[name](C, stride, affine)``: it maps ``C`` channels to ``C`` channels and divides the
spatial size by ``stride``. ``affine=False`` during search (BN without learnable scale and shift, as in DARTS),
``True`` in the trained network. Users add ops with ``@register_op("name")`` without editing dartsnas.

Op options (such as the approximate ops' ``approx_table``) travel with the space or the network that builds
the ops, never in a global: ``build_op(name, C, stride, affine, options)`` passes each builder the options it
names as keyword parameters.
"""
from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any

import torch.nn as nn

from ..errors import DartsNASError, OpError
from ..registry import Registry

OpBuilder = Callable[[int, int, bool], nn.Module]

OPS: Registry[OpBuilder] = Registry("op")


OP_DESCRIPTIONS: dict[str, str] = {}


def register_op(name: str, builder: OpBuilder | None = None, *, override: bool = False,
                description: str | None = None):
    """Register an op builder ``(C, stride, affine) -> nn.Module`` under ``name``; usable as a decorator.
    ``description`` (one line) is what ``dartsnas ops`` shows; without it, the builder's docstring."""
    if description:
        OP_DESCRIPTIONS[name] = description
    return OPS.register(name, builder, override=override)


def describe_op(name: str) -> str:
    """One line about op ``name``: its registered description, else the first line of its builder's or its
    module's docstring."""
    if name in OP_DESCRIPTIONS:
        return OP_DESCRIPTIONS[name]
    builder = OPS.get(name)
    doc = getattr(builder, "__doc__", None)
    if doc and not isinstance(builder, type) and getattr(builder, "__name__", "") != "<lambda>":
        return doc.strip().splitlines()[0]
    try:
        module = builder(4, 1, False)
    except Exception:  # a description is never worth an error
        return ""
    doc = type(module).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def build_op(name: str, C: int, stride: int, affine: bool, options: Mapping[str, Any] | None = None) -> nn.Module:
    """Build the op registered under ``name`` (unknown names raise with the list of known ones), passing it the
    ``options`` its builder takes as keyword parameters (the others are for other ops)."""
    builder = OPS.get(name)
    try:
        return builder(C, stride, affine, **_accepted(builder, options)) if options else builder(C, stride, affine)
    except DartsNASError:
        raise
    except Exception as e:  # a user's op: one line naming it and its module (the traceback with --verbose)
        name_of_module = getattr(builder, "__module__", None) or "?"
        where = getattr(sys.modules.get(name_of_module), "__file__", None) or name_of_module  # a user's file
        raise OpError(f"op {name!r} (from {where}) failed to build with C={C}, stride={stride}: "
                      f"{type(e).__name__}: {e}") from e


def parameter_free(name: str, options: Mapping[str, Any] | None = None) -> bool:
    """Whether the op ``name`` has no parameters at stride 1 (skip connections, pooling, ``none``): the ops a
    collapsing DARTS search fills its cells with."""
    return not any(True for _ in build_op(name, 4, 1, True, options).parameters())


def _accepted(builder: Callable[..., nn.Module], options: Mapping[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no options
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params and params[k].kind in
            (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}


# registration order is the order `dartsnas ops` lists
# isort: off
from . import darts  # noqa: E402,F401  (registers the eight DARTS primitives)
from . import mobile  # noqa: E402,F401  (MobileNet separable conv, MBConv, Fused-MBConv)
from . import attention  # noqa: E402,F401  (relative self-attention, feed-forward)
from . import approx  # noqa: E402,F401  (convolutions with approximate 8-bit multipliers)
from . import baseline  # noqa: E402,F401  (the plain convolutions of ResNet and Xception)
from . import ddarts  # noqa: E402,F401  (D-DARTS' DARTOpti ops)
# isort: on
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
    "describe_op",
    "OP_DESCRIPTIONS",
    "build_op",
    "parameter_free",
    "DARTS_PRIMITIVES",
    "DilConv",
    "FactorizedReduce",
    "Identity",
    "ReLUConvBN",
    "SepConv",
    "Zero",
]
