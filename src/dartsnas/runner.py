"""Run a whole search or training from a config: the library entry that ``dartsnas search`` and ``train`` (and
the demo) call, so that a script gets exactly what the command line does.

``run_search(config, overrides=..., resume=...)`` and ``run_training(...)``:

- take a config (a ``SearchConfig`` / ``TrainConfig``, a dict of its keys, or a YAML file) and overrides;
  ``resume=RUN`` continues a run from its latest checkpoint with its saved config, where the overrides may
  change only what does not change the experiment (``--epochs`` and run-time options);
- join torchrun's process group when started by torchrun, and set the process up (``setup_process``: seeds,
  determinism, allocator, C kernels);
- build the engine before writing anything (bad input leaves no half-made run directory), then create the
  run directory, write its config, log to its ``log.txt``, run, and leave the process group;
- return the engine's result; ``StopRequested`` (Ctrl-C, SIGTERM) carries ``run_path`` for the message.

``hooks=None`` gives the command line's hooks (cell diagrams and TensorBoard for a search, TensorBoard for a
training); pass a list to choose your own (``[]``: none).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import SearchConfig, TrainConfig, load_config, read_yaml
from .errors import DartsNASError, StopRequested
from .runs import RunDir, default_run_path

logger = logging.getLogger("dartsnas")

ConfigLike = Any  # a config object, a dict of its keys, a YAML path, or None (the defaults)


def run_search(config: ConfigLike = None, *, overrides: Mapping[str, Any] | None = None,
               resume: str | Path | None = None, hooks: Sequence[Any] | None = None,
               show_progress: bool | None = None):
    """Search as ``dartsnas search`` does; returns the ``SearchResult`` (run directory, genotype, metrics)."""
    from .engine.search import RESUME_LOCKED, Search

    run, cfg = _prepare(SearchConfig, config, overrides, resume, RESUME_LOCKED)
    with _session(cfg, search_hooks() if hooks is None else hooks) as (dist, device, hooks, setup):
        run, path = _resume_or_restart(dist, run) if run is not None else (None, _new_run_path(dist, cfg, "search"))
        search = Search(cfg, dist=dist, device=device, hooks=hooks, show_progress=show_progress)
        saved = lambda: _saved_config(cfg, search)  # noqa: E731
        if run is not None:
            with _locked(dist, run):  # before anything reads or writes it; released here on a refusal
                search.load_state_dict(run.load_checkpoint())
                stopped = search.early_stop() if run.genotype_path.is_file() else None
                if stopped is not None:
                    raise DartsNASError(f"{run.path} stopped early after epoch {search.epoch} ({stopped}); its "
                                        "genotype is final")
                _refuse_finished(run, run.genotype_path, search.epoch, cfg.epochs)
                _on_main(dist, lambda: run.write_config(saved(), header=config_header("search")))
            lines = [("resuming %s after epoch %d of %d", run.path, search.epoch, cfg.epochs)]
        else:
            run = _create_run(dist, cfg, path, lambda r: r.write_config(saved(), header=config_header("search")))
            lines = [("search run directory: %s", run.path),
                     ("%s: %d weights, %d alphas, %d+%d images for weights/alphas%s, %s", cfg.dataset,
                      search.network.num_weights(), search.network.num_alphas(), len(search.train_loader.dataset),
                      len(search.val_loader.dataset), " per process" if dist.enabled else "",
                      _describe_world(dist, search.device))]
        return _execute(search, run, dist, [*lines, _threads_line(setup)])


def run_training(config: ConfigLike = None, *, overrides: Mapping[str, Any] | None = None,
                 resume: str | Path | None = None, hooks: Sequence[Any] | None = None,
                 show_progress: bool | None = None):
    """Train as ``dartsnas train`` does; returns the ``TrainResult`` (run directory, final figures, metrics)."""
    from .engine.train import RESUME_LOCKED, Trainer
    from .genotype import Genotype, save_genotype

    run, cfg = _prepare(TrainConfig, config, overrides, resume, RESUME_LOCKED)
    with _session(cfg, training_hooks() if hooks is None else hooks) as (dist, device, hooks, setup):
        run, restart_path = _resume_or_restart(dist, run) if run is not None else (None, None)
        state = run.load_checkpoint() if run is not None else None
        if state is not None:
            genotype = Genotype.from_dict(state["net_args"]["genotype"])
        else:
            genotype = resolve_train_genotype(cfg)
        path = None if run is not None else restart_path or _new_run_path(dist, cfg, "train")
        trainer = Trainer(cfg, genotype, dist=dist, device=device, hooks=hooks, show_progress=show_progress)
        saved = lambda: _saved(cfg)  # noqa: E731
        if run is not None:
            with _locked(dist, run):
                trainer.load_state_dict(state)
                _refuse_finished(run, run.final_path, trainer.epoch, cfg.epochs)
                _on_main(dist, lambda: run.write_config(saved(), header=config_header("train")))
            lines = [("resuming %s after epoch %d of %d", run.path, trainer.epoch, cfg.epochs)]
        else:
            def create(r: RunDir) -> None:
                r.write_config(saved(), header=config_header("train"))
                save_genotype(genotype, r.genotype_path)

            run = _create_run(dist, cfg, path, create)
            lines = [("training run directory: %s", run.path),
                     ("%s: %s parameters (%s with the auxiliary head), %s multiply-adds per image, %d train / %d "
                      "test images%s, %s", cfg.dataset, f"{trainer.params:,}", f"{trainer.params_with_aux:,}",
                      f"{trainer.macs:,}", len(trainer.train_loader.dataset), len(trainer.test_loader.dataset),
                      " per process" if dist.enabled else "", _describe_world(dist, trainer.device))]
        return _execute(trainer, run, dist, [*lines, _threads_line(setup)])


def search_hooks() -> list:
    """The command line's search hooks: the cell diagrams of every epoch (pictures/cells), then TensorBoard
    events (tensorboard/, with those diagrams as images)."""
    from .viz.run_plots import DrawCells
    from .viz.tensorboard import TensorBoardLog

    return [DrawCells(), TensorBoardLog()]


def training_hooks() -> list:
    """The command line's training hooks: TensorBoard events (tensorboard/)."""
    from .viz.tensorboard import TensorBoardLog

    return [TensorBoardLog()]


def resolve_train_genotype(cfg: TrainConfig):
    """The genotype named by ``genotype``, or the one a search run saved (``from_run``, ``epoch``); a search
    run also lends its op modules and multiplier table when the config names none."""
    from .genotype import load_genotype
    from .plugins import load_ops_modules
    from .runs import derive_from_course_history, is_course_history

    if cfg.genotype is not None:
        load_ops_modules(cfg.ops_module)
        return load_genotype(cfg.genotype)
    if is_course_history(cfg.from_run):  # the course project's alpha_*_history.npy files
        return derive_from_course_history(cfg.from_run, cfg.epoch)[0]
    run = RunDir.open(cfg.from_run)
    searched = read_yaml(run.config_path)
    if cfg.ops_module is None:  # the search's own op modules (its flag, or its space file's)
        cfg.ops_module = searched.get("ops_module")
    if cfg.approx_table is None:  # and its multiplier table
        cfg.approx_table = searched.get("approx_table")
    load_ops_modules(cfg.ops_module)
    if cfg.epoch is None and not run.genotype_path.exists():
        done = run.saved_epochs()
        if not done:
            raise DartsNASError(f"{run.path} has no genotype yet (no genotype.json, no genotypes/epoch_*.json)")
        return load_genotype(run.epoch_genotype_path(done[-1]))
    return run.epoch_genotype(cfg.epoch)


def config_header(kind: str) -> str:
    from . import __version__

    return (f"dartsnas {__version__} {kind} config; repeat with: dartsnas {kind} --config THIS_FILE\n"
            "(the run directory is not stored: a repeat writes a new one)")


def absolute_paths(values: Mapping[str, Any]) -> dict[str, Any]:
    """Op module files and the multiplier table as absolute paths, so that a run's config and checkpoint work
    from any folder (on resume, the same relative value then compares equal)."""
    out = dict(values)
    if out.get("ops_module"):
        modules = [out["ops_module"]] if isinstance(out["ops_module"], str) else out["ops_module"]
        out["ops_module"] = [str(Path(m).resolve()) if m.endswith(".py") and Path(m).is_file() else m
                             for m in modules]
    if out.get("approx_table") and Path(out["approx_table"]).is_file():
        out["approx_table"] = str(Path(out["approx_table"]).resolve())
    return out


# -- the steps ---------------------------------------------------------------------------------------------------
def _prepare(cls: type, config: ConfigLike, overrides: Mapping[str, Any] | None, resume: str | Path | None,
             locked: Sequence[str]) -> tuple[RunDir | None, Any]:
    """The run to resume (or None) and the config: defaults < config < overrides; on resume, the run's saved
    config < overrides, where an override of a ``locked`` key that changes it is refused."""
    overrides = absolute_paths(overrides or {})
    if resume is None:
        if isinstance(config, cls):
            config = config.to_dict()
        if cls is TrainConfig:  # a training from a search run may take the search's data
            given = dict(config) if isinstance(config, Mapping) else read_yaml(config) if config is not None else {}
            overrides = {**_from_search(given, overrides), **overrides}
        if isinstance(config, Mapping):
            return None, load_config(cls, None, {**config, **overrides})
        return None, load_config(cls, config, overrides)  # errors name the file
    if config is not None:
        raise DartsNASError("--resume takes the config from the run; leave out --config")
    run = RunDir.open(resume)
    saved = read_yaml(run.config_path)
    changed = [k for k in locked if k in overrides and overrides[k] != saved.get(k)]
    if changed:
        k = changed[0]
        raise DartsNASError(f"--resume cannot change {k} (run has {saved.get(k)!r}, asked {overrides[k]!r}); "
                            "only --epochs and run-time options may change")
    cfg = load_config(cls, None, {**saved, **overrides})
    cfg.out = str(run.path)
    return run, cfg


def _from_search(given: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Training from a search run: the search's data set and data folder, where the training names neither."""
    from .runs import is_course_history

    values = {**given, **overrides}
    source = values.get("from_run")
    if not source or values.get("genotype") is not None or "dataset" in values or is_course_history(source):
        return {}
    searched = read_yaml(RunDir.open(source).config_path)
    inherited = {k: searched[k] for k in ("dataset", "data") if searched.get(k) is not None and k not in values}
    if inherited:
        logger.info("training on the search's data: %s", ", ".join(f"{k} {v}" for k, v in inherited.items()))
    return inherited


@contextlib.contextmanager
def _session(cfg, hooks: Sequence[Any]) -> Iterator[tuple[Any, str, list, dict]]:
    """Join torchrun's process group (one process otherwise) and set the process up; yields it, the device name,
    the hooks as a list and what ``setup_process`` did; afterwards close the hooks and leave the group (waiting
    for the other ranks only after a normal end: after an error they may never arrive)."""
    from .engine import distributed
    from .engine.common import resolve_device
    from .engine.hooks import close_hooks
    from .process import setup_process

    ok, hooks = False, list(hooks)
    try:
        dist, device = distributed.setup(cfg.device)
        setup = setup_process(cfg.seed, deterministic=cfg.deterministic, device=resolve_device(device),
                              rank=dist.rank, threads=cfg.threads, world_size=dist.world_size)
        yield dist, device, hooks, setup
        ok = True
    finally:
        close_hooks(hooks)
        distributed.teardown(sync=ok)


def _execute(engine, run: RunDir, dist, lines: Sequence[tuple]):
    """Run ``engine`` in ``run``, its log also in RUN/log.txt (the main process's; at INFO whatever the
    ``dartsnas`` logger's level, which is restored after)."""
    handler = _log_to_file(run.log_path) if dist.is_main else None
    level = logger.level
    if handler is not None and not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    try:
        for line in lines:
            logger.info(*line)
        return engine.run(run)
    except StopRequested as stop:
        stop.run_path, stop.main_process = run.path, dist.is_main
        raise
    finally:
        run.unlock()
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(level)
            handler.close()


def _threads_line(setup: dict[str, Any]) -> tuple:
    return ("using %s", setup.get("threads", "torch's default CPU threads"))


def _refuse_finished(run: RunDir, final_file: Path, done: int, epochs: int) -> None:
    if final_file.is_file() and done >= epochs:  # else: write what is missing
        raise DartsNASError(f"{run.path} already finished {done} epochs; pass --epochs N > {done} to extend it")


@contextlib.contextmanager
def _locked(dist, run: RunDir) -> Iterator[None]:
    """Take ``run`` (rank 0) for the rest of the run; on an error inside the block, let it go again. A run
    that goes on is released by ``_execute``."""
    _on_main(dist, run.lock)
    _on_main(dist, run.remove_temporaries)
    try:
        yield
    except BaseException:
        run.unlock()
        raise


def _resume_or_restart(dist, run: RunDir) -> tuple[RunDir | None, Path | None]:
    """``(run, None)`` to resume it; a run that stopped before its first checkpoint (a NaN, running out of
    memory, a kill in its first steps) has nothing to resume: ``(None, its path)``, emptied but for its log, to
    start it again there from its own config."""
    if run.checkpoint_path.is_file():
        return run, None

    def clear() -> str:
        import shutil

        logger.warning("%s has no checkpoint (it stopped before its first save): starting it again from its "
                       "config, in the same folder", run.path)
        for entry in run.path.iterdir():
            if entry.name != run.log_path.name:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        return str(run.path)

    return None, Path(_on_main(dist, clear))


def _create_run(dist, cfg, path: Path, write: Callable[[RunDir], None]) -> RunDir:
    """The new run's directory, made, locked and filled by ``write`` on rank 0."""
    run = RunDir(path)

    def make() -> None:
        RunDir.create(path)
        run.lock()
        write(run)

    _on_main(dist, make)
    cfg.out = str(path)
    return run


def _new_run_path(dist, cfg, kind: str) -> Path:
    """The run directory of a new run, chosen by rank 0 (a timestamp could differ between ranks)."""
    def choose():
        path = Path(cfg.out) if cfg.out else default_run_path(kind, cfg.dataset)
        refuse_non_empty(path)
        return str(path)

    return Path(_on_main(dist, choose))


def refuse_non_empty(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise DartsNASError(f"run directory {path} exists and is not empty; pick another --out "
                            "(or continue it with --resume)")


def _on_main(dist, fn):
    """Run ``fn`` on rank 0 only and hand its result, or its one-line error, to every rank."""
    result, error = None, None
    if dist.is_main:
        try:
            result = fn()
        except DartsNASError as e:
            error = str(e)
    result, error = dist.broadcast_object((result, error))
    if error is not None:
        raise DartsNASError(error)
    return result


def _log_to_file(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    return handler


def _describe_world(dist, device) -> str:
    return f"{device}" if not dist.enabled else f"{dist.world_size} processes ({device.type}, rank 0 on {device})"


def _saved(cfg) -> dict[str, Any]:
    """The config as a run directory keeps it: no ``out`` (the run is the folder holding the file; repeating
    the run makes a new one)."""
    values = cfg.to_dict()
    values.pop("out", None)
    return values


def _saved_config(cfg: SearchConfig, search) -> dict[str, Any]:
    """The search's config as it resolved it: a repeat builds the same supernet even if a space file changes,
    and training finds the space file's op modules."""
    from .space import is_space_file

    values = _saved(cfg)
    space = search.space
    values.update(primitives=list(space.primitives), nodes=space.nodes, multiplier=space.multiplier,
                  derive_rule=search.rule, threshold=search.threshold)
    if space.ops_modules:
        values["ops_module"] = list(dict.fromkeys((values.get("ops_module") or []) + list(space.ops_modules)))
    if is_space_file(cfg.space) and Path(cfg.space).is_file():
        values["space"] = str(Path(cfg.space).resolve())
    return values


__all__ = ["absolute_paths", "config_header", "resolve_train_genotype", "run_search", "run_training",
           "search_hooks", "training_hooks"]
