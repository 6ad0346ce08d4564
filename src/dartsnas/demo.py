"""The demo: the whole story on scikit-learn's bundled 8x8 digits (no download), a few minutes on 2 CPU cores.

A search, the training of the found cell, its evaluation, the pictures and the report pages, each through the
same library call the command line uses (``run_search``, ``run_training``, ``evaluate_checkpoint``,
``plot_run``, ``write_report``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger("dartsnas")

DEMO_SEARCH = {"dataset": "digits", "epochs": 10, "batch_size": 64, "layers": 4, "init_channels": 8,
               "nodes": 4, "multiplier": 4, "stem_multiplier": 2, "workers": 0, "log_every": 0,
               "lr": 0.05, "arch_lr": 3e-3, "seed": 0, "recompute": "off"}
DEMO_TRAIN = {"dataset": "digits", "batch_size": 64, "layers": 6, "init_channels": 16, "workers": 0,
              "log_every": 0, "lr": 0.05, "drop_path_prob": 0.1, "seed": 0}
DEMO_TRAIN_EPOCHS = 20


def run_demo(out: str | Path | None = None, *, epochs: int = DEMO_SEARCH["epochs"],
             train_epochs: int = DEMO_TRAIN_EPOCHS) -> dict[str, Any]:
    """Search, train, evaluate, draw and report under ``out`` (default ``runs/demo-digits-<time>``); returns
    the folders, the genotype, the evaluation and the pictures and pages written."""
    from .engine.evaluate import evaluate_checkpoint
    from .runner import refuse_non_empty, run_search, run_training
    from .runs import default_run_path
    from .viz.report import write_report
    from .viz.run_plots import plot_run

    base = Path(out) if out else default_run_path("demo", "digits")
    refuse_non_empty(base)
    search_dir, train_dir = base / "search", base / "train"
    logger.info("demo 1/3: a %d-epoch DARTS search on scikit-learn's 8x8 digits (no download)", epochs)
    searched = run_search({**DEMO_SEARCH, "epochs": epochs, "out": str(search_dir)})
    logger.info("demo 2/3: training the found cell for %d epochs", train_epochs)
    run_training({**DEMO_TRAIN, "epochs": train_epochs, "from_run": str(search_dir), "out": str(train_dir)})
    logger.info("demo 3/3: evaluating the trained network on the 300 test digits")
    evaluation = evaluate_checkpoint(train_dir, workers=0)
    logger.info("pictures: the search as a GIF, curves, alpha heat maps (dartsnas plot)")
    pictures = [f for run in (search_dir, train_dir) for f in plot_run(run)]
    logger.info("report pages: one per run, and the two side by side (dartsnas report)")
    pages = [write_report([search_dir]), write_report([train_dir]),
             write_report([search_dir, train_dir], base / "report.html")]
    return {"base": base, "search": search_dir, "train": train_dir, "genotype": searched.genotype,
            "evaluation": evaluation, "pictures": pictures, "pages": pages}


__all__ = ["DEMO_SEARCH", "DEMO_TRAIN", "DEMO_TRAIN_EPOCHS", "run_demo"]
