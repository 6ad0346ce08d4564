"""The finite-difference against the exact second-order hypergradient: how far apart, what each costs, and what
short searches with each find. Writes JSON and a Markdown summary (the README's figures come from it).

    python benchmarks/hessian_study.py --out benchmarks/hessian-study-cpu-2core     # about an hour on 2 cores
    python benchmarks/hessian_study.py --quick --out /tmp/hs                         # a smoke run, minutes

Three parts, each with the same seeds for both modes:

1. ``dartsnas hypergrad-check`` on the default search network (C=16, 8 layers, 4 nodes, batch 16, one weight
   step first) with real CIFAR-10 batches (the JPEG copy in ../shared/data), float32 and float64, at the paper's
   radius and a ten times smaller one;
2. second-order searches on digits (the demo's settings), finite difference and exact, then the same short
   training of each found cell;
3. the same on a reduced CIFAR-10 (100 training images per class, 2 search epochs at C=8, 5 layers; trained 8
   epochs at C=12, 6 layers). The hypergradient check draws its batches from 300 images per class.

A study stopped part-way can be run again on the same --out: finished runs are read, not redone.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
MODES = ("finite-difference", "exact")


def dartsnas(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dartsnas", *args]
    print("[study] " + " ".join(cmd[2:]), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return done


def cifar_subset(dest: Path, train_per_class: int, test_per_class: int) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import extract_cifar10_subset

    if not (dest / "train").is_dir():
        extract_cifar10_subset(ARCHIVE, dest, train_per_class=train_per_class, test_per_class=test_per_class)
    return dest


def search_and_train(out: Path, tag: str, search_args: list[str], train_args: list[str]) -> list[dict]:
    """Both modes; runs already finished in ``out`` (from an earlier, interrupted study) are read, not redone."""
    import csv
    import shutil

    rows = []
    for mode in MODES:
        run = out / f"{tag}-search-{mode}"
        if not (run / "genotype.json").is_file():
            shutil.rmtree(run, ignore_errors=True)
            dartsnas("search", *search_args, "--order", "2", "--hessian", mode, "--out", str(run), "-q")
        genotype = json.loads((run / "genotype.json").read_text())
        train = out / f"{tag}-train-{mode}"
        if not (train / "final.json").is_file():
            shutil.rmtree(train, ignore_errors=True)
            dartsnas("train", "--from-run", str(run), *train_args, "--out", str(train), "-q")
        final = json.loads((train / "final.json").read_text())
        metrics = list(csv.DictReader(open(run / "metrics.csv")))
        rows.append({"data": tag, "hessian": mode, "genotype": genotype,
                     "search_seconds": sum(float(r["seconds"]) for r in metrics),
                     "search_val_acc": float(metrics[-1]["val_acc"]), "test_acc": final["test_acc"],
                     "params": final["params"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the runs, study.json and study.md")
    p.add_argument("--quick", action="store_true", help="tiny settings: check that the script works")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    q = args.quick
    report: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "quick": q}
    if not ARCHIVE.is_file():
        raise SystemExit(f"{ARCHIVE} is missing: the study uses the CIFAR-10 copy in ../shared/data")
    check_data = cifar_subset(out / "cifar10-subset", 30 if q else 300, 10 if q else 100)
    cifar = cifar_subset(out / "cifar10-subset-100", 30 if q else 100, 10 if q else 100)

    # 1. the hypergradients side by side
    net = ["--layers", "3", "--init-channels", "4"] if q else []
    check = out / "hypergrad-check.json"
    if not check.is_file():
        dartsnas("hypergrad-check", "--dataset", "imagefolder", "--data", str(check_data), "--batch-size", "16",
                 "--workers", "0", "--batches", "2" if q else "5", "--radii", "0.01,0.001", *net,
                 "--json", str(check), "-q")
    from dartsnas.engine.hypercheck import format_check

    report["hypergrad_check"] = json.loads(check.read_text())
    report["hypergrad_check_table"] = format_check(report["hypergrad_check"])

    # 2. digits, the demo's search and training settings
    digits_search = ["--dataset", "digits", "--epochs", "2" if q else "8", "--batch-size", "64", "--layers", "4",
                     "--init-channels", "8", "--stem-multiplier", "2", "--workers", "0", "--lr", "0.05",
                     "--arch-lr", "3e-3", "--seed", "0", "--recompute", "off"]
    digits_train = ["--dataset", "digits", "--epochs", "2" if q else "20", "--batch-size", "64", "--layers", "6",
                    "--init-channels", "16", "--workers", "0", "--lr", "0.05", "--drop-path-prob", "0.1",
                    "--seed", "0"]
    report["searches"] = search_and_train(out, "digits", digits_search, digits_train)

    # 3. a reduced CIFAR-10
    cifar_search = ["--dataset", "imagefolder", "--data", str(cifar), "--epochs", "1" if q else "2",
                    "--batch-size", "32" if q else "64", "--layers", "3" if q else "5", "--init-channels",
                    "4" if q else "8", "--workers", "0", "--arch-lr", "3e-3", "--seed", "0"]
    cifar_train = ["--dataset", "imagefolder", "--data", str(cifar), "--epochs", "1" if q else "8",
                   "--batch-size", "64", "--layers", "3" if q else "6", "--init-channels", "8" if q else "12",
                   "--workers", "0", "--no-auxiliary", "--seed", "0"]
    report["searches"] += search_and_train(out, "cifar10-reduced", cifar_search, cifar_train)

    (out / "study.json").write_text(json.dumps(report, indent=2))
    lines = ["## Hypergradients on the default network (CIFAR-10 batches of 16)", "", "```",
             report["hypergrad_check_table"].strip(), "```", "",
             "## Short second-order searches, then the same training", "",
             "| data | hessian | search s | search val. acc. (%) | test accuracy (%) | parameters | normal cell | "
             "reduction cell |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in report["searches"]:
        g = r["genotype"]
        cell = lambda d: " ".join(f"{op}<-{i}" for node in d["nodes"] for op, i in node)  # noqa: E731
        lines.append(f"| {r['data']} | {r['hessian']} | {r['search_seconds']:.0f} | {r['search_val_acc']:.2f} | "
                     f"{r['test_acc']:.2f} | {r['params']:,} | {cell(g['normal'])} | {cell(g['reduce'])} |")
    (out / "study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
