"""Convolutions with approximate 8-bit multipliers, for hardware-aware search.

``ApproxConv2d`` quantizes its input and weight to signed 8-bit codes (symmetric, per tensor, codes in
[-127, 127]), takes every code product from a 256 x 256 ``MultiplierTable`` (e.g. an EvoApprox8b circuit),
sums the products exactly and dequantizes. Gradients are straight-through: those of an ordinary convolution on
the float input and weight.

Each approximate product is split as ``T(a, b) = a * b + E(a, b)``: the exact part is one ``F.conv2d`` on the
codes held in float64 (exact: products are below 2^14, sums far below 2^53), so ``FlopCounterMode`` counts the
multiply-adds of an ordinary convolution of the same shape; the error part is gathered from ``E`` over unfolded
input patches, only when the table is not exact. Table row = input (activation) code, column = weight code.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from ..errors import ConfigError
from . import register_op

__all__ = [
    "APPROX_PRIMITIVES",
    "ApproxConv2d",
    "ApproxDilConv",
    "ApproxReLUConvBN",
    "ApproxSepConv",
    "MultiplierTable",
    "approx_conv2d",
    "table_options",
]

APPROX_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "approx_sep_conv_3x3",
    "approx_sep_conv_5x5",
    "approx_dil_conv_3x3",
    "approx_dil_conv_5x5",
)

QMAX = 127  # symmetric signed 8-bit codes: [-127, 127]
_NCODES = 2 * QMAX + 1
_BIN_VALUES = 256 * 256
_MAX_ABS_VALUE = 2**31  # keeps every sum of table entries exact in float64
GATHER_CHUNK_ELEMENTS = 1 << 22  # products gathered at once by the error path (bounds its memory)

TableLike = Union["MultiplierTable", str, os.PathLike, None]


class MultiplierTable:
    """A 256 x 256 table of 8-bit products ``T[a, b]``, ``a`` the input code and ``b`` the weight code.

    ``signed`` tables (EvoApprox8b ``mul8s_*``) are indexed by the two's complement byte of each code
    (``code & 0xFF``); ``unsigned`` tables (``mul8u_*``) by magnitudes, the sign applied after:
    ``sign(a) * sign(b) * T[|a|, |b|]`` (so a zero operand gives 0 whatever ``T[0, .]`` holds).
    Tables are immutable and shared (copying returns the same object).
    """

    def __init__(self, values: np.ndarray, *, signed: bool, name: str = "custom"):
        self._values = values
        self.signed = signed
        self.name = name
        self._error = _error_matrix(values, signed)
        self.max_abs_error = int(np.abs(self._error).max())
        self.is_exact = self.max_abs_error == 0
        self._lut_cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    @classmethod
    def exact(cls, signed: bool = True) -> MultiplierTable:
        """The exact multiplier (``int8(a) * int8(b)`` signed, ``a * b`` unsigned); one shared instance each."""
        return _exact_table(bool(signed))

    @classmethod
    def from_array(cls, arr, *, signed: bool = True, name: str = "custom") -> MultiplierTable:
        """A table from any integer-valued array of shape (256, 256) (copied)."""
        if not isinstance(signed, bool):
            raise ConfigError(f"signed must be True or False, got {signed!r}")
        a = np.asarray(arr)
        if a.shape != (256, 256):
            raise ConfigError(f"a multiplier table must have shape (256, 256), got {a.shape}")
        if a.dtype.kind not in "iub":
            if a.dtype.kind != "f" or not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                raise ConfigError(f"a multiplier table must hold integers, got dtype {a.dtype} with non-integer values")
        if np.abs(a.astype(np.float64)).max() >= _MAX_ABS_VALUE:
            raise ConfigError(f"multiplier table values must be below 2**31 in magnitude (table {name!r})")
        values = a.astype(np.int64, copy=True)
        values.flags.writeable = False
        return cls(values, signed=signed, name=name)

    @classmethod
    def load(cls, path: str | os.PathLike, signed: bool | None = None) -> MultiplierTable:
        """Read a ``.npy`` array (256, 256) or an EvoApprox8b / TFApprox ``.bin`` lookup table.

        ``.bin`` layout (as written by TFApprox, github.com/ehw-fit/tf-approximate, tf2/README.md): 65536
        little-endian 16-bit values, row-major ``T[a][b]`` for a, b in 0..255, read as uint16 for unsigned
        tables and as int16 (two's complement) for signed ones; signed tables are indexed by the operand bytes.
        ``signed=None`` infers it from the file name (``mul8s`` / ``mul8u``); failing that, a ``.npy`` table is
        signed when it holds a negative product (a signed multiplier does, an unsigned one cannot), and a ``.bin``
        file is an error.
        """
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"multiplier table file not found: {p}")
        if signed is None:
            lower = p.name.lower()
            if "mul8s" in lower:
                signed = True
            elif "mul8u" in lower:
                signed = False
            elif p.suffix.lower() == ".npy":
                signed = None  # decided from the values below
            else:
                raise ConfigError(f"cannot tell whether {p.name} is a signed or unsigned table from its name "
                                  "(no 'mul8s' or 'mul8u'); pass signed=True or signed=False")
        suffix = p.suffix.lower()
        if suffix == ".npy":
            try:
                arr = np.load(p, allow_pickle=False)
            except (ValueError, OSError) as e:
                raise ConfigError(f"cannot read multiplier table {p}: {str(e).splitlines()[0]}") from None
        elif suffix == ".bin":
            size = p.stat().st_size
            if size != 2 * _BIN_VALUES:
                raise ConfigError(f"{p}: a .bin multiplier table holds 65536 16-bit values ({2 * _BIN_VALUES} "
                                  f"bytes), got {size} bytes")
            arr = np.fromfile(p, dtype="<i2" if signed else "<u2").reshape(256, 256)
        else:
            raise ConfigError(f"unknown multiplier table format {p.suffix!r} for {p}: use .npy or .bin")
        if signed is None:
            try:
                signed = bool(np.asarray(arr).min() < 0)
            except (TypeError, ValueError):
                signed = True  # from_array reports what is wrong with the values
        return cls.from_array(arr, signed=signed, name=p.stem)

    def save(self, path: str | os.PathLike) -> None:
        """Write the table as ``.npy`` (int64) or ``.bin`` (the layout ``load`` reads; values must fit 16 bits)."""
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix == ".npy":
            np.save(p, self._values)
        elif suffix == ".bin":
            lo, hi = (-(2**15), 2**15 - 1) if self.signed else (0, 2**16 - 1)
            if self._values.min() < lo or self._values.max() > hi:
                kind = "int16" if self.signed else "uint16"
                raise ConfigError(f"table {self.name!r} does not fit the {kind} values of a .bin file")
            self._values.astype("<i2" if self.signed else "<u2").tofile(p)
        else:
            raise ConfigError(f"unknown multiplier table format {p.suffix!r} for {p}: use .npy or .bin")

    @property
    def values(self) -> np.ndarray:
        """The raw [256, 256] int64 table (read-only)."""
        return self._values

    def product(self, a: int, b: int) -> int:
        """The approximate product of codes ``a`` (input) and ``b`` (weight), each in [-127, 127]."""
        if not (-QMAX <= a <= QMAX and -QMAX <= b <= QMAX):
            raise ConfigError(f"codes must be in [-{QMAX}, {QMAX}], got {a}, {b}")
        return int(a) * int(b) + int(self._error[a + QMAX, b + QMAX])

    def error_lut(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``E = T - a*b`` over codes [-127, 127] as a [255, 255] tensor: ``E[a + 127, b + 127]`` (cached)."""
        key = (torch.device(device), dtype)
        lut = self._lut_cache.get(key)
        if lut is None:
            lut = torch.from_numpy(self._error.astype(np.float64)).to(device=key[0], dtype=dtype)
            self._lut_cache[key] = lut
        return lut

    def __copy__(self) -> MultiplierTable:
        return self

    def __deepcopy__(self, memo) -> MultiplierTable:
        return self

    def __getstate__(self) -> dict:
        return {"values": self._values, "signed": self.signed, "name": self.name}

    def __setstate__(self, state: dict) -> None:
        values = np.array(state["values"], dtype=np.int64)
        values.flags.writeable = False
        self.__init__(values, signed=state["signed"], name=state["name"])

    def __repr__(self) -> str:
        return f"MultiplierTable(name={self.name!r}, signed={self.signed}, exact={self.is_exact})"


def _error_matrix(values: np.ndarray, signed: bool) -> np.ndarray:
    """``T_eff(a, b) - a*b`` for codes a, b in [-127, 127], as a [255, 255] int64 array."""
    codes = np.arange(-QMAX, QMAX + 1, dtype=np.int64)
    if signed:
        byte = codes & 0xFF
        effective = values[byte[:, None], byte[None, :]]
    else:
        mag, sign = np.abs(codes), np.sign(codes)
        effective = np.outer(sign, sign) * values[mag[:, None], mag[None, :]]
    return effective - np.outer(codes, codes)


@functools.cache
def _exact_table(signed: bool) -> MultiplierTable:
    ops = np.arange(256, dtype=np.int64)
    if signed:
        ops = ops.astype(np.uint8).view(np.int8).astype(np.int64)
    return MultiplierTable.from_array(np.outer(ops, ops), signed=signed,
                                      name="exact_signed" if signed else "exact_unsigned")


def _resolve_table(table: TableLike) -> MultiplierTable:
    if table is None:
        return MultiplierTable.exact()
    if isinstance(table, MultiplierTable):
        return table
    if isinstance(table, (str, os.PathLike)):
        return MultiplierTable.load(table)
    raise ConfigError(f"a multiplier table must be a MultiplierTable, a path or None, got {type(table).__name__}")


def table_options(table: TableLike) -> dict[str, MultiplierTable]:
    """The op options (``build_op``'s ``options``) that give the approx_* ops ``table`` (a table, a ``.npy`` or
    ``.bin`` path), loaded once; None: no options (exact products)."""
    return {} if table is None else {"approx_table": _resolve_table(table)}


def _quantize(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 codes in [-127, 127] and the scale (max-abs / 127; 1 for an all-zero tensor)."""
    t = t.detach().to(torch.float64)
    amax = t.abs().amax()
    scale = torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))
    return torch.round(t / scale).clamp_(-QMAX, QMAX), scale


def _gather_error(qx: torch.Tensor, qw: torch.Tensor, table: MultiplierTable, out_hw: tuple[int, int],
                  stride, padding, dilation, groups: int) -> torch.Tensor:
    """Sum of ``E[x_code, w_code]`` over each output's receptive field: [N, C_out, H_out, W_out], float64."""
    n = qx.shape[0]
    c_out, c_in_g, kh, kw = qw.shape
    cog, k = c_out // groups, c_in_g * kh * kw
    # Codes are exact in float32; padded positions are code 0, as in the exact convolution.
    cols = F.unfold(qx.to(torch.float32), (kh, kw), dilation=dilation, padding=padding, stride=stride)
    length = cols.shape[-1]
    x_idx = (cols.nan_to_num_(0.0).long() + QMAX).view(n, groups, 1, k, length)
    # Float32 sums are exact while every partial sum stays below 2^24.
    dtype = torch.float32 if k * table.max_abs_error < 2**24 else torch.float64
    # rows[g, c, k, a] = E[a, w_code(g*cog + c, k)]: one 255-entry row per weight, gathered by input code.
    w_idx = qw.reshape(c_out, k).long() + QMAX
    rows = table.error_lut(qx.device, dtype).t()[w_idx].view(groups, cog, k, _NCODES)
    out = qx.new_empty((n, groups, cog, length))
    unit = n * k * length  # gathered products per output channel
    budget = GATHER_CHUNK_ELEMENTS
    c_step = cog if cog * unit <= budget else max(1, budget // unit)
    g_step = max(1, budget // (cog * unit)) if c_step == cog else 1
    l_step = length if unit <= budget else max(1, budget // (n * k))
    for g0 in range(0, groups, g_step):
        g1 = min(groups, g0 + g_step)
        for c0 in range(0, cog, c_step):
            c1 = min(cog, c0 + c_step)
            src = rows[g0:g1, c0:c1].unsqueeze(0).expand(n, -1, -1, -1, -1)
            for l0 in range(0, length, l_step):
                l1 = min(length, l0 + l_step)
                idx = x_idx[:, g0:g1, :, :, l0:l1].expand(-1, -1, c1 - c0, -1, -1)
                out[:, g0:g1, c0:c1, l0:l1] = torch.gather(src, 4, idx).sum(dim=3)
    return out.view(n, c_out, *out_hw)


def _approx_forward(x: torch.Tensor, weight: torch.Tensor, table: MultiplierTable, stride, padding, dilation,
                    groups: int, gather: bool | None) -> torch.Tensor:
    qx, sx = _quantize(x)
    qw, sw = _quantize(weight)
    # Exact part: one convolution of the codes (integer-exact in float64); rounding guards against inexact
    # algorithms (e.g. FFT) a backend might pick.
    acc = torch.round(F.conv2d(qx, qw, None, stride, padding, dilation, groups))
    use_gather = not table.is_exact if gather is None else gather
    if use_gather:
        acc = acc + _gather_error(qx, qw, table, tuple(acc.shape[-2:]), stride, padding, dilation, groups)
    return (acc * (sx * sw)).to(x.dtype)


class _ApproxConvFunction(torch.autograd.Function):
    """Forward: the table-based convolution; backward: that of ``F.conv2d`` on the float operands."""

    @staticmethod
    def forward(ctx, x, weight, table, stride, padding, dilation, groups, gather):
        ctx.save_for_backward(x, weight)
        ctx.conv = (stride, padding, dilation, groups)
        return _approx_forward(x, weight, table, stride, padding, dilation, groups, gather)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        need_x, need_w = ctx.needs_input_grad[:2]
        grad_x = grad_w = None
        if need_x or need_w:
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, list(stride), list(padding), list(dilation), False, [0, 0], groups,
                [need_x, need_w, False])
        return grad_x, grad_w, None, None, None, None, None, None


def approx_conv2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1,
                  padding=0, dilation=1, groups: int = 1, *, table: TableLike = None,
                  gather: bool | None = None) -> torch.Tensor:
    """``F.conv2d`` with 8-bit quantized operands and table products; straight-through gradients.

    ``padding`` is numeric (zeros). ``gather=None`` runs the error gather only for a non-exact table;
    True forces it (same result for an exact table, slower), False skips it (the exact quantized convolution).
    """
    if isinstance(padding, str):
        raise ConfigError(f"approx_conv2d takes numeric padding, got {padding!r} (ApproxConv2d handles 'same')")
    tab = _resolve_table(table)
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    out = _ApproxConvFunction.apply(input, weight, tab, stride, padding, dilation, groups, gather)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class ApproxConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose products come from an 8-bit ``MultiplierTable`` (straight-through gradients).

    ``table=None`` means exact products. The table is not part of the state dict: whoever rebuilds the network
    passes it again (the space's or the network's op options).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None,
                 table: TableLike = None):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias, padding_mode=padding_mode, device=device, dtype=dtype)
        self.table = _resolve_table(table)

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        padding = self.padding
        if self.padding_mode != "zeros" or isinstance(padding, str):
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=mode)
            padding = (0, 0)
        return approx_conv2d(input, weight, bias, self.stride, padding, self.dilation, self.groups, table=self.table)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, table={self.table.name}"


class ApproxDilConv(nn.Sequential):
    """As ``DilConv``: ReLU, depthwise (dilated) k x k, pointwise 1 x 1, BN; both convolutions approximate."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int,
                 affine: bool = True, *, table: TableLike = None):
        tab = _resolve_table(table)
        super().__init__(
            nn.ReLU(inplace=False),
            ApproxConv2d(C_in, C_in, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=C_in,
                         bias=False, table=tab),
            ApproxConv2d(C_in, C_out, 1, bias=False, table=tab),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class ApproxSepConv(nn.Sequential):
    """As ``SepConv``: two approximate depthwise-separable blocks, the first carrying the stride."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True,
                 *, table: TableLike = None):
        tab = _resolve_table(table)
        super().__init__(
            ApproxDilConv(C_in, C_in, kernel_size, stride, padding, 1, affine, table=tab),
            ApproxDilConv(C_in, C_out, kernel_size, 1, padding, 1, affine, table=tab),
        )


class ApproxReLUConvBN(nn.Sequential):
    """ReLU, approximate full k x k convolution, BN."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True,
                 *, table: TableLike = None):
        super().__init__(
            nn.ReLU(inplace=False),
            ApproxConv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False, table=table),
            nn.BatchNorm2d(C_out, affine=affine),
        )


_LUT = "every product from the 8-bit multiplier table"
register_op("approx_sep_conv_3x3",
            lambda C, stride, affine, approx_table=None: ApproxSepConv(C, C, 3, stride, 1, affine, table=approx_table),
            description=f"sep_conv_3x3 with 8-bit quantized convolutions, {_LUT}")
register_op("approx_sep_conv_5x5",
            lambda C, stride, affine, approx_table=None: ApproxSepConv(C, C, 5, stride, 2, affine, table=approx_table),
            description=f"sep_conv_5x5 with 8-bit quantized convolutions, {_LUT}")
register_op("approx_dil_conv_3x3",
            lambda C, stride, affine, approx_table=None: ApproxDilConv(C, C, 3, stride, 2, 2, affine,
                                                                       table=approx_table),
            description=f"dil_conv_3x3 with 8-bit quantized convolutions, {_LUT}")
register_op("approx_dil_conv_5x5",
            lambda C, stride, affine, approx_table=None: ApproxDilConv(C, C, 5, stride, 4, 2, affine,
                                                                       table=approx_table),
            description=f"dil_conv_5x5 with 8-bit quantized convolutions, {_LUT}")
register_op("approx_conv_3x3",
            lambda C, stride, affine, approx_table=None: ApproxReLUConvBN(C, C, 3, stride, 1, affine,
                                                                          table=approx_table),
            description=f"ReLU, full 3x3 conv (8-bit, {_LUT}), BN")
