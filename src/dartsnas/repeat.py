"""Repeated runs: N search seeds, each found cell trained M times, then mean and spread.

The field reports DARTS results as means over seeds (the paper: four searches, the best cell trained again);
one search says little. ``run_repeat`` runs every search and training of such a study in one folder, each a
normal run directory (so each resumes exactly), skips what is finished, resumes what was stopped, restarts what
never reached a checkpoint, and writes ``summary.md`` / ``summary.json`` and a comparison page.

    DIR/repeat.yaml              the plan: the search and training configs as given, the seeds, the retrains
    DIR/search-seedS/            the search with seed S
    DIR/train-seedS-rR/          training R of the cell search S found (seed: the training config's + R)
    DIR/summary.md, summary.json mean +- std over the runs, the genotypes and their pairwise distances
    DIR/report.html              every run on one page
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import SearchConfig, TrainConfig, load_config, read_yaml
from .errors import ConfigError, DartsNASError
from .fileio import atomic_write_bytes
from .runs import RunDir

logger = logging.getLogger(__name__)

PLAN = "repeat.yaml"


def _config_dict(config: str | Path | Mapping[str, Any] | None, cls: type, what: str) -> dict[str, Any]:
    """The keys as given (a YAML file's or a mapping's), checked by building the config once."""
    if config is None:
        raw: dict[str, Any] = {}
    elif isinstance(config, Mapping):
        raw = dict(config)
    else:
        raw = read_yaml(config)
    for key in ("out", "genotype", "from_run", "resume"):
        if key in raw:
            raise ConfigError(f"the {what} config names {key}: {raw[key]!r}; repeat places every run in its folder "
                              "and trains the cells its searches find")
    placeholder = {"from_run": "search"} if cls is TrainConfig else {}
    load_config(cls, None, {**raw, **placeholder})  # unknown keys and bad values fail here, before any run
    return raw


def _state(run: Path, finished: str) -> str:
    """done (its result file exists), resume (a checkpoint), or new (absent, or nothing to resume from)."""
    if (run / finished).is_file():
        return "done"
    if RunDir(run).checkpoint_path.is_file():
        return "resume"
    return "new"


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1; 0 for one value); Nones for none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std


def run_repeat(search_config: str | Path | Mapping[str, Any] | None = None,
               train_config: str | Path | Mapping[str, Any] | None = None, *, seeds: Sequence[int] = (0, 1),
               retrains: int = 1, out: str | Path | None = None, resume: str | Path | None = None,
               show_progress: bool | None = None) -> dict[str, Any]:
    """Search with each of ``seeds``, train each found cell ``retrains`` times, summarise; or continue the study
    in ``resume`` (its plan is read back; finished runs are kept). Returns the summary."""
    from .runner import refuse_non_empty, run_search, run_training
    from .runs import default_run_path

    if resume is not None:
        base = Path(resume)
        if not (base / PLAN).is_file():
            raise DartsNASError(f"{base} is not a dartsnas repeat folder (no {PLAN} in it)")
        plan = read_yaml(base / PLAN)
    else:
        seeds = [int(s) for s in seeds]
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds must be distinct and at least one, got {list(seeds)}")
        if retrains < 1:
            raise ConfigError(f"retrains must be >= 1, got {retrains}")
        plan = {"search": _config_dict(search_config, SearchConfig, "search"),
                "train": _config_dict(train_config, TrainConfig, "training"), "seeds": seeds, "retrains": retrains}
        base = Path(out) if out else default_run_path("repeat", str(plan["search"].get("dataset", "cifar10")))
        refuse_non_empty(base)
        base.mkdir(parents=True, exist_ok=True)
        import yaml

        atomic_write_bytes(base / PLAN, yaml.safe_dump(plan, sort_keys=False).encode())
    train_seed = int(plan["train"].get("seed", TrainConfig.seed))  # the dataclass's default
    total = len(plan["seeds"]) * (1 + int(plan["retrains"]))
    done = 0
    for seed in plan["seeds"]:
        jobs = [("search", base / f"search-seed{seed}", "genotype.json",
                 lambda path, s=seed: run_search({**plan["search"], "seed": s, "out": str(path)},
                                                 show_progress=show_progress),
                 lambda path: run_search(resume=str(path), show_progress=show_progress))]
        for r in range(int(plan["retrains"])):
            jobs.append(("training", base / f"train-seed{seed}-r{r}", "final.json",
                         lambda path, s=seed, r=r: run_training(
                             {**plan["train"], "from_run": str(base / f"search-seed{s}"), "seed": train_seed + r,
                              "out": str(path)}, show_progress=show_progress),
                         lambda path: run_training(resume=str(path), show_progress=show_progress)))
        for kind, path, finished, start, cont in jobs:
            done += 1
            state = _state(path, finished)
            logger.info("repeat %d/%d: %s %s (%s)", done, total, kind, path.name,
                        {"done": "finished, kept", "resume": "resuming", "new": "starting"}[state])
            if state == "done":
                continue
            if state == "resume":
                cont(path)
            else:
                if path.exists():  # stopped before its first checkpoint: nothing to keep
                    shutil.rmtree(path)
                start(path)
    summary = summarize(base, plan)
    write_summary(base, summary)
    return summary


def summarize(base: Path, plan: Mapping[str, Any]) -> dict[str, Any]:
    """Per seed its genotype, search accuracy and trainings; over all: mean and std; pairwise distances."""
    from .distance import architecture_distance
    from .genotype import load_genotype

    seeds = []
    for seed in plan["seeds"]:
        search = RunDir(base / f"search-seed{seed}")
        rows = search.read_metrics() if search.metrics_path.is_file() else []
        trains = []
        for r in range(int(plan["retrains"])):
            final = base / f"train-seed{seed}-r{r}" / "final.json"
            trains.append(json.loads(final.read_text()) if final.is_file() else {})
        seeds.append({"seed": seed, "genotype": load_genotype(search.genotype_path),
                      "search_acc": float(rows[-1]["val_acc"]) if rows else None, "trainings": trains})
    figures = {"search_acc": [s["search_acc"] for s in seeds],
               "test_acc": [t.get("test_acc") for s in seeds for t in s["trainings"]],
               "params": [t.get("params") for s in seeds for t in s["trainings"]],
               "macs": [t.get("macs") for s in seeds for t in s["trainings"]]}
    distances = [[architecture_distance(a["genotype"], b["genotype"])["distance"] for b in seeds] for a in seeds]
    return {"folder": str(base), "seeds": [{**s, "genotype": str(s["genotype"])} for s in seeds],
            "retrains": int(plan["retrains"]),
            "stats": {k: dict(zip(("mean", "std", "n"), (*_mean_std(v), len([x for x in v if x is not None]))))
                      for k, v in figures.items()},
            "distances": distances}


def _fmt(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None:
        return "-"
    return f"{mean:,.{digits}f} +- {std:,.{digits}f}"


def summary_markdown(summary: Mapping[str, Any]) -> str:
    stats, seeds = summary["stats"], summary["seeds"]
    n = len(seeds)
    lines = [f"# {n} search seed(s) x {summary['retrains']} training(s) each", "",
             "| figure | mean +- std | runs |", "| --- | --- | ---: |"]
    for key, label, digits in (("search_acc", "search validation accuracy (%)", 2),
                               ("test_acc", "test accuracy after training (%)", 2),
                               ("params", "parameters", 0), ("macs", "multiply-adds", 0)):
        s = stats[key]
        lines.append(f"| {label} | {_fmt(s['mean'], s['std'], digits)} | {s['n']} |")
    lines += ["", "(std: the sample standard deviation, n - 1.)", "", "| seed | search acc. (%) | test accuracies (%) "
              "| genotype |", "| ---: | ---: | --- | --- |"]
    for s in seeds:
        accs = ", ".join(f"{t['test_acc']:.2f}" for t in s["trainings"] if t.get("test_acc") is not None) or "-"
        acc = f"{s['search_acc']:.2f}" if s["search_acc"] is not None else "-"
        lines.append(f"| {s['seed']} | {acc} | {accs} | `{s['genotype']}` |")
    lines += ["", "Distances between the found genotypes (edits, `dartsnas distance`):", "",
              "| seed | " + " | ".join(str(s["seed"]) for s in seeds) + " |", "| ---: |" + " ---: |" * n]
    for s, row in zip(seeds, summary["distances"]):
        lines.append(f"| {s['seed']} | " + " | ".join(f"{d:g}" for d in row) + " |")
    return "\n".join(lines) + "\n"


def write_summary(base: Path, summary: Mapping[str, Any]) -> None:
    from .viz.report import write_report

    atomic_write_bytes(base / "summary.json", json.dumps(summary, indent=2).encode())
    text = summary_markdown(summary)
    atomic_write_bytes(base / "summary.md", text.encode())
    runs = sorted(p for p in base.iterdir() if p.is_dir() and (p / "config.yaml").is_file())
    write_report(runs, base / "report.html", summary=text)


__all__ = ["run_repeat", "summarize", "summary_markdown"]
