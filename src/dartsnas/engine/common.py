"""Pieces shared by the loops: devices, RNG state capture, progress, running averages, resource guards."""
from __future__ import annotations

import contextlib
import errno
import logging
import math
import random
import sys
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DartsNASError, StopRequested  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; an unavailable device is one clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but CUDA is not available here; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' asked for but it is not available here; use --device cpu or auto")
    return device


def rng_state() -> dict[str, Any]:
    """The RNG states of Python, NumPy and torch as tensors and plain types (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_plain(random.getstate()),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return [_to_plain(o) for o in obj]
    return obj


def progress(iterable: Iterable, *, total: int, desc: str, enabled: bool, initial: int = 0):
    """A tqdm bar on a terminal, the bare iterable otherwise."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr,
                initial=initial)


def is_terminal() -> bool:
    return sys.stderr.isatty()


class Average:
    """Running sums of loss and correct predictions over a number of samples."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.correct = 0
        self.n = 0

    def update(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        b = targets.shape[0]
        self.loss += float(loss) * b
        self.correct += int((logits.argmax(dim=1) == targets).sum())
        self.n += b

    def state(self) -> list[float]:
        return [self.loss, float(self.correct), float(self.n)]

    def load(self, state: list[float]) -> Average:
        self.loss, self.correct, self.n = float(state[0]), int(state[1]), int(state[2])
        return self

    @property
    def mean_loss(self) -> float:
        return self.loss / max(self.n, 1)

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / max(self.n, 1)


class GracefulStop:
    """While active, SIGINT and SIGTERM only set ``requested`` (the loop checks it between steps, saves a
    checkpoint and raises StopRequested). A second Ctrl-C stops at once. Inactive outside the main thread."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        import signal

        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        logger.warning("%s received: saving a checkpoint at the end of this step", self.requested)

    def __enter__(self) -> GracefulStop:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


def skip_and_restore(iterators_next: Callable[[], None], steps: int, rng: dict[str, Any] | None) -> None:
    """Replay ``steps`` batches of an epoch (to reach a mid-epoch checkpoint's position), then restore the RNG
    states saved at that moment (the replay used random numbers for augmentation)."""
    for _ in range(steps):
        iterators_next()
    if rng is not None:
        set_rng_state(rng)


class NonFiniteLoss(DartsNASError):
    """A loss became NaN or infinite: the run stops without saving, so the last good checkpoint stays."""

    def __init__(self, kind: str, epoch: int, step: int, what: str, last_saved: tuple[int, int] | None,
                 run_path: Any, remedies: str):
        if last_saved is None:
            kept = "no checkpoint had been saved yet"
        elif last_saved[1]:
            kept = f"its last good checkpoint (epoch {last_saved[0] + 1} step {last_saved[1]}) is kept"
        else:
            kept = f"its last good checkpoint (end of epoch {last_saved[0]}) is kept"
        where = f" in {run_path}" if run_path is not None else ""
        super().__init__(f"the {what} became non-finite in epoch {epoch} step {step}; the {kind} stopped and "
                         f"{kept}{where}; start again with {remedies}")
        self.epoch, self.step = epoch, step


class OutOfMemory(DartsNASError):
    pass


class DiskFull(DartsNASError):
    pass


def step_flags(dist: Any, stop: GracefulStop, checks: dict[str, float | None],
               device: Any = "cpu") -> tuple[str | None, str | None]:
    """After a step: the signal to stop on (if any rank got one) and which of ``checks`` (loss name -> value) is
    non-finite (if any rank saw one). One small all-reduce under torchrun, so that every rank takes the same
    decision."""
    bad = next((name for name, v in checks.items() if v is not None and not math.isfinite(v)), None)
    if dist.enabled:
        flags = dist.any([stop.requested is not None, bad is not None], device=device)
        signame = (stop.requested or "SIGTERM") if flags[0] else None
        return signame, (bad or "loss on another process") if flags[1] else None
    return stop.requested, bad


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(exc, oom):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@contextlib.contextmanager
def guard_resources(batch_size: int, device: Any, kind: str, run_path: Any, last_saved: Callable[[], Any],
                    examples: int | None = None):
    """Turn running out of memory or of disk space into one line naming the remedy (a batch half the real one:
    ``batch_size``, or the ``examples`` an epoch has when there are fewer)."""
    try:
        yield
    except (RuntimeError, MemoryError) as e:
        if not (isinstance(e, MemoryError) or _is_oom(e)):
            raise
        if getattr(device, "type", "") == "cuda":
            torch.cuda.empty_cache()
        real = min(batch_size, examples) if examples else batch_size
        raise OutOfMemory(f"out of memory on {device} with --batch-size {batch_size} (per process); lower it, "
                          f"e.g. --batch-size {max(1, real // 2)}, and scale --lr by the same factor") from None
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        saved = last_saved()
        # a save inside an epoch is (finished epochs, step): it belongs to the next epoch
        where = f"epoch {saved[0] + 1} step {saved[1]}" if saved and saved[1] else f"epoch {saved[0]}" if saved else ""
        kept = f"the files of the last good save ({where}) are intact" if saved else "nothing had been saved yet"
        raise DiskFull(f"no space left on the device while writing {e.filename or 'a run file'}: the {kind} "
                       f"stopped and {kept}; free space, then continue with: dartsnas {kind} --resume "
                       f"{run_path}") from None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``'s type; nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
