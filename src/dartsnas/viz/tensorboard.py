"""TensorBoard events under ``RUN/tensorboard``: scalars, the alpha weights per op and edge, the cell diagrams.

Written epoch by epoch by a hook the CLI attaches to ``search`` and ``train``; ``dartsnas plot RUN --only
tensorboard`` writes them afresh from the run's files (for a run made without the hook). Open them with
``tensorboard --logdir runs``.

Tags: ``loss/train``, ``loss/val``, ``loss/test``, ``loss/arch`` (the alpha step's validation loss),
``accuracy/...``, ``lr/weights``, ``lr/alphas``, ``alphas_normal/<edge> <op>`` (the op's weight on the edge:
softmax, or sigmoid with sigmoid gates; ``alphas_cell_NN`` per cell),
``op_totals_normal/<op>`` (summed over edges: skip-connection collapse shows here) and the same for
``reduce``; images ``cells/normal`` and ``cells/reduce`` at each epoch.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.hooks import FailSafeHook
from ..errors import DartsNASError
from .plots import _edge_labels

logger = logging.getLogger(__name__)

# metrics column -> TensorBoard tag
SCALARS = {"train_loss": "loss/train", "val_loss": "loss/val", "test_loss": "loss/test", "arch_loss": "loss/arch",
           "train_acc": "accuracy/train", "val_acc": "accuracy/val", "test_acc": "accuracy/test",
           "test_top5": "accuracy/test_top5", "lr": "lr/weights", "arch_lr": "lr/alphas",
           "drop_path_prob": "regularisation/drop_path_prob", "seconds": "time/seconds_per_epoch",
           "genotype_distance": "search/genotype_distance", "arch_metric": "search/arch_metric",
           "hessian_eigenvalue": "collapse/hessian_eigenvalue", "eigen_seconds": "time/eigenvalue_seconds",
           "param_free_normal": "collapse/param_free_normal", "param_free_reduce": "collapse/param_free_reduce"}


class TensorBoardMissing(DartsNASError):
    def __init__(self) -> None:
        super().__init__("TensorBoard events need the tensorboard package: pip install tensorboard")


def _writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TensorBoardMissing() from None
    return SummaryWriter(log_dir=str(folder), flush_secs=30)


def write_epoch(writer, epoch: int, row: dict[str, Any], alphas: dict[str, np.ndarray] | None = None,
                primitives: Sequence[str] = (), cells: Path | None = None, gate: str = "softmax") -> None:
    """One epoch's events: the metrics row, the alpha weights after the epoch (raw, ``{name: [edges, ops]}``),
    and the diagrams ``cells/epoch_NNN_{normal,reduce}.png`` when they exist."""
    for key, tag in SCALARS.items():
        value = row.get(key)
        if value not in (None, ""):
            writer.add_scalar(tag, float(value), epoch)
    for name, raw in (alphas or {}).items():
        if not name.startswith("alpha_"):
            continue
        from ..genotype import gate_values

        kind = name[len("alpha_"):]
        w = gate_values(raw, gate)
        for e, edge in enumerate(_edge_labels(w.shape[0])):
            for k, op in enumerate(primitives):
                writer.add_scalar(f"alphas_{kind}/{e:02d} {edge} {op}", float(w[e, k]), epoch)
        for k, op in enumerate(primitives):
            writer.add_scalar(f"op_totals_{kind}/{op}", float(w[:, k].sum()), epoch)
    if cells is not None:
        from PIL import Image

        prefix = f"epoch_{epoch:03d}_"
        for png in sorted(cells.glob(prefix + "*.png")):  # normal, reduce; or cell_00, cell_01, ... (per cell)
            with Image.open(png) as im:
                writer.add_image(f"cells/{png.stem[len(prefix):]}", np.asarray(im.convert("RGB")), epoch,
                                 dataformats="HWC")
    writer.flush()


def write_epochs(folder: Path, rows: Sequence[dict[str, Any]], history: dict[str, Sequence[np.ndarray]] | None,
                 primitives: Sequence[str] = (), cells: Path | None = None, gate: str = "softmax") -> None:
    """Every epoch's events into ``folder``, replacing any there: the metrics rows, the alphas after each epoch
    (``history[name][epoch]``, the initial ones at index 0) and the cell diagrams."""
    import shutil

    if folder.is_dir():
        shutil.rmtree(folder)
    writer = _writer(folder)
    try:
        for row in rows:
            epoch = int(float(row["epoch"]))
            alphas = None
            if history and epoch < min(len(v) for v in history.values()):
                alphas = {k: v[epoch] for k, v in history.items()}
            write_epoch(writer, epoch, row, alphas, primitives, cells, gate=gate)
    finally:
        writer.close()


def export_run(run_path: str | Path) -> Path:
    """Write the events of a finished (or stopped) run from its files into ``RUN/tensorboard``, replacing any
    there. Returns the folder."""
    from ..runs import RunDir

    run = RunDir.open(run_path)
    folder = run.path / "tensorboard"
    rows = run.read_metrics() if run.metrics_path.is_file() else []
    history = run.read_alpha_history() if run.alphas_path.is_file() else None
    primitives, gate, alphas = [], "softmax", None
    if history is not None:
        from .plots import alpha_kinds

        primitives = [str(p) for p in history["primitives"]]
        gate = str(history["gate"]) if "gate" in history else "softmax"
        alphas = {k: history[k] for k in alpha_kinds(history)}
    write_epochs(folder, rows, alphas, primitives, run.path / "pictures" / "cells", gate)
    return folder


class TensorBoardLog(FailSafeHook):
    """Search and training hook: the epoch's events in ``RUN/tensorboard`` as it ends. Runs after the diagram
    hook, so that the epoch's cell pictures go in too. Without tensorboard it warns once and the run goes on."""

    what = "TensorBoard events"

    def __init__(self) -> None:
        super().__init__()
        self.writer = None

    def before_run(self, loop) -> None:
        """A resumed run: the events of its finished epochs written afresh from what the checkpoint holds (a kill
        can leave them unflushed, or written for an epoch the checkpoint does not have)."""
        if loop.epoch > 0 and not self.disabled:
            history, primitives, gate = self._alphas(loop)
            self.guarded(loop.epoch, lambda: write_epochs(loop.run_dir.path / "tensorboard", loop.metrics, history,
                                                          primitives, loop.run_dir.path / "pictures" / "cells",
                                                          gate))

    def write(self, loop, end) -> None:
        run = loop.run_dir
        if self.writer is None:
            self.writer = _writer(run.path / "tensorboard")
        history, primitives, gate = self._alphas(loop)
        alphas = {n: rows[-1] for n, rows in history.items()} if history is not None else None
        write_epoch(self.writer, end.epoch, end.row, alphas, primitives, run.path / "pictures" / "cells", gate=gate)

    @staticmethod
    def _alphas(loop) -> tuple[dict[str, Any] | None, Sequence[str], str]:
        """(alpha history, primitives, gate) of a search; (None, (), "softmax") for training."""
        history = getattr(loop, "history", None)
        if history is None:
            return None, (), "softmax"
        return history, loop.space.primitives, loop.network.gate_mode

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
