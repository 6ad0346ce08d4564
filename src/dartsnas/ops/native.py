"""Small C kernels for the CPU search step, compiled on first use; exact replacements for two slow oneDNN/ATen paths.

Profiling a batch-64 weight pass of the supernet (``benchmarks/search_step.py``) on a 2-core CPU put two
kernels far above their share of the arithmetic:

- the **weight gradient of a 5x5 depthwise convolution**: oneDNN takes 10-13x the time of the 3x3 one for 2.8x
  the taps (about 0.6 s of a 3.4 s weight pass, and a second-order step has three weight passes), and that of a
  dilated one 3-6x (the C kernel is 2.3x faster than even the pixel-phase rewrite of ``depthwise.py``);
- **3x3 max pooling** (padding 1), forward and backward: ATen computes int64 indices in the forward (0.9 ms a
  call at 64x16x32x32) and the backward needs them again.

Both are simple loops over channels-last (NHWC) float32 data, vectorised over the channels, so this module
reads their C source from ``native.c`` beside it (package data), compiles it with the system C compiler
(warnings on) into a per-user cache (``$DARTSNAS_CACHE`` or ``~/.cache/dartsnas``; the file name holds a hash of
the source, the compiler flags and the CPU's feature flags, since it is built with ``-march=native``) and calls it
through ``ctypes`` with the GIL released. The sums are the same sums in another order (float32 tolerance), and
max pooling gives the same values and sends each gradient to the element ATen's would (the first maximum in
row-major window order; NaN wins).

Nothing depends on it: without a C compiler, on a failed build, for other dtypes or layouts, or with
``DARTSNAS_NATIVE=0``, ``available()`` is false and callers keep PyTorch's own kernels.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from importlib import resources
from pathlib import Path

import torch

from .slab import float_pieces

logger = logging.getLogger(__name__)

# The kernels' C source, shipped beside this module (package data) and compiled on first use.
SOURCE = resources.files(__package__).joinpath("native.c").read_text(encoding="utf-8")

FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-fopenmp", "-Wall", "-Wextra"]
if platform.machine() in ("x86_64", "AMD64"):
    FLAGS.insert(2, "-mprefer-vector-width=512")  # AVX-512 where there is some (an x86-only option)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_error: str | None = None


def _cpu_key() -> str:
    """The CPU's feature flags (``-march=native`` builds for them): a cached library never meets another CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_dir() -> Path:
    return Path(os.environ.get("DARTSNAS_CACHE") or Path.home() / ".cache" / "dartsnas")


def _private_tmp() -> Path:
    """``$TMPDIR/dartsnas-<uid>``, made private; refused if someone else owns it or can write to it (a library
    planted there would run in this process)."""
    d = Path(tempfile.gettempdir()) / f"dartsnas-{os.getuid()}"
    d.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise OSError(f"{d} is not a private directory of this user")
    return d


def _compiled(target: Path, compiler: str) -> Path:
    """``target``, compiled first if it is not there (built aside and moved in: processes building at once, as
    under torchrun, each land a whole file)."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            src, lib = Path(tmp) / "kernels.c", Path(tmp) / "kernels.so"
            src.write_text(SOURCE)
            run = subprocess.run([compiler, *FLAGS, str(src), "-o", str(lib), "-lm"], capture_output=True, text=True,
                                 timeout=120)
            if run.returncode != 0:
                raise RuntimeError(f"{compiler} failed: {run.stderr.strip().splitlines()[-1:] or run.returncode}")
            if run.stderr.strip():  # warnings are on; the source compiles clean with gcc 12
                logger.warning("compiler warnings in the C kernels: %s", run.stderr.strip().splitlines()[0])
            os.replace(lib, target)
    return target


def _build() -> ctypes.CDLL:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise RuntimeError("no C compiler found")
    key = hashlib.sha256("\0".join([SOURCE, compiler, *FLAGS, _cpu_key(), platform.machine()]).encode()).hexdigest()
    name = f"kernels-{key[:16]}.so"
    try:
        lib = ctypes.CDLL(str(_compiled(cache_dir() / name, compiler)))
    except OSError:  # a cache that cannot be written or a file that does not load: a private temporary one
        lib = ctypes.CDLL(str(_compiled(_private_tmp() / name, compiler)))
    i64, ptr = ctypes.c_long, ctypes.c_void_p
    lib.dw_wgrad_f32.argtypes = [ptr, ptr, ptr] + [i64] * 10 + [ctypes.c_int]
    lib.maxpool3_fwd_f32.argtypes = [ptr, ptr] + [i64] * 7 + [ctypes.c_int]
    lib.maxpool3_bwd_f32.argtypes = [ptr, ptr, ptr] + [i64] * 7 + [ctypes.c_int]
    lib.bn_fwd_f32.argtypes = [ptr, ptr, ptr, ctypes.c_float, ptr, ptr, ptr, ptr, i64, i64, ctypes.c_double,
                               ctypes.c_double, ctypes.c_int, ctypes.c_int]
    lib.avgpool3_fwd_f32.argtypes = [ptr, ptr] + [i64] * 7 + [ctypes.c_int]
    lib.bn_bwd_f32.argtypes = [ptr, ptr, ptr, ptr, ptr, ptr, ptr, i64, i64, ctypes.c_int, ctypes.c_int]
    lib.bn_apply_f32.argtypes = [ptr, ptr, ptr, ptr, i64, i64, ctypes.c_int, ctypes.c_int]
    lib.avgpool3_bwd_f32.argtypes = [ptr, ptr] + [i64] * 7 + [ctypes.c_int]
    for fn in (lib.dw_wgrad_f32, lib.maxpool3_fwd_f32, lib.maxpool3_bwd_f32, lib.bn_fwd_f32, lib.avgpool3_fwd_f32,
               lib.avgpool3_bwd_f32, lib.bn_bwd_f32, lib.bn_apply_f32):
        fn.restype = ctypes.c_int
    return lib


def _load() -> ctypes.CDLL | None:
    global _lib, _tried, _error
    if _tried:
        return _lib
    with _lock:
        if not _tried:
            if os.environ.get("DARTSNAS_NATIVE", "1") == "0":
                _error = "turned off by DARTSNAS_NATIVE=0"
            elif not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_long) != 8:
                _error = "built only on 64-bit Linux"
            else:
                try:
                    _lib = _build()
                except Exception as exc:  # any failure: PyTorch's kernels instead
                    _error = f"{type(exc).__name__}: {exc}"
                    logger.info("native CPU kernels not built (%s): PyTorch's kernels are used", _error)
            _tried = True
    return _lib


def available() -> bool:
    """Whether the C kernels are built and loaded (built on the first call)."""
    return _load() is not None


def status(device: torch.device | str = "cpu") -> str:
    """One line for logs and benchmarks: which kernels the fast path uses on ``device``: where the C kernels
    came from, or why they are not used (on other devices: PyTorch's, since these are CPU kernels)."""
    if torch.device(device).type != "cpu":
        return f"fast path on {device}: PyTorch's kernels (the native kernels are CPU-only)"
    if available():
        return f"native CPU kernels: {_lib._name}"
    return f"native CPU kernels off ({_error})"


def _usable(*tensors: torch.Tensor) -> bool:
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.dim() == 4
               and t.is_contiguous(memory_format=torch.channels_last) for t in tensors) and available()


def _p(t: torch.Tensor) -> int:
    return t.data_ptr()


def _check(code: int) -> None:
    if code != 0:
        raise MemoryError("native kernel: out of memory") if code == -1 else RuntimeError(f"native kernel: {code}")


def depthwise_weight_grad(grad: torch.Tensor, x: torch.Tensor, k: int, stride: int, padding: int, dilation: int
                          ) -> torch.Tensor | None:
    """The weight gradient ``[C, 1, k, k]`` of ``conv2d(x, w, stride, padding, dilation, groups=C)``, or None where
    these kernels do not apply (then use PyTorch's)."""
    if not _usable(grad, x) or grad.shape[:2] != x.shape[:2]:
        return None
    B, C, H, W = x.shape
    Ho, Wo = grad.shape[-2:]
    out = torch.empty(C, 1, k, k, dtype=torch.float32)
    _check(_lib.dw_wgrad_f32(_p(x), _p(grad), _p(out), B, H, W, C, Ho, Wo, k, stride, padding, dilation,
                             torch.get_num_threads()))
    return out


def _pool_shape(n: int, s: int) -> int:
    return (n + 2 - 3) // s + 1


def _pool3(name: str, x: torch.Tensor, stride: int) -> torch.Tensor | None:
    """A 3x3, padding-1 pooling of ``x`` by the kernel ``name``, or None where these kernels do not apply."""
    if not _usable(x) or stride not in (1, 2):
        return None
    B, C, H, W = x.shape
    Ho, Wo = _pool_shape(H, stride), _pool_shape(W, stride)
    out = torch.empty(B, C, Ho, Wo, memory_format=torch.channels_last)
    _check(getattr(_lib, name)(_p(x), _p(out), B, H, W, C, Ho, Wo, stride, torch.get_num_threads()))
    return out


def _pool3_backward(grad: torch.Tensor, shape: torch.Size, stride: int, x: torch.Tensor | None = None
                    ) -> torch.Tensor | None:
    """The input gradient (of ``shape``) of a 3x3, padding-1 pooling: max pooling given its input ``x``, average
    pooling without; or None where these kernels do not apply."""
    if stride not in (1, 2) or not _usable(grad, *(() if x is None else (x,))):
        return None
    B, C, H, W = shape
    Ho, Wo = _pool_shape(H, stride), _pool_shape(W, stride)
    if tuple(grad.shape) != (B, C, Ho, Wo):
        return None
    out = torch.empty(B, C, H, W, memory_format=torch.channels_last)
    args = (_p(grad), _p(out), B, H, W, C, Ho, Wo, stride, torch.get_num_threads())
    _check(_lib.avgpool3_bwd_f32(*args) if x is None else _lib.maxpool3_bwd_f32(_p(x), *args))
    return out


def max_pool3(x: torch.Tensor, stride: int) -> torch.Tensor | None:
    """``F.max_pool2d(x, 3, stride, 1)``, or None where these kernels do not apply."""
    return _pool3("maxpool3_fwd_f32", x, stride)


def max_pool3_backward(grad: torch.Tensor, x: torch.Tensor, stride: int) -> torch.Tensor | None:
    """The input gradient of ``F.max_pool2d(x, 3, stride, 1)``, or None where these kernels do not apply."""
    return _pool3_backward(grad, x.shape, stride, x)


def avg_pool3(x: torch.Tensor, stride: int) -> torch.Tensor | None:
    """``F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)``, or None where these kernels do not apply."""
    return _pool3("avgpool3_fwd_f32", x, stride)


def avg_pool3_backward(grad: torch.Tensor, shape: torch.Size, stride: int) -> torch.Tensor | None:
    """The input gradient (of ``shape``) of ``avg_pool3``, or None where these kernels do not apply."""
    return _pool3_backward(grad, shape, stride)


def batch_norm_train(z: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                     momentum: float, eps: float, acc: torch.Tensor | None = None, gate: float = 1.0,
                     relu: bool = False, keep_output: bool = True
                     ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor] | None:
    """``torch.native_batch_norm(z, None, None, running_mean, running_var, True, momentum, eps)`` (output, mean,
    invstd; the running statistics updated in place), and, with ``acc``, ``acc += gate * output`` in the same
    pass (without ``keep_output``, only that: the output is None); with ``relu``, the output is ``relu(BN(z))``
    (no ``acc`` then); or None where these kernels do not apply."""
    if not _usable(z) or z.numel() == 0 or (acc is not None and (not _usable(acc) or acc.shape != z.shape)):
        return None
    if relu and acc is not None:
        raise ValueError("batch_norm_train: relu and acc do not go together")
    B, C, H, W = z.shape
    if not _stats_usable(C, *(t for t in (running_mean, running_var) if t is not None)):
        return None
    out = torch.empty_like(z, memory_format=torch.channels_last) if keep_output or acc is None else None
    mean, invstd = float_pieces(C, C)  # kept until the backward: from a shared block, not the heap's holes
    ptr = [t.data_ptr() if t is not None else None for t in (out, acc, running_mean, running_var)]
    _check(_lib.bn_fwd_f32(_p(z), ptr[0], ptr[1], gate, _p(mean), _p(invstd), ptr[2], ptr[3], B * H * W, C, momentum,
                           eps, int(relu), torch.get_num_threads()))
    return out, mean, invstd


def _stats_usable(C: int, *stats: torch.Tensor) -> bool:
    return all(t.dtype == torch.float32 and t.device.type == "cpu" and t.dim() == 1 and t.numel() == C
               and t.is_contiguous() for t in stats)


def batch_norm_apply(z: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor, relu: bool = False
                     ) -> torch.Tensor | None:
    """``(z - mean) * invstd`` per channel (``relu`` of it with ``relu``), computed as ``batch_norm_train``
    computes its output: a BN output made again from its input and the forward's statistics; or None where these
    kernels do not apply."""
    if not _usable(z) or z.numel() == 0 or not _stats_usable(z.shape[1], mean, invstd):
        return None
    B, C, H, W = z.shape
    out = torch.empty_like(z, memory_format=torch.channels_last)
    _check(_lib.bn_apply_f32(_p(z), _p(out), _p(mean), _p(invstd), B * H * W, C, int(relu),
                             torch.get_num_threads()))
    return out


def batch_norm_backward(grad: torch.Tensor, out: torch.Tensor, weight: torch.Tensor, need_input: bool,
                        need_weight: bool, relu: bool = False,
                        centre: tuple[torch.Tensor, torch.Tensor] | None = None
                        ) -> tuple[torch.Tensor | None, torch.Tensor | None] | None:
    """The backward of ``batch_norm_train`` from its output: ``weight * (grad - mean(grad) - out * mean(grad *
    out))`` (per channel; ``weight`` is the invstd, times a gate) and ``sum(grad * out)``; with ``relu``, of
    ``relu(BN(z))``: ``grad`` masked where ``out <= 0`` first, in the same passes (``out`` is still BN's own
    output). With ``centre=(mean, invstd)``, ``out`` is BN's input and its output is made again on the way, as
    ``batch_norm_apply`` makes it. None where these kernels do not apply."""
    C = out.shape[1] if out.dim() == 4 else -1
    if (not _usable(grad, out) or grad.shape != out.shape or out.numel() == 0
            or not _stats_usable(C, weight, *(centre or ()))):
        return None
    B, C, H, W = out.shape
    gin = torch.empty_like(out, memory_format=torch.channels_last) if need_input else None
    gw = torch.empty(C) if need_weight else None
    zm, zs = (_p(centre[0]), _p(centre[1])) if centre is not None else (None, None)
    _check(_lib.bn_bwd_f32(_p(grad), _p(out), _p(weight), gin.data_ptr() if gin is not None else None,
                           gw.data_ptr() if gw is not None else None, zm, zs, B * H * W, C, int(relu),
                           torch.get_num_threads()))
    return gin, gw
