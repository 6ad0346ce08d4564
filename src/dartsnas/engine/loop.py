"""The one epoch loop that searching and training share (as detectron2's ``TrainerBase``).

The loop owns what every run needs: resuming at an epoch or inside one (replaying the data order, then the
saved random states), stop signals (Ctrl-C, SIGTERM: a checkpoint, then ``StopRequested``), out-of-memory and
full-disk guards, progress bars and step logs, non-finite loss checks, and the hooks around steps and epochs
(engine/hooks.py), of which the checkpoints and the run's files are a part.

A subclass supplies the work: its loaders' random states, the batches of an epoch, ``run_step`` (one
optimisation step on a batch), the end-of-epoch evaluation that makes the metrics row, its state dict, and
what the run returns.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..errors import CheckpointError, StopRequested
from .common import (
    Average,
    GracefulStop,
    NonFiniteLoss,
    guard_resources,
    progress,
    rng_state,
    set_rng_state,
    skip_and_restore,
    step_flags,
)
from .distributed import SINGLE, Dist, ReadOnlyRun, local_state, per_rank_state
from .hooks import Checkpointer, EpochEnd, Hook, MetricsWriter, StepEnd

logger = logging.getLogger(__name__)


@dataclass
class StepOutput:
    """What ``run_step`` returns: the training loss and the logits and targets it came from (for the running
    accuracy), and every loss to check for NaN or infinity, by the name an error would use."""

    loss: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor
    checks: dict[str, float | None] = field(default_factory=dict)


class EpochLoop:
    """Base of ``Search`` and ``Trainer``. ``run(run_dir)`` runs epochs ``epoch + 1 .. cfg.epochs``."""

    kind: ClassVar[str] = "run"  # in commands and progress bars: search, train
    noun: ClassVar[str] = "run"  # in messages: the search, the training
    remedies: ClassVar[str] = "a lower --lr"  # what to try after a non-finite loss

    # set by the subclass's constructor
    cfg: Any
    device: torch.device
    scheduler: Any  # of the weights' optimizer
    scaler: torch.amp.GradScaler

    def _init_loop(self, *, dist: Dist | None, hooks: Sequence[Hook], show_progress: bool | None) -> None:
        from .common import is_terminal

        self.dist = dist or SINGLE
        self.show_progress = (is_terminal() if show_progress is None else show_progress) and self.dist.is_main
        self.hooks: list[Hook] = list(hooks)
        wrong = [h for h in self.hooks if not isinstance(h, Hook)]
        if wrong:
            raise TypeError(f"hooks must be dartsnas.engine.hooks.Hook instances, got {type(wrong[0]).__name__}")
        self.epoch = 0  # epochs completed
        self.metrics: list[dict[str, Any]] = []
        self.last_saved: tuple[int, int] | None = None  # (epochs done, step) of the newest checkpoint
        self.is_best_epoch = False  # the Checkpointer also keeps this epoch as the best
        self.run_dir: Any = None
        self._resume: dict[str, Any] | None = None  # a mid-epoch position to continue from
        self._stop = GracefulStop()
        self._active: list[Hook] = []
        self._epoch_rng: Any = None
        self._avg = Average()
        self._unreadable_seen = 0

    # -- what a subclass supplies ----------------------------------------------------------------------------
    def loader_states(self) -> Any:
        """The random states that fix an epoch's data order."""
        raise NotImplementedError

    def set_loader_states(self, state: Any) -> None:
        raise NotImplementedError

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def data_loaders(self) -> list[Any]:
        """The loaders an epoch reads (their ``unreadable`` counts go into the epoch's log line)."""
        return []

    def batches(self) -> Iterator[Any]:
        """The epoch's batches, in order (at least ``steps_per_epoch`` of them)."""
        raise NotImplementedError

    def begin_epoch(self, epoch: int, resume: dict[str, Any] | None) -> None:
        """Before the epoch's first step (``resume``: the mid-epoch position continued from)."""

    def run_step(self, batch: Any, epoch: int) -> StepOutput:
        raise NotImplementedError

    def epoch_state(self) -> dict[str, Any]:
        """The subclass's part of a mid-epoch position (saved in the checkpoint)."""
        return {}

    def epoch_summary(self, total: Average) -> dict[str, Any]:
        """The training figures of the epoch, all processes together."""
        return {"loss": total.mean_loss, "acc": total.accuracy}

    def end_epoch(self, epoch: int, train: dict[str, Any], lr: float, start: float) -> dict[str, Any]:
        """Evaluate; return the epoch's metrics row."""
        raise NotImplementedError

    def describe(self, row: dict[str, Any]) -> str:
        """The epoch's log line after ``epoch N/M``."""
        return ""

    def early_stop(self) -> str | None:
        """Why the run should stop before ``cfg.epochs`` (None: go on)."""
        return None

    def default_hooks(self) -> list[Hook]:
        """The subclass's own artifact hooks, run before the checkpoint."""
        return []

    def current_lr(self) -> float:
        raise NotImplementedError

    def model_state(self) -> dict[str, Any]:
        """The subclass's part of a checkpoint: its model's and optimizers' states (and what else it keeps)."""
        raise NotImplementedError

    def load_model_state(self, state: dict[str, Any]) -> None:
        """Load ``model_state``'s part (KeyError, RuntimeError, ValueError: the checkpoint does not match)."""
        raise NotImplementedError

    def after_load(self, state: dict[str, Any]) -> None:
        """After a checkpoint is loaded: anything the subclass rebuilds from it."""

    def result(self) -> Any:
        raise NotImplementedError

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self, run_dir) -> Any:
        """Run to ``cfg.epochs``; Ctrl-C or SIGTERM saves a checkpoint and raises StopRequested; a non-finite
        loss, running out of memory or disk space raise a DartsNASError naming the remedy."""
        if self.cfg.deterministic and not torch.are_deterministic_algorithms_enabled():
            logger.warning("deterministic=True, but this process is not set up for it: call "
                           "dartsnas.setup_process(..., deterministic=True) first (the CLI does)")
        with self._stop, guard_resources(self.cfg.batch_size, self.device, self.kind, run_dir.path,
                                         lambda: self.last_saved, self.examples_per_epoch()):
            return self._run_epochs(run_dir)

    def _run_epochs(self, run_dir) -> Any:
        cfg = self.cfg
        self.run_dir = run_dir if self.dist.is_main else ReadOnlyRun(run_dir)
        hooks = [*self.default_hooks(), MetricsWriter(), Checkpointer(cfg.checkpoint_every), *self.hooks]
        self._active = [h for h in hooks if h.all_ranks or self.dist.is_main]
        for hook in self._active:
            hook.before_run(self)
        while self.epoch < cfg.epochs and self.early_stop() is None:  # a resumed early stop just finishes
            epoch = self.epoch + 1
            start = time.perf_counter()
            lr = self.current_lr()
            for hook in self._active:
                hook.before_epoch(self, epoch)
            train = self.train_epoch(epoch)
            row = self.end_epoch(epoch, train, lr, start)
            self.scheduler.step()
            self.epoch = epoch
            self.metrics.append(row)
            logger.info("epoch %d/%d  %s%s", epoch, cfg.epochs, self.describe(row), self._unreadable_note())
            end = EpochEnd(epoch, row)
            for hook in self._active:
                hook.after_epoch(self, end)
            reason = self.early_stop()
            if reason is not None:
                logger.info("stopping early after epoch %d: %s", epoch, reason)
                break
            if self._stop.requested:
                raise StopRequested(self._stop.requested, epoch, self.steps())
        for hook in self._active:
            hook.after_run(self)
        return self.result()

    def _unreadable_note(self) -> str:
        """How many images this epoch left out as unreadable, over all ranks (each was named in a warning)."""
        total = sum(getattr(loader, "unreadable", 0) for loader in self.data_loaders())
        new = int(self.dist.sum([total - self._unreadable_seen])[0])
        self._unreadable_seen = total
        return f"  ({new} unreadable image{'s' if new != 1 else ''} skipped)" if new else ""

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch of steps (from a mid-epoch position after a resume); returns ``epoch_summary``."""
        cfg = self.cfg
        resume, self._resume = self._resume, None
        if resume is not None:  # back to where this epoch's data order began
            self.set_loader_states(resume["loader_rng"])
        self._epoch_rng = self.loader_states()
        self._avg = avg = Average().load(resume["avg"]) if resume else Average()
        self.begin_epoch(epoch, resume)
        steps = self.steps()
        first = int(resume["step"]) if resume else 0
        batches = self.batches()
        if resume is not None:
            skip_and_restore(lambda: next(batches), first, resume["rng"])
        bar = progress(range(first + 1, steps + 1), total=steps, desc=f"{self.kind} epoch {epoch}/{cfg.epochs}",
                       enabled=self.show_progress, initial=first)
        for step in bar:
            for hook in self._active:
                hook.before_step(self, epoch, step)
            out = self.run_step(next(batches), epoch)
            avg.update(out.loss, out.logits, out.targets)
            stop, bad = step_flags(self.dist, self._stop, out.checks, device=self.device)
            if bad:
                raise NonFiniteLoss(self.noun, epoch, step, bad, self.last_saved,
                                    self.run_dir.path if self.run_dir is not None else None, self.remedies)
            if self.show_progress:
                bar.set_postfix(loss=f"{avg.mean_loss:.3f}", acc=f"{avg.accuracy:.1f}")
            elif cfg.log_every and step % cfg.log_every == 0:
                logger.info("epoch %d step %d/%d  train loss %.4f acc %.2f%%", epoch, step, steps, avg.mean_loss,
                            avg.accuracy)
            end = StepEnd(epoch, step, steps, float(out.loss), stop)
            for hook in self._active:
                hook.after_step(self, end)
            if stop and step < steps:
                raise StopRequested(stop, epoch, step)
        return self.epoch_summary(Average().load(self.dist.sum(avg.state())))

    def examples_per_epoch(self) -> int | None:
        """The training images an epoch sees in this process (None: unknown); the out-of-memory advice never
        suggests a batch larger than that."""
        loader = getattr(self, "train_loader", None)
        return len(loader.dataset) if loader is not None else None

    def steps(self) -> int:
        """Steps per epoch: the subclass's, at most ``cfg.limit_batches`` (a first trial on a subset)."""
        limit = self.cfg.limit_batches
        return min(self.steps_per_epoch(), limit) if limit else self.steps_per_epoch()

    def position(self, step: int) -> dict[str, Any]:
        """The mid-epoch position after ``step`` of the current epoch, for a checkpoint."""
        return {"step": step, "loader_rng": self._epoch_rng, "avg": self._avg.state(), **self.epoch_state()}

    # -- checkpoints -----------------------------------------------------------------------------------------
    def _check_schema(self, state: dict[str, Any]) -> None:
        """The fields the loop reads, by type and range, before anything uses them: a damaged checkpoint is a
        CheckpointError naming the field, never an IndexError deep in a resume."""
        def damaged(field: str, want: str) -> CheckpointError:
            return CheckpointError(f"the checkpoint is damaged: {field} should be {want}")

        for name in ("epoch", "step"):
            value = state.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise damaged(name, f"a whole number >= 0, not {value!r}"[:120])
        metrics = state.get("metrics")
        if not isinstance(metrics, list) or not all(isinstance(r, dict) for r in metrics):
            raise damaged("metrics", "a list of rows")
        for name in ("rng", "scheduler", "model"):
            if not isinstance(state.get(name), dict):
                raise damaged(name, "a dictionary")
        partial = state.get("partial")
        if partial is not None:
            step = partial.get("step") if isinstance(partial, dict) else None
            if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= self.steps():
                raise damaged("partial", f"a position inside an epoch of {self.steps()} steps")
            avg = partial.get("avg")
            if not isinstance(avg, (list, tuple)) or len(avg) != 3 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in avg):
                raise damaged("partial.avg", "three numbers (loss sum, correct, seen)")

    def state_dict(self, partial: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything to continue; ``partial`` describes a position inside epoch ``epoch + 1`` (mid-epoch).
        Under torchrun every rank must call it (it gathers each rank's RNG states)."""
        return per_rank_state(self.dist, {
            "kind": self.kind,
            "config": self.cfg.to_dict(),
            "epoch": self.epoch,
            "step": partial["step"] if partial else 0,
            "partial": partial,
            **self.model_state(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "loader_rng": self.loader_states(),
            "metrics": [dict(r) for r in self.metrics],
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (``state_dict``'s): a checkpoint of another kind of run or of another network
        is a CheckpointError."""
        if not isinstance(state, dict):
            raise CheckpointError("the checkpoint is damaged: it holds no dictionary of states")
        if state.get("kind") != self.kind:
            raise CheckpointError(f"the checkpoint is from a {state.get('kind')!r} run, not a {self.noun} run")
        state = local_state(self.dist, state)
        self._check_schema(state)
        try:
            self.load_model_state(state)
            sched = dict(state["scheduler"])
            extended = "T_max" in sched and float(sched["T_max"]) != float(self.cfg.epochs)
            if extended:  # more epochs on resume extend the cosine schedule
                sched["T_max"] = float(self.cfg.epochs)
            self.scheduler.load_state_dict(sched)
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            self.set_loader_states(state["loader_rng"])
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as e:
            first = str(e).splitlines()[0] if str(e) else ""
            raise CheckpointError(f"the checkpoint does not match this {self.noun}'s network or optimizers "
                                  f"({type(e).__name__}: "
                                  f"{first})") from None
        self.epoch = int(state["epoch"])
        self.last_saved = (self.epoch, int(state.get("step", 0)))
        partial = state.get("partial")
        self._resume = None if partial is None else {**partial, "rng": state["rng"]}
        self.metrics = [dict(r) for r in state["metrics"]]
        self.after_load(state)
        if extended:  # the cosine schedule of the new length at the current epoch (else the saved lr stands)
            lr = cosine_lr(self.cfg.lr, self.cfg.lr_min, self.epoch, self.cfg.epochs)
            for group in self.scheduler.optimizer.param_groups:
                group["lr"] = lr
            self.scheduler._last_lr = [lr for _ in self.scheduler.optimizer.param_groups]


def cosine_lr(lr: float, lr_min: float, epoch: int, epochs: int) -> float:
    """The cosine schedule's learning rate after ``epoch`` of ``epochs``."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


__all__ = ["EpochLoop", "StepOutput", "cosine_lr"]
