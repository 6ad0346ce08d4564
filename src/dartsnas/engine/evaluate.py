"""Evaluation of a trained network from its checkpoint alone, and counts of a genotype's network."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from ..data import dataset_info, load_split, make_loader
from ..errors import CheckpointError, ConfigError
from ..genotype import Genotype, load_genotype
from ..network import EvalNetwork, default_layers
from ..profile import count_macs, count_parameters, measure_throughput
from ..runs import RunDir, load_checkpoint
from .common import is_terminal, resolve_device
from .train import evaluate_loader

logger = logging.getLogger(__name__)


def _checkpoint_path(source: str | Path) -> tuple[Path, Path | None]:
    """(checkpoint file, run directory or None) for a run directory or a checkpoint file."""
    source = Path(source)
    if source.is_dir():
        ckpt = RunDir(source).checkpoint_path
        if not ckpt.is_file():
            raise CheckpointError(f"no checkpoint in {source} (looked for {ckpt}); pass a training run directory "
                                  "or a checkpoint file")
        return ckpt, source
    if not source.exists():
        raise CheckpointError(f"{source} does not exist; pass a training run directory or a checkpoint file")
    return source, None


def load_network(source: str | Path, map_location: Any = "cpu") -> tuple[EvalNetwork, dict[str, Any]]:
    """Rebuild the trained network from a checkpoint (its genotype and network arguments travel with it)."""
    ckpt, _ = _checkpoint_path(source)
    state = load_checkpoint(ckpt, map_location=map_location)
    if state.get("kind") == "search":
        raise CheckpointError(f"{ckpt} is a search checkpoint; train its genotype first: "
                              "dartsnas train --from-run RUN ...")
    if state.get("kind") != "train" or "net_args" not in state:
        raise CheckpointError(f"{ckpt} is not a dartsnas training checkpoint")
    from ..ops.approx import table_options
    from ..plugins import load_ops_modules

    cfg = state.get("config") or {}
    load_ops_modules(cfg.get("ops_module"))  # a genotype of user ops needs them first
    # and approx_* ops the multiplier table they trained with
    network = EvalNetwork.from_args(state["net_args"], table_options(cfg.get("approx_table")))
    try:
        network.load_state_dict(state["model"])
    except RuntimeError:
        raise CheckpointError(f"the weights in {ckpt} do not match the network its arguments describe; "
                              "the checkpoint is damaged or was edited") from None
    return network, state


def evaluate_checkpoint(source: str | Path, *, dataset: str | None = None, data: str | None = None,
                        batch_size: int = 256, device: str = "auto", workers: int = 2,
                        out: str | Path | None = None) -> dict[str, Any]:
    """Top-1/top-5 test accuracy, loss, parameters, multiply-adds and images per second of a trained network.
    Written as JSON to ``out``, else into the run directory, one file per test set (``RunDir.evaluation_path_for``:
    ``evaluation.json`` is always the run's own test set)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    network, state = load_network(source)
    cfg = state.get("config", {})
    name = dataset or cfg.get("dataset")
    root = data if data is not None else cfg.get("data")
    info = dataset_info(name, root)
    classes = state["net_args"]["num_classes"]
    if info.num_classes != classes:
        raise ConfigError(f"the network has {classes} classes but {name} has {info.num_classes}; evaluate on a "
                          "data set with the same classes (or train on this one)")
    test_set, info = load_split(name, root, "test", transform="test", download=False)
    loader = make_loader(test_set, batch_size=batch_size, shuffle=False, workers=workers)
    network.to(dev)
    result = evaluate_loader(network, loader, dev, show_progress=is_terminal())
    size = (info.channels, info.image_size, info.image_size)
    report = {
        "checkpoint": str(_checkpoint_path(source)[0]),
        "dataset": name,
        "test_images": result["images"],
        "unreadable_images": loader.unreadable,  # left out of the accuracy (each named in a warning)
        "top1": result["acc"],
        "top5": result["top5"],
        "loss": result["loss"],
        "epochs_trained": state.get("epoch"),
        **_counts(network, size),
        "images_per_second": measure_throughput(network, size, batch_size=min(batch_size, 64), device=dev),
        "device": str(dev),
    }
    _, run = _checkpoint_path(source)
    if out is not None:
        from ..fileio import atomic_write_text

        atomic_write_text(Path(out), json.dumps(report, indent=2))
        report["written_to"] = str(out)
    elif run is not None:
        run_dir = RunDir(run)
        path = run_dir.evaluation_path_for(name, data if data is not None else cfg.get("data"),
                                           (cfg.get("dataset"), cfg.get("data")))
        run_dir.write_json(path, report)
        report["written_to"] = str(path)
    return report


def _counts(network: EvalNetwork, size: tuple[int, int, int]) -> dict[str, Any]:
    return {"params": count_parameters(network), "params_with_auxiliary": count_parameters(network,
                                                                                           exclude_auxiliary=False),
            "macs": count_macs(network, size), "input_size": list(size)}


def genotype_info(genotype: str | Genotype, *, dataset: str = "cifar10", data: str | None = None,
                  init_channels: int | None = None, layers: int | None = None) -> dict[str, Any]:
    """Parameters and multiply-adds of the network built from ``genotype`` (auxiliary head built, not counted)."""
    g = load_genotype(genotype)
    info = dataset_info(dataset, data)
    imagenet = info.image_size >= 224
    C = init_channels or (48 if imagenet else 36)
    L = layers or default_layers(g, imagenet=imagenet)
    with torch.device("meta"):  # counting needs shapes only: no memory, no time, for networks of any size
        network = EvalNetwork(g, C, info.num_classes, L, info.auxiliary, stem="imagenet" if imagenet else "cifar",
                              in_channels=info.channels)
    size = (info.channels, info.image_size, info.image_size)
    return {"genotype": str(genotype) if not isinstance(genotype, Genotype) else "(given)", "dataset": dataset,
            "classes": info.num_classes, "init_channels": C, "layers": L,
            "stem": "imagenet" if imagenet else "cifar", **_counts(network, size)}


def format_report(report: dict[str, Any]) -> str:
    """A two-column table of a report's figures."""
    labels = {"top1": "top-1 accuracy (%)", "top5": "top-5 accuracy (%)", "loss": "test loss",
              "params": "parameters", "params_with_auxiliary": "parameters with auxiliary head",
              "macs": "multiply-adds per image", "images_per_second": "images per second"}
    rows = []
    for key, value in report.items():
        label = labels.get(key, key.replace("_", " "))
        if isinstance(value, float):
            text = f"{value:,.2f}" if key != "loss" else f"{value:.4f}"
        elif isinstance(value, int) and not isinstance(value, bool):
            text = f"{value:,}"
        elif isinstance(value, list):
            text = "x".join(map(str, value))
        else:
            text = str(value)
        rows.append((label, text))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{label:<{width}}  {text}" for label, text in rows)


__all__ = ["evaluate_checkpoint", "format_report", "genotype_info", "load_network"]
