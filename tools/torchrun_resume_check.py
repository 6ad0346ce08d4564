"""A two-process search stopped by SIGTERM in the middle of an epoch resumes to exactly the uninterrupted run.

    python tools/torchrun_resume_check.py [WORK_DIR]

Runs, under ``torchrun --standalone --nproc_per_node 2``, a tiny digits search of two epochs uninterrupted, the
same search stopped with SIGTERM once a checkpoint inside epoch 2 exists (``--checkpoint-every 5``), then
``--resume`` of it, and compares the two metrics tables (every column but the time). Exits 0 when they are
identical, 1 when not. About a minute on 2 CPU cores; kept out of the test suite for its time (the per-rank state
exchange it relies on is unit-tested in tests/test_distributed.py).
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SEARCH = ["-m", "dartsnas", "search", "--dataset", "digits", "--layers", "3", "--init-channels", "4", "--nodes", "2",
          "--multiplier", "2", "--batch-size", "32", "--workers", "0", "--epochs", "2", "--seed", "5",
          "--limit-batches", "12", "--checkpoint-every", "5", "--device", "cpu", "-q"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def stop_inside_epoch_2(run: Path) -> int:
    """Start the search and send SIGTERM to the whole torchrun group once a checkpoint inside epoch 2 is saved."""
    proc = subprocess.Popen([*TORCHRUN, *SEARCH, "--out", str(run)], start_new_session=True)
    ckpt = run / "checkpoints" / "last.pt"
    while proc.poll() is None:
        if ckpt.exists():
            try:
                state = torch.load(ckpt, weights_only=True)
            except Exception:  # being written: try again
                state = None
            if state and state["epoch"] == 1 and state["step"] >= 5:
                os.killpg(proc.pid, signal.SIGTERM)
                break
        time.sleep(0.01)
    return proc.wait()


def main() -> int:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="torchrun-resume-"))
    reference, stopped = work / "reference", work / "stopped"
    subprocess.run([*TORCHRUN, *SEARCH, "--out", str(reference)], check=True)
    code = stop_inside_epoch_2(stopped)
    state = torch.load(stopped / "checkpoints" / "last.pt", weights_only=True)
    if code == 0 or state["epoch"] != 1 or not state.get("step"):
        print(f"the run was not stopped inside epoch 2 (exit {code}); nothing to compare")
        return 1
    print(f"stopped inside epoch 2 at step {state['step']} (exit {code}); resuming")
    subprocess.run([*TORCHRUN, *SEARCH[:3], "--resume", str(stopped), "-q"], check=True)
    a, b = metrics(reference), metrics(stopped)
    for x, y in zip(a, b, strict=True):
        print(f"epoch {x['epoch']}: train_loss {x['train_loss']} / {y['train_loss']}, "
              f"arch_loss {x['arch_loss']} / {y['arch_loss']}")
    print("identical metrics" if a == b else "the metrics differ")
    return 0 if a == b else 1


if __name__ == "__main__":
    sys.exit(main())
