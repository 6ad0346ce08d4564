"""The run directory: everything needed to continue, inspect or reproduce a run, written atomically.

    RUN/config.yaml              the resolved config (``--config RUN/config.yaml`` repeats the run)
    RUN/metrics.csv              one row per epoch
    RUN/genotype.json            the final genotype
    RUN/genotype_RULE.json       per-cell searches: the final genotype by D-DARTS' threshold-sparse and
                                 threshold-edge rules too, as D-DARTS saves both
    RUN/genotypes/epoch_NNN.json the genotype after epoch NNN (counted from 1)
    RUN/alphas.npz               raw alpha history: row 0 initial, row N after epoch N (+ softmax view)
    RUN/checkpoints/last.pt      the latest checkpoint (torch.load(..., weights_only=True))
    RUN/checkpoints/best.pt      training with a validation split: the best checkpoint on validation data
    RUN/final.json               training: the final figures (test accuracy, parameters, multiply-adds)
    RUN/log.txt                  the log lines
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import dump_yaml
from .errors import CheckpointError, ConfigError
from .fileio import atomic_write_bytes, atomic_write_text
from .genotype import Genotype, load_genotype, save_genotype

CHECKPOINT_FORMAT = "dartsnas-checkpoint"
CHECKPOINT_VERSION = 1


def default_run_path(kind: str, dataset: str, base: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(base) / f"{kind}-{dataset}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path(base) / f"{kind}-{dataset}-{stamp}-{n}"
    return path


class _RunFile:
    """A file of a run directory: ``run.config_path`` is ``run.path / "config.yaml"`` (read-only)."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, run: RunDir | None, owner: type) -> Any:
        return self if run is None else run.path.joinpath(*self.parts)


class RunDir:
    """One run's folder. ``create`` refuses an existing non-empty folder; ``open`` is for reading or resuming."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock: Any = None

    def lock(self) -> None:
        """Take the run directory for this process (an exclusive lock on ``RUN/.lock``, held until ``unlock``):
        a second process that tries, say a second ``--resume``, gets one line naming the holder."""
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform
            return
        import os
        import socket

        handle = open(self.lock_path, "a+")  # noqa: SIM115 (held open for the run's life)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "a process"
            handle.close()
            raise ConfigError(f"{self.path} is in use by another dartsnas run ({holder}); wait for it to end or "
                              "stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._lock = handle

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    @classmethod
    def create(cls, path: str | Path) -> RunDir:
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(p.name != "log.txt" for p in path.iterdir())):
            raise ConfigError(f"run directory {path} exists and is not empty; pick another --out "
                              "(or continue it with --resume)")
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise ConfigError(f"cannot create the run directory {path}: {e.strerror or e}; pick another "
                              "--out") from None
        return cls(path)

    def remove_temporaries(self) -> list[Path]:
        """Delete the temporary files a write that was killed left behind (``.NAME.XXXX.tmp``); call it holding
        the lock, when no write of this run can be under way."""
        found = [p for p in self.path.rglob(".*.tmp") if p.is_file()]
        for p in found:
            p.unlink()
        return found

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        path = Path(path)
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"{path} is not a dartsnas run directory (no config.yaml in it)")
        return cls(path)

    # -- paths (the only place that spells a run directory's file names) --------------------------------------
    config_path = _RunFile("config.yaml")
    lock_path = _RunFile(".lock")
    metrics_path = _RunFile("metrics.csv")
    alphas_path = _RunFile("alphas.npz")
    checkpoint_path = _RunFile("checkpoints", "last.pt")
    best_checkpoint_path = _RunFile("checkpoints", "best.pt")
    genotype_path = _RunFile("genotype.json")
    final_path = _RunFile("final.json")
    evaluation_path = _RunFile("evaluation.json")
    log_path = _RunFile("log.txt")

    def evaluation_path_for(self, dataset: str, data: str | None, trained_on: tuple[str, str | None]) -> Path:
        """Where an evaluation on ``dataset`` in ``data`` goes: ``evaluation.json`` for the test set the run
        trained with, ``evaluation_<dataset>.json`` for another data set in its default folder, and
        ``evaluation_<dataset>_<8 hex of the folder>.json`` for a data set in another folder: one file per test set,
        never one overwriting another."""
        import hashlib

        def folder(d):
            return None if d is None else str(Path(d).expanduser().resolve())

        if (dataset, folder(data)) == (trained_on[0], folder(trained_on[1])):
            return self.evaluation_path
        tag = "" if data is None else "_" + hashlib.sha256(folder(data).encode()).hexdigest()[:8]
        return self.path / f"evaluation_{dataset}{tag}.json"

    def rule_genotype_path(self, rule: str) -> Path:
        return self.path / f"genotype_{rule}.json"

    def epoch_genotype_path(self, epoch: int) -> Path:
        return self.path / "genotypes" / f"epoch_{epoch:03d}.json"

    def saved_epochs(self) -> list[int]:
        """Epochs with a saved genotype (``genotypes/epoch_NNN.json``), sorted."""
        epochs = []
        for p in self.path.glob("genotypes/epoch_*.json"):
            digits = p.stem.removeprefix("epoch_")
            if digits.isdigit():
                epochs.append(int(digits))
        return sorted(epochs)

    # -- config ----------------------------------------------------------------------------------------------
    def write_config(self, values: dict[str, Any], *, header: str = "") -> None:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + dump_yaml(values)
        atomic_write_text(self.config_path, text)

    # -- metrics ---------------------------------------------------------------------------------------------
    def write_metrics(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rewrite metrics.csv with all rows (small file; rewriting keeps it atomic)."""
        rows = list(rows)
        if not rows:
            return
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(v) for k, v in row.items()})
        atomic_write_text(self.metrics_path, buf.getvalue())

    def read_metrics(self) -> list[dict[str, str]]:
        if not self.metrics_path.exists():
            return []
        with open(self.metrics_path, newline="") as f:
            return list(csv.DictReader(f))

    # -- genotypes -------------------------------------------------------------------------------------------
    def write_epoch_genotype(self, epoch: int, genotype: Genotype) -> Path:
        return save_genotype(genotype, self.epoch_genotype_path(epoch))

    def write_final_genotype(self, genotype: Genotype) -> Path:
        return save_genotype(genotype, self.genotype_path)

    def epoch_genotype(self, epoch: int | None = None) -> Genotype:
        path = self.genotype_path if epoch is None else self.epoch_genotype_path(epoch)
        if not path.exists():
            raise ConfigError(f"{path} does not exist: the run has no genotype for "
                              f"{'its end' if epoch is None else f'epoch {epoch}'}")
        return load_genotype(path)

    # -- alpha history ---------------------------------------------------------------------------------------
    def write_alpha_history(self, history: dict[str, list[np.ndarray]], primitives: Iterable[str],
                            gate: str = "softmax") -> None:
        """Store raw alphas ``[epochs + 1, edges, ops]`` per alpha tensor, plus their softmax for convenience."""
        arrays: dict[str, np.ndarray] = {"primitives": np.array(list(primitives)), "gate": np.array(gate)}
        for name, rows in history.items():
            raw = np.stack(rows).astype(np.float32)
            arrays[name] = raw
            e = np.exp(raw - raw.max(axis=-1, keepdims=True))
            arrays[f"softmax_{name}"] = e / e.sum(axis=-1, keepdims=True)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.alphas_path, buf.getvalue())

    def read_alpha_history(self) -> dict[str, np.ndarray]:
        if not self.alphas_path.exists():
            raise ConfigError(f"{self.alphas_path} does not exist: the run saved no alpha history")
        try:
            with np.load(self.alphas_path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except Exception as e:  # a truncated or foreign file
            raise ConfigError(f"cannot read the alpha history {self.alphas_path}: {e}") from None

    # -- checkpoints -----------------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any], *, best: bool = False) -> Path:
        """The latest checkpoint (or, with ``best``, the best one on validation data), written atomically."""
        state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
        path = self.best_checkpoint_path if best else self.checkpoint_path
        # the checksum first, holding the previous file's too: a kill between the two writes leaves a pair that
        # still agrees
        sums = checksum_path(path)
        previous = sums.read_text().split()[:1] if sums.is_file() else []
        atomic_write_text(sums, "\n".join([hashlib.sha256(data).hexdigest(), *previous]) + "\n")
        return atomic_write_bytes(path, data)

    def write_json(self, path: Path, data: Any) -> Path:
        """``data`` as JSON at one of this run's paths (``final_path``, ``evaluation_path``), atomically."""
        return atomic_write_text(path, json.dumps(data, indent=2) + "\n")

    def load_checkpoint(self, map_location: Any = "cpu") -> dict[str, Any]:
        return load_checkpoint(self.checkpoint_path, map_location=map_location)


def checksum_path(checkpoint: Path) -> Path:
    """The SHA-256 file beside a checkpoint (``last.pt.sha256``)."""
    return checkpoint.with_name(checkpoint.name + ".sha256")


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a dartsnas checkpoint safely (``weights_only=True``); corrupt or foreign files are one clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    sums = checksum_path(path)
    if sums.is_file():  # checkpoints written before checksums have none
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in sums.read_text().split():
            raise CheckpointError(f"checkpoint {path} is damaged: its bytes do not match the checksum saved with it "
                                  f"({sums.name}); delete it or pick another run")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a dartsnas checkpoint "
                              f"({type(e).__name__}); delete it or pick another run") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a dartsnas checkpoint")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} has version {state.get('version')}, newer than this dartsnas "
                              f"reads ({CHECKPOINT_VERSION}); upgrade dartsnas")
    return state


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def derive_from_history(run_path: str | Path, epoch: int | None = None, *, rule: str | None = None,
                        threshold: float | None = None) -> tuple[Genotype, int]:
    """Re-derive the genotype after ``epoch`` (default: the last saved) from a search run's raw alpha history,
    by the run's derivation rule or the ``rule`` and ``threshold`` given."""
    from .config import read_yaml
    from .genotype import derive_from_gates, per_cell_names
    from .supernet import reduction_positions

    run = RunDir.open(run_path)
    cfg = read_yaml(run.config_path)
    history = run.read_alpha_history()
    shared = "alpha_normal" in history and "alpha_reduce" in history
    cells = per_cell_names(history)
    if not shared and not cells:
        raise ConfigError(f"{run.alphas_path} has no alpha_normal/alpha_reduce or alpha_cell_NN arrays: not a "
                          "DARTS search history")
    rows = history["alpha_normal" if shared else cells[0]].shape[0]
    last = rows - 1
    epoch = last if epoch is None else epoch
    if not 0 <= epoch <= last:
        raise ConfigError(f"{run.path} has alphas for epochs 0 to {last}; pick --epoch in that range")
    primitives = [str(p) for p in history["primitives"]]
    nodes, multiplier = cfg.get("nodes"), cfg.get("multiplier")
    if not isinstance(nodes, int) or not isinstance(multiplier, int):
        raise ConfigError(f"{run.config_path} lacks nodes/multiplier; it is not a search run's config")
    gate = str(history["gate"]) if "gate" in history else str(cfg.get("gates", "softmax"))
    rule = rule or cfg.get("derive_rule") or "top-k"
    if threshold is None:
        threshold = cfg.get("threshold")
    raw = {k: v[epoch] for k, v in history.items() if k.startswith(("alpha_", "beta_"))}
    layers = cfg.get("layers")
    reductions = reduction_positions(layers) if isinstance(layers, int) else ()
    seq = None
    from .space import SPACES

    named = cfg.get("space")
    layout = SPACES.get(named).layout if isinstance(named, str) and named in SPACES else None
    if layout is not None:  # a whole-network layout (DARTOpti): its seq and reductions
        seq, reductions = layout.seq, layout.reductions
    max_skip = cfg.get("max_skip")
    genotype = derive_from_gates(raw, gate, primitives, nodes, multiplier, reductions=reductions, rule=rule,
                                 threshold=threshold, seq=seq, max_skip=max_skip if isinstance(max_skip, int) else None)
    return genotype, epoch


# The course project's search (DA060492, "Differentiable Architecture Search") writes these into its working folder:
# one row per epoch (row N-1 after epoch N; rows of a run that stopped early stay zero), its edges node by node
# as ours, its eight ops in this order (its dil_sep_conv_*, identity and zero are our dil_conv_*, skip_connect
# and none).
COURSE_HISTORY_FILES = ("alpha_normal_history.npy", "alpha_reduce_history.npy")
COURSE_PRIMITIVES = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "max_pool_3x3", "avg_pool_3x3",
                     "skip_connect", "none")


def is_course_history(folder: str | Path) -> bool:
    """Whether ``folder`` holds the course project's alpha histories (and is not a dartsnas run)."""
    path = Path(folder)
    return path.is_dir() and not (path / "config.yaml").is_file() and all(
        (path / f).is_file() for f in COURSE_HISTORY_FILES)


def derive_from_course_history(folder: str | Path, epoch: int | None = None) -> tuple[Genotype, int]:
    """The genotype after ``epoch`` (counted from 1, as the project's ``--alpha_epoch``; default: the last epoch
    reached) from the course project's ``alpha_normal_history.npy`` and ``alpha_reduce_history.npy``, by its rule
    (the DARTS top-2, no ``zero``) and its cell output (every node)."""
    from .genotype import derive_from_gates, num_edges

    path = Path(folder)
    arrays = []
    for name in COURSE_HISTORY_FILES:
        try:
            a = np.load(path / name, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path / name}: not a readable .npy array ({str(e).splitlines()[0]})") from None
        if a.ndim != 3 or a.shape[2] != len(COURSE_PRIMITIVES) or not np.issubdtype(a.dtype, np.floating):
            raise ConfigError(f"{path / name}: expected a float array [epochs, edges, {len(COURSE_PRIMITIVES)}], "
                              f"got {a.dtype} {list(a.shape)}")
        arrays.append(a)
    normal, reduce = arrays
    if normal.shape != reduce.shape:
        raise ConfigError(f"{path}: the normal and reduce histories differ in shape ({list(normal.shape)} and "
                          f"{list(reduce.shape)})")
    nodes = next((n for n in range(1, 32) if num_edges(n) == normal.shape[1]), None)
    if nodes is None:
        raise ConfigError(f"{path}: {normal.shape[1]} edges is no whole number of nodes (2 + 3 + ... edges)")
    reached = [i + 1 for i in range(normal.shape[0]) if normal[i].any() or reduce[i].any()]
    if not reached:
        raise ConfigError(f"{path}: every row of the histories is zero; the search saved no epoch")
    epoch = reached[-1] if epoch is None else epoch
    if epoch not in reached:
        raise ConfigError(f"{path}: no alphas after epoch {epoch}; epochs reached: 1 to {reached[-1]} "
                          "(counted from 1, as --alpha_epoch)")
    raw = {"alpha_normal": normal[epoch - 1], "alpha_reduce": reduce[epoch - 1]}
    return derive_from_gates(raw, "softmax", COURSE_PRIMITIVES, nodes, nodes), epoch
