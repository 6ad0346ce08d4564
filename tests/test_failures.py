"""Runs that go wrong stop with one line, keep their last good files, and say what to do."""
import errno
import os

import pytest
import torch

from dartsnas.cli import main
from dartsnas.engine.search import Search
from dartsnas.engine.train import Trainer
from dartsnas.genotype import load_genotype
from dartsnas.runs import load_checkpoint

TINY = ["search", "--dataset", "digits", "--layers", "3", "--init-channels", "2", "--nodes", "2", "--multiplier",
        "2", "--batch-size", "128", "--workers", "0", "--stem-multiplier", "1", "--epochs", "2"]
TRAIN = ["train", "--genotype", "DARTS_V2", "--dataset", "digits", "--layers", "2", "--init-channels", "4",
         "--batch-size", "128", "--workers", "0", "--epochs", "2"]


def one_error_line(capsys):
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("dartsnas: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_a_nan_loss_stops_the_search_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    original = Search.weight_step

    def poisoned(self, x, y):  # epoch 1 has 4 steps of 128 on digits' 898-image half; step 2 of epoch 2 is NaN
        calls["n"] += 1
        loss, logits = original(self, x, y)
        return (torch.full_like(loss, float("nan")) if calls["n"] == len(self.train_loader) + 2 else loss), logits

    monkeypatch.setattr(Search, "weight_step", poisoned)
    run = tmp_path / "run"
    assert main([*TINY, "--out", str(run), "--checkpoint-every", "1"]) == 2
    line = one_error_line(capsys)
    assert "training loss became non-finite in epoch 2 step 2" in line
    assert "last good checkpoint (epoch 2 step 1) is kept" in line and "--lr" in line
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 1)
    assert torch.isfinite(torch.cat([v.flatten().float() for v in state["model"].values()])).all()
    assert (run / "genotypes" / "epoch_001.json").is_file() and not (run / "genotypes" / "epoch_002.json").exists()


def test_a_nan_loss_stops_training_too(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.nn.functional, "cross_entropy",
                        lambda *a, **k: torch.tensor(float("inf"), requires_grad=True))
    run = tmp_path / "train"
    assert main([*TRAIN, "--out", str(run)]) == 2
    line = one_error_line(capsys)
    assert "training loss became non-finite in epoch 1 step 1" in line and "no checkpoint had been saved" in line


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                                                "allocate memory: you tried to allocate 123456789 bytes")])
def test_out_of_memory_is_one_line_naming_the_batch_size(tmp_path, monkeypatch, capsys, error):
    def boom(self, x, y):
        raise error

    monkeypatch.setattr(Search, "weight_step", boom)
    assert main([*TINY, "--out", str(tmp_path / "run")]) == 2
    line = one_error_line(capsys)
    assert "out of memory" in line and "--batch-size 128" in line and "--batch-size 64" in line
    # a batch larger than the data: the advice halves the batch the data really gives (748 images a half)
    assert main([*TINY, "--batch-size", "4096", "--out", str(tmp_path / "big")]) == 2
    assert "e.g. --batch-size 374," in one_error_line(capsys)


def test_other_runtime_errors_are_not_mistaken_for_memory(tmp_path, monkeypatch):
    def boom(self, epoch):
        raise RuntimeError("a genuine bug")

    monkeypatch.setattr(Trainer, "train_epoch", boom)
    with pytest.raises(RuntimeError, match="genuine bug"):
        main([*TRAIN, "--out", str(tmp_path / "run")])


def test_a_full_disk_stops_the_run_with_the_last_good_files_intact(tmp_path, monkeypatch, capsys):
    from dartsnas import fileio

    full = {"on": False}
    real_fsync = os.fsync

    def fsync(fd):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    original = Search.evaluate

    def evaluate(self):  # the disk fills up during the second epoch
        if self.epoch == 1:
            full["on"] = True
        return original(self)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    monkeypatch.setattr(Search, "evaluate", evaluate)
    run = tmp_path / "run"
    assert main([*TINY, "--out", str(run), "--checkpoint-every", "0"]) == 2
    line = one_error_line(capsys)
    assert "no space left" in line and "epoch_002.json" in line and "last good save (epoch 1)" in line
    assert f"dartsnas search --resume {run}" in line
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    load_genotype(run / "genotypes" / "epoch_001.json")
    assert not [p for p in run.rglob("*.tmp")]  # no half-written temporary files
    full["on"] = False
    monkeypatch.setattr(Search, "evaluate", original)
    assert main(["search", "--resume", str(run)]) == 0  # and it continues once there is space
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2


def test_deterministic_runs_repeat_bit_for_bit(tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main([*TINY, "--epochs", "1", "--deterministic", "--out", str(out)]) == 0
        assert torch.are_deterministic_algorithms_enabled()
        runs.append(load_checkpoint(out / "checkpoints" / "last.pt"))
    a, b = runs
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # a later run without the flag switches deterministic algorithms off again
    assert main([*TINY, "--epochs", "1", "--out", str(tmp_path / "c")]) == 0
    assert not torch.are_deterministic_algorithms_enabled()
