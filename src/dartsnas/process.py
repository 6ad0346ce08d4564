"""Process setup: the one explicit call that changes the whole process (as Lightning Fabric's ``seed_everything``).

Building a ``Search``, a ``Trainer``, a network or a space touches nothing outside the object. What a run needs
from the process is done here, by ``dartsnas search`` / ``train`` (through ``dartsnas.run_search`` and
``run_training``) and by a library user who wants the same:

- the global random generators of Python, NumPy and torch seeded (``seed + 7919 * rank`` under torchrun, so
  that every process draws its own augmentation);
- deterministic algorithms or cuDNN autotuning (``--deterministic``), with cuBLAS's fixed workspace;
- the CPU threads of each process (``--threads``; by default what the machine has free);
- on the CPU, glibc's allocator told to keep freed memory (``tune_malloc``) and the C kernels built now rather
  than inside the first step.
"""
from __future__ import annotations

import logging
import os
import random
import sys
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

RANK_SEED_STRIDE = 7919  # process r of a torchrun job seeds its generators with seed + r * this


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all CUDA devices too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_determinism(on: bool) -> None:
    """``--deterministic``: deterministic algorithms where torch has them (errors where it has none), no cuDNN
    autotuning, and cuBLAS's fixed workspace. Off: cuDNN may pick the fastest (non-deterministic) kernels."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=False)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_malloc_tuned = False


def tune_malloc() -> bool:
    """Keep freed memory for reuse in glibc's allocator (Linux only; once per process).

    A CPU step allocates and frees thousands of activation buffers of a few MiB. By default glibc serves each
    from a fresh ``mmap`` (or gives trimmed heap back to the system), so every buffer is page-faulted and zeroed
    by the kernel again: measured 7% of a search step on 2 cores. Buffers up to 32 MiB now come from the heap
    and freed heap is not returned to the system until exit. Peak RSS measured the same or lower on the benchmark
    (the same buffers are live at the peak), though fragmentation could add some on other workloads.
    Returns whether the allocator was tuned; ``DARTSNAS_NO_MALLOC_TUNING=1`` turns it off."""
    global _malloc_tuned
    if _malloc_tuned or os.environ.get("DARTSNAS_NO_MALLOC_TUNING") or not sys.platform.startswith("linux"):
        return _malloc_tuned
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1) == 1 and ok
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False
    _malloc_tuned = ok
    return ok


def default_threads(world_size: int = 1) -> tuple[int, str]:
    """CPU threads for one of ``world_size`` processes: the CPUs this process may use (its affinity), less those
    that other work keeps busy (the 1-minute load average, taken before this run adds its own), shared by the
    processes, capped at torch's own default; at least 1. Returns the number and why, for the log.

    Two threads per process on a CPU that other work also uses made a search 5-30x slower than one (OpenMP's
    threads spin while they wait for each other); an idle CPU gets all its cores."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except (AttributeError, OSError):
        busy = 0
    free = max(1, (cpus - busy) // max(1, world_size))
    threads = max(1, min(free, torch.get_num_threads()))
    return threads, f"{cpus} CPU(s) usable, load {busy}, {world_size} process(es)"


def set_threads(threads: int | None, world_size: int = 1) -> str:
    """``torch.set_num_threads``: ``threads``, or ``default_threads`` when None; returns the choice as a line
    for the run's log."""
    if threads is None:
        threads, why = default_threads(world_size)
        line = f"{threads} CPU thread(s) per process ({why}; --threads N to choose)"
    elif threads < 1:
        from .errors import ConfigError

        raise ConfigError(f"--threads must be >= 1, got {threads}")
    else:
        line = f"{threads} CPU thread(s) per process (--threads)"
    torch.set_num_threads(int(threads))
    return line


def setup_process(seed: int | None = None, *, deterministic: bool = False, device: Any = "cpu",
                  rank: int = 0, threads: int | None | bool = False, world_size: int = 1) -> dict[str, Any]:
    """Prepare this process for a run: seed the global generators (``seed + 7919 * rank``; None: leave them),
    set determinism (``deterministic``), set the CPU threads (``threads``: a number, None for the default of
    ``default_threads``, False to leave them), and on a CPU ``device`` tune the allocator and build the C
    kernels. Returns what was done, for the log."""
    done: dict[str, Any] = {"seed": seed, "deterministic": bool(deterministic)}
    if threads is not False:
        done["threads"] = set_threads(threads, world_size)
    if seed is not None:
        seed_everything(int(seed) + RANK_SEED_STRIDE * int(rank))
    configure_determinism(bool(deterministic))
    if torch.device(device).type == "cpu":
        from .ops import native

        done["malloc_tuned"] = tune_malloc()
        done["native_kernels"] = native.available()
    return done


__all__ = ["RANK_SEED_STRIDE", "configure_determinism", "default_threads", "seed_everything", "set_threads",
           "setup_process", "tune_malloc"]
