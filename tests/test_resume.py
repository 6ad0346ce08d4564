"""Runs stopped at any moment (SIGKILL mid-epoch, SIGTERM) resume to exactly the uninterrupted result."""
import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dartsnas.cli import main
from dartsnas.genotype import load_genotype

pytestmark = pytest.mark.slow

SEARCH = ["search", "--dataset", "digits", "--layers", "3", "--init-channels", "4", "--nodes", "2", "--multiplier",
          "2", "--batch-size", "64", "--workers", "0", "--epochs", "2", "--seed", "5", "--limit-batches", "6"]
TRAIN = ["train", "--genotype", "DARTS_V2", "--dataset", "digits", "--layers", "3", "--init-channels", "8",
         "--batch-size", "64", "--workers", "0", "--epochs", "2", "--drop-path-prob", "0.2", "--seed", "5",
         "--limit-batches", "6"]


def metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def stop_mid_epoch(args, run, sig):
    """Start a run, wait for a checkpoint saved inside epoch 2 or 3, then send ``sig``; return the exit code."""
    proc = subprocess.Popen([sys.executable, "-m", "dartsnas", *args, "--checkpoint-every", "1", "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt = run / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if ckpt.exists():
                try:
                    state = torch.load(ckpt, weights_only=True)
                except Exception:
                    state = None
                if state and state["epoch"] >= 1 and state["step"] >= 2:
                    proc.send_signal(sig)
                    break
            time.sleep(0.01)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code != 0, "the run ended before it could be stopped mid-epoch"
    return code, proc.stderr.read()


@pytest.fixture(scope="module")
def search_reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "search"
    assert main([*SEARCH, "--out", str(run)]) == 0
    return run


def assert_same_search(a, b):
    with np.load(a / "alphas.npz") as x, np.load(b / "alphas.npz") as y:
        for key in ("alpha_normal", "alpha_reduce"):
            assert np.array_equal(x[key], y[key]), key
    assert metrics(a) == metrics(b)
    assert load_genotype(a / "genotype.json") == load_genotype(b / "genotype.json")
    for e in (1, 2):
        assert load_genotype(a / f"genotypes/epoch_{e:03d}.json") == load_genotype(b / f"genotypes/epoch_{e:03d}.json")


def test_search_killed_mid_epoch_resumes_bitwise(search_reference, tmp_path):
    run = tmp_path / "killed"
    code, _ = stop_mid_epoch(SEARCH, run, signal.SIGKILL)
    assert code == -signal.SIGKILL
    state = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert state["step"] > 0  # really mid-epoch
    assert main(["search", "--resume", str(run)]) == 0
    assert_same_search(run, search_reference)


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(search_reference, tmp_path):
    run = tmp_path / "term"
    code, err = stop_mid_epoch(SEARCH, run, signal.SIGTERM)
    assert code == 143
    assert f"dartsnas search --resume {run}" in err and "Traceback" not in err
    assert main(["search", "--resume", str(run)]) == 0
    assert_same_search(run, search_reference)


def test_training_killed_mid_epoch_resumes_bitwise(tmp_path):
    ref = tmp_path / "ref"
    assert main([*TRAIN, "--out", str(ref)]) == 0
    run = tmp_path / "killed"
    code, _ = stop_mid_epoch(TRAIN, run, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert torch.load(run / "checkpoints/last.pt", weights_only=True)["step"] > 0
    assert main(["train", "--resume", str(run)]) == 0
    assert metrics(run) == metrics(ref)
    a = torch.load(run / "checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(ref / "checkpoints/last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_a_failed_write_leaves_the_previous_checkpoint_intact(search_reference, tmp_path, monkeypatch):
    from dartsnas import fileio

    run = tmp_path / "copy"
    run.mkdir()
    path = run / "last.pt"
    fileio.atomic_write_bytes(path, b"good")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        fileio.atomic_write_bytes(path, b"new and half-written")
    assert path.read_bytes() == b"good"
    assert [p.name for p in run.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_an_exact_second_order_per_cell_search_resumes_bitwise(tmp_path):
    """The exact hypergradient, per-cell sigmoid alphas and a warm-up epoch survive a kill like the default."""
    args = [*SEARCH, "--order", "2", "--hessian", "exact", "--alphas", "per-cell", "--gates", "sigmoid",
            "--pretrain-epochs", "1", "--epochs", "2", "--limit-batches", "4"]
    reference = tmp_path / "reference"
    assert main([*args, "--out", str(reference)]) == 0
    run = tmp_path / "killed"
    code, _ = stop_mid_epoch(args, run, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert main(["search", "--resume", str(run)]) == 0
    with np.load(run / "alphas.npz") as x, np.load(reference / "alphas.npz") as y:
        keys = [k for k in x.files if k.startswith("alpha_cell_")]
        assert len(keys) == 3 and all(np.array_equal(x[k], y[k]) for k in keys)
    assert metrics(run) == metrics(reference)
    assert load_genotype(run / "genotype.json") == load_genotype(reference / "genotype.json")


def test_resuming_a_run_stopped_at_its_last_epoch_end_writes_what_is_missing(search_reference, tmp_path):
    """A stop between the last checkpoint and the final files: --resume finishes the job instead of refusing."""
    import shutil

    run = tmp_path / "search"
    shutil.copytree(search_reference, run)
    (run / "genotype.json").unlink()
    assert main(["search", "--resume", str(run)]) == 0
    assert load_genotype(run / "genotype.json") == load_genotype(search_reference / "genotype.json")
    assert main(["search", "--resume", str(run)]) == 2  # now finished: one line
    train = tmp_path / "train"
    assert main([*TRAIN[:-4], "--epochs", "1", "--seed", "5", "--out", str(train)]) == 0
    final = (train / "final.json").read_text()
    (train / "final.json").unlink()
    assert main(["train", "--resume", str(train)]) == 0
    assert (train / "final.json").read_text() == final


def test_written_files_honour_the_umask(tmp_path):
    import os
    import stat

    from dartsnas import fileio

    old = os.umask(0o022)
    try:
        assert stat.S_IMODE(fileio.atomic_write_bytes(tmp_path / "shared.json", b"{}").stat().st_mode) == 0o644
        os.umask(0o077)
        assert stat.S_IMODE(fileio.atomic_write_bytes(tmp_path / "private.json", b"{}").stat().st_mode) == 0o600
    finally:
        os.umask(old)
