"""The architecture's promises: building objects changes nothing outside them, process setup is one explicit call,
the library run API is what the command line runs, the epoch loop's hooks fire in order, the demo goes through
the API."""
import csv
import os
import random
import sys

import numpy as np
import torch

from dartsnas.cli import main
from dartsnas.config import SearchConfig, TrainConfig
from dartsnas.engine.hooks import Hook

TINY = dict(dataset="digits", layers=3, init_channels=2, nodes=2, multiplier=2, batch_size=128, workers=0,
            stem_multiplier=1, epochs=1)


def _process_state() -> dict:
    from dartsnas import process

    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state().clone(), "numpy": (np_state[1].copy(), np_state[2]),
            "python": random.getstate(), "deterministic": torch.are_deterministic_algorithms_enabled(),
            "cudnn": (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark),
            "environ": dict(os.environ), "sys_path": list(sys.path), "malloc": process._malloc_tuned,
            "threads": torch.get_num_threads()}


def _same(a: dict, b: dict) -> list[str]:
    differ = []
    for k in a:
        x, y = a[k], b[k]
        if k == "torch":
            same = torch.equal(x, y)
        elif k == "numpy":
            same = np.array_equal(x[0], y[0]) and x[1] == y[1]
        else:
            same = x == y
        if not same:
            differ.append(k)
    return differ


def test_building_a_search_or_a_trainer_touches_nothing_outside_it(tmp_path):
    from dartsnas.engine.search import Search
    from dartsnas.engine.train import Trainer
    from dartsnas.genotype import load_genotype

    ops = tmp_path / "my_ops.py"
    ops.write_text("import torch.nn as nn\nfrom dartsnas.ops import register_op\n"
                   "register_op('arch_test_identity', lambda C, stride, affine: nn.Identity() if stride == 1 else "
                   "nn.AvgPool2d(1, stride))\n")
    train_cfg = dict(dataset="digits", layers=2, init_channels=4, batch_size=128, workers=0, epochs=1, seed=3,
                     deterministic=True, genotype="DARTS_V2")
    Trainer(TrainConfig(**train_cfg), load_genotype("DARTS_V2"), show_progress=False)  # the libraries it imports
    torch.manual_seed(11)  # set their environment variables once; ours does not
    before = _process_state()
    search = Search(SearchConfig(**TINY, seed=3, deterministic=True, ops_module=[str(ops)],
                                 primitives=["skip_connect", "arch_test_identity", "sep_conv_3x3"]),
                    show_progress=False)
    trainer = Trainer(TrainConfig(**train_cfg), load_genotype("DARTS_V2"), show_progress=False)
    assert _same(before, _process_state()) == []
    # the initial weights come from the config's seed, whatever the process's generators hold
    torch.manual_seed(12345)
    again = Search(SearchConfig(**TINY, seed=3, ops_module=[str(ops)],
                                primitives=["skip_connect", "arch_test_identity", "sep_conv_3x3"]),
                   show_progress=False)
    a, b = search.network.state_dict(), again.network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert trainer.params > 0


def test_setup_process_is_the_one_call_that_changes_the_process():
    from dartsnas import setup_process

    saved = _process_state()
    try:
        done = setup_process(7, deterministic=True, device="cpu")
        assert done["seed"] == 7 and torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark
        first = (torch.rand(3), np.random.rand(), random.random())
        setup_process(7, device="cpu")
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
        second = (torch.rand(3), np.random.rand(), random.random())
        assert torch.equal(first[0], second[0]) and first[1:] == second[1:]
        setup_process(7, rank=1, device="cpu")  # another process of a torchrun job draws its own numbers
        assert not torch.equal(torch.rand(3), first[0])
        assert "1 CPU thread(s)" in setup_process(threads=1)["threads"] and torch.get_num_threads() == 1
        auto = setup_process(threads=None, world_size=2)["threads"]  # what the machine has free, shared by two
        assert 1 <= torch.get_num_threads() <= max(1, len(os.sched_getaffinity(0)) // 2) and "load" in auto
    finally:
        torch.set_num_threads(saved["threads"])
        torch.set_rng_state(saved["torch"])
        torch.use_deterministic_algorithms(saved["deterministic"])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved["cudnn"]


class Recorder(Hook):
    def __init__(self):
        self.calls = []

    def before_run(self, loop):
        self.calls.append(("before_run", loop.epoch))

    def before_epoch(self, loop, epoch):
        self.calls.append(("before_epoch", epoch))

    def before_step(self, loop, epoch, step):
        self.calls.append(("before_step", step))

    def after_step(self, loop, end):
        assert end.loss == end.loss and end.stop is None
        self.calls.append(("after_step", end.step))

    def after_epoch(self, loop, end):
        # the loop's own files of the epoch are written before a user hook runs
        assert (loop.run_dir.path / "genotypes" / f"epoch_{end.epoch:03d}.json").is_file()
        assert (loop.run_dir.path / "checkpoints" / "last.pt").is_file()
        self.calls.append(("after_epoch", end.epoch, end.row["epoch"]))

    def after_run(self, loop):
        self.calls.append(("after_run", loop.epoch))


def _rows(path):
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def test_the_library_run_api_is_what_the_command_line_runs_and_its_hooks_fire_in_order(tmp_path):
    from dartsnas import run_search

    recorder = Recorder()
    result = run_search({**TINY, "epochs": 2, "out": str(tmp_path / "api")}, hooks=[recorder], show_progress=False)
    steps = len([c for c in recorder.calls if c[0] == "after_step"]) // 2
    assert steps >= 1
    epoch = [c for s in range(1, steps + 1) for c in (("before_step", s), ("after_step", s))]
    expected = ([("before_run", 0), ("before_epoch", 1)] + epoch + [("after_epoch", 1, 1), ("before_epoch", 2)] +
                epoch + [("after_epoch", 2, 2), ("after_run", 2)])
    assert recorder.calls == expected
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k != "epochs"]
    assert main(["search", *flags, "--epochs", "2", "--out", str(tmp_path / "cli"), "-q"]) == 0
    assert _rows(tmp_path / "api" / "metrics.csv") == _rows(tmp_path / "cli" / "metrics.csv")
    assert (tmp_path / "cli" / "genotype.json").read_text() == (tmp_path / "api" / "genotype.json").read_text()
    assert str(result.genotype) in (tmp_path / "api" / "log.txt").read_text()
    # resuming through the API takes the run's config; a locked key cannot change
    from dartsnas.errors import DartsNASError

    try:
        run_search(resume=tmp_path / "api", overrides={"lr": 0.5})
    except DartsNASError as e:
        assert "cannot change lr" in str(e)
    else:
        raise AssertionError("a changed lr was accepted on resume")
    extended = run_search(resume=tmp_path / "api", overrides={"epochs": 3}, hooks=[], show_progress=False)
    assert [int(r["epoch"]) for r in extended.metrics] == [1, 2, 3]


def test_the_demo_runs_through_the_library(tmp_path, capsys, monkeypatch):
    from dartsnas import demo

    for settings in (demo.DEMO_SEARCH, demo.DEMO_TRAIN):  # a few batches per epoch: the steps, not the learning
        monkeypatch.setitem(settings, "limit_batches", 1)
    assert main(["demo", "--epochs", "1", "--train-epochs", "1", "--out", str(tmp_path / "demo"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "genotype: Genotype(" in out and "top-1 accuracy (%)" in out
    for f in ("search/genotype.json", "train/final.json", "train/evaluation.json", "report.html",
              "search/report.html", "train/report.html", "search/pictures/curves.png"):
        assert (tmp_path / "demo" / f).is_file(), f
    assert main(["demo", "--epochs", "1", "--out", str(tmp_path / "demo"), "-q"]) == 2  # never over a run


def test_a_first_trial_quick_recipe_and_limited_batches(tmp_path):
    from dartsnas import run_training

    class Steps(Hook):
        def __init__(self):
            self.steps = []

        def after_step(self, loop, end):
            self.steps.append((end.epoch, end.step, end.steps))

    steps = Steps()
    result = run_training({"genotype": "DARTS_V2", "dataset": "digits", "recipe": "quick", "epochs": 2,
                           "limit_batches": 2, "workers": 0, "out": str(tmp_path / "t")}, hooks=[steps],
                          show_progress=False)
    assert steps.steps == [(1, 1, 2), (1, 2, 2), (2, 1, 2), (2, 2, 2)]
    cfg = (tmp_path / "t" / "config.yaml").read_text()
    assert "layers: 8" in cfg and "init_channels: 16" in cfg and "limit_batches: 2" in cfg
    assert result.final["test_acc"] is not None  # evaluation stays on the whole test set
