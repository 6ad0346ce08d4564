"""Approximate-multiplier convolutions: exact references, table formats, straight-through gradients, op shapes."""
from __future__ import annotations

import copy
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dartsnas.ops.approx as approx
from dartsnas.errors import ConfigError
from dartsnas.ops import OPS, build_op
from dartsnas.ops.approx import (
    APPROX_PRIMITIVES,
    ApproxConv2d,
    MultiplierTable,
    approx_conv2d,
    table_options,
)

APPROX_OPS = ["approx_sep_conv_3x3", "approx_sep_conv_5x5", "approx_dil_conv_3x3", "approx_dil_conv_5x5",
              "approx_conv_3x3"]

# (C_in, C_out, kernel, stride, padding, dilation, groups)
CONVS = {
    "normal": (3, 5, 3, 1, 1, 1, 1),
    "strided": (3, 4, 3, 2, 1, 1, 1),
    "dilated": (2, 3, 3, 1, 2, 2, 1),
    "depthwise": (4, 4, 3, 1, 1, 1, 4),
}


def _quantize(t: torch.Tensor) -> tuple[torch.Tensor, float]:
    t = t.detach().double()
    scale = float(t.abs().max()) / 127
    return torch.round(t / scale).clamp(-127, 127), scale


def _perturbed(signed: bool, seed: int = 0) -> MultiplierTable:
    rng = np.random.default_rng(seed)
    return MultiplierTable.from_array(MultiplierTable.exact(signed).values + rng.integers(-40, 41, (256, 256)),
                                      signed=signed, name="perturbed")


def _brute_force(qx: np.ndarray, qw: np.ndarray, table: np.ndarray, signed: bool, stride: int, padding: int,
                 dilation: int, groups: int) -> np.ndarray:
    """Integer accumulations of table products with explicit loops (padded inputs are code 0)."""
    def mul(a: int, b: int) -> int:
        if signed:
            return int(table[a & 0xFF, b & 0xFF])
        return int(np.sign(a) * np.sign(b)) * int(table[abs(a), abs(b)])

    n, c_in, h, w = qx.shape
    c_out, c_in_g, kh, kw = qw.shape
    xp = np.pad(qx, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, c_out, ho, wo), dtype=np.int64)
    for b in range(n):
        for o in range(c_out):
            g = o // (c_out // groups)
            for i in range(ho):
                for j in range(wo):
                    total = 0
                    for c in range(c_in_g):
                        for u in range(kh):
                            for v in range(kw):
                                a = int(xp[b, g * c_in_g + c, i * stride + u * dilation, j * stride + v * dilation])
                                total += mul(a, int(qw[o, c, u, v]))
                    out[b, o, i, j] = total
    return out


@pytest.mark.parametrize("kind", list(CONVS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_table_is_quantized_convolution(kind, dtype):
    c_in, c_out, k, s, p, d, g = CONVS[kind]
    torch.manual_seed(0)
    conv = ApproxConv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, groups=g).to(dtype)
    x = torch.randn(2, c_in, 7, 7, dtype=dtype)
    qx, sx = _quantize(x)
    qw, sw = _quantize(conv.weight)
    ref = F.conv2d(qx, qw, None, s, p, d, g) * (sx * sw) + conv.bias.double().view(1, -1, 1, 1)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for inp in (x, x.contiguous(memory_format=torch.channels_last)):
        y = conv(inp)
        assert y.dtype == dtype and y.shape == ref.shape
        torch.testing.assert_close(y.double(), ref, rtol=tol, atol=tol)
    assert not x.requires_grad and torch.equal(x, x.clone())  # the input is untouched


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("conf", [(3, 1, 1, 1, 1), (3, 2, 1, 1, 1), (3, 1, 2, 2, 1), (2, 1, 0, 1, 2)])
def test_gather_path_matches_brute_force(signed, conf):
    c_out, s, p, d, g = conf
    table = _perturbed(signed)
    torch.manual_seed(1)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    w = torch.randn(c_out, 2 // g, 3, 3, dtype=torch.float64)
    qx, sx = _quantize(x)
    qw, sw = _quantize(w)
    ref = _brute_force(qx.long().numpy(), qw.long().numpy(), table.values, signed, s, p, d, g)
    y = approx_conv2d(x, w, None, s, p, d, g, table=table)
    acc = y / (sx * sw)
    assert torch.equal(torch.round(acc).long(), torch.from_numpy(ref))
    assert float((acc - torch.round(acc)).abs().max()) < 1e-6
    assert not np.array_equal(ref, _brute_force(qx.long().numpy(), qw.long().numpy(),
                                                MultiplierTable.exact(signed).values, signed, s, p, d, g))


def test_gather_chunks_give_the_same_sums(monkeypatch):
    table = _perturbed(True, seed=3)
    torch.manual_seed(2)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    for c_out, groups in ((6, 2), (4, 4)):
        w = torch.randn(c_out, 4 // groups, 3, 3, dtype=torch.float64)
        whole = approx_conv2d(x, w, None, 1, 1, 1, groups, table=table)
        for budget in (1, 7, 100, 2000):
            monkeypatch.setattr(approx, "GATHER_CHUNK_ELEMENTS", budget)
            assert torch.equal(approx_conv2d(x, w, None, 1, 1, 1, groups, table=table), whole)
        monkeypatch.undo()


@pytest.mark.parametrize("kind", list(CONVS))
def test_forced_gather_on_exact_table_equals_fast_path(kind):
    c_in, c_out, k, s, p, d, g = CONVS[kind]
    torch.manual_seed(3)
    x = torch.randn(2, c_in, 7, 7, dtype=torch.float64)
    w = torch.randn(c_out, c_in // g, k, k, dtype=torch.float64)
    exact = MultiplierTable.exact()
    fast = approx_conv2d(x, w, None, s, p, d, g, table=exact, gather=False)
    slow = approx_conv2d(x, w, None, s, p, d, g, table=exact, gather=True)
    copy_ = MultiplierTable.from_array(exact.values.copy(), signed=True)
    assert copy_.is_exact and not _perturbed(True).is_exact
    assert torch.equal(fast, slow)
    assert torch.equal(fast, approx_conv2d(x, w, None, s, p, d, g, table=copy_))


def test_unsigned_sign_magnitude_exact_table_equals_signed():
    signed, unsigned = MultiplierTable.exact(True), MultiplierTable.exact(False)
    assert unsigned.values[255, 255] == 255 * 255 and signed.values[255, 255] == 1  # int8(-1) * int8(-1)
    assert unsigned.is_exact and signed.is_exact
    assert unsigned.product(-5, 7) == signed.product(-5, 7) == -35
    torch.manual_seed(4)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    for gather in (False, True):
        a = approx_conv2d(x, w, None, 1, 1, table=signed, gather=gather)
        b = approx_conv2d(x, w, None, 1, 1, table=unsigned, gather=gather)
        assert torch.equal(a, b)


def _one_line(exc: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(exc.value) and str(exc.value)


def test_load_round_trips_and_errors(tmp_path):
    table = _perturbed(True)
    table.save(tmp_path / "t.npy")
    loaded = MultiplierTable.load(tmp_path / "t.npy", signed=True)
    assert np.array_equal(loaded.values, table.values) and loaded.signed

    # A .bin in the TFApprox layout, written by hand: 65536 little-endian uint16, row-major T[a][b].
    unsigned = np.array([[a * b - (a * b) % 4 for b in range(256)] for a in range(256)], dtype=np.int64)
    with open(tmp_path / "mul8u_TRUNC.bin", "wb") as f:
        for a in range(256):
            for b in range(256):
                f.write(struct.pack("<H", int(unsigned[a, b])))
    loaded = MultiplierTable.load(tmp_path / "mul8u_TRUNC.bin")
    assert not loaded.signed and loaded.name == "mul8u_TRUNC" and np.array_equal(loaded.values, unsigned)
    assert loaded.product(-3, 5) == -12 and loaded.product(-3, -5) == 12  # sign-magnitude
    # A signed table stores int16 two's complement; save() writes the same layout.
    table.save(tmp_path / "mul8s_P.bin")
    loaded = MultiplierTable.load(tmp_path / "mul8s_P.bin")
    assert loaded.signed and np.array_equal(loaded.values, table.values)
    assert loaded.values[255, 1] < 0  # int8(-1) * 1, perturbed

    # a .npy without mul8s/mul8u in its name: signed exactly when it holds a negative product
    assert MultiplierTable.load(tmp_path / "t.npy").signed
    MultiplierTable.exact(signed=False).save(tmp_path / "u.npy")
    assert not MultiplierTable.load(tmp_path / "u.npy").signed
    table.save(tmp_path / "P.bin")
    (tmp_path / "mul8u_short.bin").write_bytes(b"\0" * 1000)
    (tmp_path / "shape.npy").write_bytes(b"")
    np.save(tmp_path / "shape.npy", np.zeros((16, 16), dtype=np.int64))
    bad = [
        lambda: MultiplierTable.load(tmp_path / "mul8u_missing.bin"),
        lambda: MultiplierTable.load(tmp_path / "mul8u_short.bin"),
        lambda: MultiplierTable.load(tmp_path / "shape.npy", signed=True),
        lambda: MultiplierTable.load(tmp_path / "P.bin"),  # a .bin whose name does not say signed or unsigned
        lambda: MultiplierTable.from_array(np.zeros((256, 255))),
        lambda: MultiplierTable.from_array(np.full((256, 256), 0.5)),
        lambda: table_options(tmp_path / "nowhere" / "mul8s_X.npy"),
    ]
    for call in bad:
        with pytest.raises(ConfigError) as exc:
            call()
        _one_line(exc)


def test_the_table_travels_in_the_op_options_never_in_a_global(tmp_path):
    from dartsnas.space import SearchSpace
    from dartsnas.supernet import SearchNetwork

    table = _perturbed(False)
    op = build_op("approx_sep_conv_3x3", 4, 1, False, table_options(table))
    convs = [m for m in op.modules() if isinstance(m, ApproxConv2d)]
    assert len(convs) == 4 and all(m.table is table for m in convs)
    # built without options (or with options for other ops only): exact products, whatever was built before
    assert all(m.table.is_exact for m in build_op("approx_sep_conv_3x3", 4, 1, False).modules()
               if isinstance(m, ApproxConv2d))
    assert build_op("sep_conv_3x3", 4, 1, False, table_options(table)) is not None  # options it does not take
    assert ApproxConv2d(2, 2, 1).table is MultiplierTable.exact()
    table.save(tmp_path / "mul8u_P.npy")
    assert table_options(tmp_path / "mul8u_P.npy")["approx_table"].name == "mul8u_P"
    assert table_options(None) == {}
    # a space carries them to every edge of its supernet; another space's supernet stays exact
    space = SearchSpace(primitives=("skip_connect", "approx_conv_3x3"), nodes=2, multiplier=2,
                        op_options=table_options(table))
    tables = {m.table.name for m in SearchNetwork(space, 4, 3, 2).modules() if isinstance(m, ApproxConv2d)}
    assert tables == {table.name}
    plain = SearchSpace(primitives=("skip_connect", "approx_conv_3x3"), nodes=2, multiplier=2)
    assert all(m.table.is_exact for m in SearchNetwork(plain, 4, 3, 2).modules() if isinstance(m, ApproxConv2d))
    # The table is configuration, not state: shared by copies and absent from the state dict.
    clone = copy.deepcopy(op)
    assert next(m for m in clone.modules() if isinstance(m, ApproxConv2d)).table is table
    assert not any("table" in k for k in op.state_dict())


def test_registered_ops_and_primitives():
    assert set(APPROX_PRIMITIVES) <= set(OPS.names())
    assert set(APPROX_OPS) <= set(OPS.names())


@pytest.mark.parametrize("name", APPROX_OPS)
@pytest.mark.parametrize("stride", [1, 2])
def test_approx_op_shapes_and_gradients(name, stride):
    torch.manual_seed(6)
    op = build_op(name, 4, stride, True, table_options(_perturbed(True)))
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    y = op(x)
    assert y.shape == (2, 4, 8 // stride, 8 // stride)
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in op.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    # float64 and channels-last inputs
    op64 = copy.deepcopy(op).double()
    y64 = op64(x.detach().double().contiguous(memory_format=torch.channels_last))
    assert y64.dtype == torch.float64 and y64.shape == y.shape
