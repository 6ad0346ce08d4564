"""Plain DARTS against the robust-DARTS remedies at CPU scale: the alpha-Hessian eigenvalue and the parameter-free
ops of the genotype, epoch by epoch, same seeds. Writes JSON and a Markdown summary (docs/collapse.md's figures).

    python benchmarks/collapse_study.py --out benchmarks/collapse-study-cpu-2core    # about half an hour, 2 cores
    python benchmarks/collapse_study.py --quick --out /tmp/cs                       # a smoke run, a minute

Searches (first order, --hessian-eigenvalue on one fixed batch of the alpha half):

- digits, the demo's search settings (4 cells, C=8) for 20 epochs: plain DARTS, SDARTS-RS (--random-smoothing
  0.3) and DARTS- (--auxiliary-skip);
- CIFAR-10 reduced to 100 training images per class (the JPEG copy in ../shared/data; 5 cells, C=8), 10 epochs:
  plain DARTS and SDARTS-RS.

For every run: what P-DARTS' cap (--max-skip 2) would derive from its final alphas, and where DARTS-ES (k=5,
T=0.75) would have stopped it. A study stopped part-way can be run again on the same --out: finished runs are
read, not redone.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
DIGITS = ["--dataset", "digits", "--layers", "4", "--init-channels", "8", "--stem-multiplier", "2", "--batch-size",
          "64", "--lr", "0.05", "--arch-lr", "3e-3", "--workers", "0", "--seed", "0"]
REMEDIES = {"plain DARTS": [], "SDARTS-RS (--random-smoothing 0.3)": ["--random-smoothing", "0.3"],
            "DARTS- (--auxiliary-skip)": ["--auxiliary-skip"]}


def search(out: Path, name: str, args: list[str]) -> Path:
    run = out / name
    if not (run / "genotype.json").is_file():
        shutil.rmtree(run, ignore_errors=True)
        cmd = [sys.executable, "-m", "dartsnas", "search", *args, "--hessian-eigenvalue", "--out", str(run), "-q"]
        print("[study] " + " ".join(cmd[2:]), file=sys.stderr, flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return run


def es_stop(values: list[float], k: int = 5, threshold: float = 0.75) -> int | None:
    """The epoch after which DARTS-ES (the rule of dartsnas.engine.search) would have stopped, or None."""
    for i in range(2 * k, len(values) + 1):
        previous, last = sum(values[i - 2 * k:i - k]) / k, sum(values[i - k:i]) / k
        if last > 0 and previous / last < threshold:
            return i
    return None


def summarize(run: Path) -> dict:
    from dartsnas.genotype import derive_from_gates, load_genotype
    from dartsnas.runs import RunDir

    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    history = RunDir(run).read_alpha_history()
    raw = {k: v[-1] for k, v in history.items() if k.startswith("alpha_")}
    primitives = [str(p) for p in history["primitives"]]
    capped = derive_from_gates(raw, "softmax", primitives, 4, 4, max_skip=2)
    genotype = load_genotype(run / "genotype.json")
    eigen = [float(r["hessian_eigenvalue"]) for r in rows]
    return {"epochs": [int(r["epoch"]) for r in rows], "val_acc": [float(r["val_acc"]) for r in rows],
            "eigenvalue": eigen, "eigen_seconds": [float(r["eigen_seconds"]) for r in rows],
            "seconds": [float(r["seconds"]) for r in rows],
            "param_free_normal": [int(r["param_free_normal"]) for r in rows],
            "param_free_reduce": [int(r["param_free_reduce"]) for r in rows],
            "skips_normal": sum(op == "skip_connect" for node in genotype.normal.nodes for op, _ in node),
            "skips_normal_max_skip_2": sum(op == "skip_connect" for node in capped.normal.nodes for op, _ in node),
            "genotype": str(genotype), "darts_es_stop": es_stop(eigen)}


def markdown(results: dict) -> str:
    lines = ["# Collapse study", ""]
    for data, runs in results.items():
        lines += [f"## {data}", "", "| run | epoch | " + " | ".join(str(e) for e in next(iter(runs.values()))["epochs"])
                  + " |", "| --- | --- |" + " ---: |" * len(next(iter(runs.values()))["epochs"])]
        for name, r in runs.items():
            lines.append(f"| {name} | eigenvalue | " + " | ".join(f"{v:.3g}" for v in r["eigenvalue"]) + " |")
            lines.append("| | parameter-free ops, normal | " + " | ".join(map(str, r["param_free_normal"])) + " |")
            lines.append("| | validation acc. (%) | " + " | ".join(f"{v:.1f}" for v in r["val_acc"]) + " |")
        lines += ["", "| run | skip_connect in the final normal cell | with --max-skip 2 | DARTS-ES would stop after "
                  "epoch | eigenvalue seconds per epoch | search seconds per epoch |", "| --- | ---: | ---: | ---: | "
                  "---: | ---: |"]
        for name, r in runs.items():
            es = r["darts_es_stop"] if r["darts_es_stop"] is not None else "-"
            lines.append(f"| {name} | {r['skips_normal']} | {r['skips_normal_max_skip_2']} | {es} | "
                         f"{sum(r['eigen_seconds']) / len(r['eigen_seconds']):.1f} | "
                         f"{sum(r['seconds']) / len(r['seconds']):.1f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for the runs, study.json and study.md")
    p.add_argument("--quick", action="store_true", help="2 epochs each, digits only: a smoke run")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    epochs = ["--epochs", "2" if args.quick else "20"]
    results: dict[str, dict] = {"digits": {}}
    for i, (name, extra) in enumerate(REMEDIES.items()):
        results["digits"][name] = summarize(search(out, f"digits-{i}", [*DIGITS, *epochs, *extra]))
    if not args.quick and ARCHIVE.is_file():
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import extract_cifar10_subset

        data = out / "cifar10-100"
        if not (data / "train").is_dir():
            extract_cifar10_subset(ARCHIVE, data, train_per_class=100, test_per_class=10)
        cifar = ["--dataset", "imagefolder", "--data", str(data), "--layers", "5", "--init-channels", "8",
                 "--batch-size", "64", "--workers", "0", "--seed", "0", "--epochs", "10"]
        results["CIFAR-10, 100 images per class"] = {}
        for i, name in enumerate(list(REMEDIES)[:2]):
            results["CIFAR-10, 100 images per class"][name] = summarize(
                search(out, f"cifar-{i}", [*cifar, *REMEDIES[name]]))
    (out / "study.json").write_text(json.dumps(results, indent=2))
    (out / "study.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
