"""Typed hooks of the epoch loop (as detectron2's ``HookBase``): what runs around steps and epochs.

A hook overrides the methods it needs; each gets the loop and a small record of what happened. The loop's own
artifacts are hooks too, in this order after every epoch: the search's genotype and alpha history, the metrics
table, then the checkpoint; user hooks (cell diagrams, TensorBoard, yours) come after them, so that they see
every file of the epoch. A hook runs on the main process only unless it sets ``all_ranks`` (the checkpointer
does: every rank takes part in gathering the RNG states).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import DartsNASError

if TYPE_CHECKING:  # pragma: no cover
    from .loop import EpochLoop

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepEnd:
    """After step ``step`` (from 1) of ``steps`` in epoch ``epoch`` (from 1): its training loss, and the signal
    to stop on when one arrived (any process)."""

    epoch: int
    step: int
    steps: int
    loss: float
    stop: str | None


@dataclass(frozen=True)
class EpochEnd:
    """After epoch ``epoch``: its metrics row (as in metrics.csv)."""

    epoch: int
    row: dict[str, Any]


class Hook:
    """Override any of these; every one is a no-op here."""

    all_ranks: ClassVar[bool] = False  # most hooks write files: the main process only

    def before_run(self, loop: EpochLoop) -> None:
        """Once, before the first epoch this run does (after a resume too)."""

    def before_epoch(self, loop: EpochLoop, epoch: int) -> None:
        """Before epoch ``epoch`` (from 1) trains."""

    def before_step(self, loop: EpochLoop, epoch: int, step: int) -> None:
        """Before step ``step`` (from 1) of epoch ``epoch`` runs."""

    def after_step(self, loop: EpochLoop, end: StepEnd) -> None:
        """After every step, before the loop acts on a stop signal."""

    def after_epoch(self, loop: EpochLoop, end: EpochEnd) -> None:
        """After the epoch's evaluation and metrics row."""

    def after_run(self, loop: EpochLoop) -> None:
        """Once, after the last epoch (not after a stop or an error)."""

    def close(self) -> None:
        """Release files; called by whoever made the hook, whatever happened."""


class FailSafeHook(Hook):
    """A hook whose output is optional (pictures, logs): the first error it meets is one warning, and it is off
    for the rest of the run, which goes on."""

    what: ClassVar[str] = "output"
    tolerated: ClassVar[tuple[type[BaseException], ...]] = (DartsNASError, OSError, ImportError, ValueError,
                                                            RuntimeError)

    def __init__(self) -> None:
        self.disabled = False

    def after_epoch(self, loop: EpochLoop, end: EpochEnd) -> None:
        if not self.disabled:
            self.guarded(end.epoch, lambda: self.write(loop, end))

    def guarded(self, epoch: int, work: Callable[[], None]) -> None:
        """Run ``work``; its first tolerated error is one warning and turns the hook off."""
        try:
            work()
        except self.tolerated as e:
            logger.warning("no %s from epoch %d on: %s", self.what, epoch, e)
            self.disabled = True

    def write(self, loop: EpochLoop, end: EpochEnd) -> None:
        raise NotImplementedError


class MetricsWriter(Hook):
    """The run's metrics table, rewritten after every epoch."""

    def after_epoch(self, loop: EpochLoop, end: EpochEnd) -> None:
        loop.run_dir.write_metrics(loop.metrics)


class Checkpointer(Hook):
    """The run's latest checkpoint after every epoch (and its best one when the loop says the epoch is its best),
    and a mid-epoch checkpoint every ``checkpoint_every`` steps or when a stop signal arrives."""

    all_ranks = True

    def __init__(self, every: int = 0) -> None:
        self.every = every

    def after_step(self, loop: EpochLoop, end: StepEnd) -> None:
        if end.step < end.steps and (end.stop or (self.every and end.step % self.every == 0)):
            loop.run_dir.save_checkpoint(loop.state_dict(loop.position(end.step)))
            loop.last_saved = (end.epoch - 1, end.step)

    def after_epoch(self, loop: EpochLoop, end: EpochEnd) -> None:
        state = loop.state_dict()
        if loop.is_best_epoch:
            loop.run_dir.save_checkpoint(state, best=True)
        loop.run_dir.save_checkpoint(state)
        loop.last_saved = (end.epoch, 0)


def close_hooks(hooks) -> None:
    for hook in hooks:
        hook.close()


__all__ = ["Checkpointer", "EpochEnd", "FailSafeHook", "Hook", "MetricsWriter", "StepEnd", "close_hooks"]
