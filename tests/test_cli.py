"""`dartsnas search` as a user runs it: the run directory, repeating and resuming, and bad input."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dartsnas.cli import main
from dartsnas.genotype import derive_genotype, load_genotype, softmax

TINY = ["--dataset", "digits", "--layers", "3", "--init-channels", "2", "--nodes", "2", "--multiplier", "2",
        "--batch-size", "128", "--workers", "0", "--stem-multiplier", "1"]


def search(tmp_path, name, *extra):
    out = tmp_path / name
    code = main(["search", *TINY, "--out", str(out), *extra])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def run2(tmp_path_factory):
    """A two-epoch tiny search shared by several tests."""
    return search(tmp_path_factory.mktemp("runs"), "run", "--epochs", "2")


def read_metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_run_directory_holds_every_artifact(run2):
    for rel in ("config.yaml", "metrics.csv", "genotype.json", "genotypes/epoch_001.json",
                "genotypes/epoch_002.json", "alphas.npz", "checkpoints/last.pt", "log.txt"):
        assert (run2 / rel).is_file(), rel
    rows = read_metrics(run2)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "arch_lr", "seconds"} <= set(rows[0])
    # epoch e trains at the cosine learning rate for e: 0.025 at epoch 1, then half way to lr_min
    assert float(rows[0]["lr"]) == pytest.approx(0.025)
    assert float(rows[1]["lr"]) == pytest.approx(0.001 + 0.024 * 0.5)
    # the final genotype is the last epoch's
    assert load_genotype(run2 / "genotype.json") == load_genotype(run2 / "genotypes/epoch_002.json")


def test_alpha_history_is_raw_with_the_initial_row_and_derives_the_saved_genotypes(run2):
    with np.load(run2 / "alphas.npz") as h:
        normal, reduce = h["alpha_normal"], h["alpha_reduce"]
        prims = list(h["primitives"])
        assert normal.shape == (3, 5, 8)  # epochs + 1 rows, 5 edges for 2 nodes, 8 ops
        assert np.allclose(h["softmax_alpha_normal"], softmax(normal))
    assert np.abs(normal[0]).max() < 1e-2  # 1e-3 * randn at row 0
    assert not np.array_equal(normal[0], normal[2])
    for epoch in (1, 2):
        g = derive_genotype(softmax(normal[epoch]), softmax(reduce[epoch]), prims, 2, 2)
        assert g == load_genotype(run2 / f"genotypes/epoch_{epoch:03d}.json")


def test_checkpoint_loads_with_weights_only(run2):
    state = torch.load(run2 / "checkpoints/last.pt", weights_only=True)
    assert state["format"] == "dartsnas-checkpoint" and state["version"] == 1
    assert state["epoch"] == 2
    assert {"model", "weight_optimizer", "arch_optimizer", "scheduler", "rng", "config"} <= set(state)
    assert "alpha_normal" in state["model"]


def test_saved_config_repeats_the_run(run2, tmp_path):
    cfg = yaml.safe_load((run2 / "config.yaml").read_text())
    assert cfg["epochs"] == 2 and cfg["layers"] == 3 and len(cfg["primitives"]) == 8
    out = tmp_path / "again"
    assert main(["search", "--config", str(run2 / "config.yaml"), "--out", str(out)]) == 0
    assert load_genotype(out / "genotype.json") == load_genotype(run2 / "genotype.json")
    with np.load(out / "alphas.npz") as a, np.load(run2 / "alphas.npz") as b:
        assert np.array_equal(a["alpha_normal"], b["alpha_normal"])


def test_resume_extends_a_run_to_the_same_result(run2, tmp_path):
    short = search(tmp_path, "short", "--epochs", "1")
    assert main(["search", "--resume", str(short), "--epochs", "2"]) == 0
    with np.load(short / "alphas.npz") as a, np.load(run2 / "alphas.npz") as b:
        assert np.array_equal(a["alpha_normal"], b["alpha_normal"])
        assert np.array_equal(a["alpha_reduce"], b["alpha_reduce"])
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(read_metrics(short)) == drop(read_metrics(run2))
    assert load_genotype(short / "genotype.json") == load_genotype(run2 / "genotype.json")


def test_resume_refuses_a_changed_network(run2, capsys):
    assert main(["search", "--resume", str(run2), "--layers", "4", "--epochs", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "layers" in err


def test_config_file_and_flag_precedence(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1\nlayers: 4\ninit-channels: 2\ndataset: digits\nworkers: 0\nnodes: 2\n"
                      "multiplier: 2\nbatch_size: 256\n")
    out = tmp_path / "run"
    assert main(["search", "--config", str(config), "--layers", "3", "--out", str(out)]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["layers"] == 3 and saved["init_channels"] == 2 and saved["batch_size"] == 256
    assert saved["lr"] == 0.025  # untouched defaults are the paper's


BAD = [
    (["--dataset", "svhn"], "unknown data set 'svhn'"),
    (["--primitives", "sep_conv_3x3,conv_9x9"], "unknown op 'conv_9x9'"),
    (["--nodes", "0"], "nodes must be >= 1"),
    (["--nodes", "2", "--multiplier", "3"], "multiplier"),
    (["--init-channels", "0"], "init_channels"),
    (["--layers", "0"], "layers must be >= 1"),
    (["--train-portion", "1.5"], "train_portion"),
    (["--device", "tpu"], "device"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    args = ["search", "--dataset", "digits", "--epochs", "1", "--workers", "0", "--out", str(out)] + extra
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dartsnas: error: ") and "\n" not in err and message in err, err
    assert not out.exists()


def test_missing_cifar_offline_says_where_it_looked(tmp_path, capsys):
    data = tmp_path / "nodata"
    data.mkdir()
    out = tmp_path / "run"
    assert main(["search", "--dataset", "cifar10", "--data", str(data), "--no-download", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(data) in err and "--data" in err
    assert not out.exists() and list(data.iterdir()) == []


def test_missing_imagefolder(tmp_path, capsys):
    assert main(["search", "--dataset", "imagefolder", "--data", str(tmp_path / "none"),
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "none" in err


@pytest.mark.parametrize("text,message", [
    ("epochs: [1\n", "malformed"),
    ("- 1\n- 2\n", "mapping"),
    ("epoch: 3\n", "unknown key(s) epoch"),
    ("epochs: three\n", "epochs must be int"),
])
def test_bad_config_files(tmp_path, capsys, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    assert main(["search", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err
    assert not (tmp_path / "run").exists()


def test_existing_run_directory_is_refused(run2, capsys):
    before = sorted(p.name for p in run2.iterdir())
    assert main(["search", *TINY, "--epochs", "1", "--out", str(run2)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in run2.iterdir()) == before


def test_genotype_command(tmp_path, capsys):
    assert main(["genotype", "DARTS_V2", "--out", str(tmp_path / "g.json")]) == 0
    assert "sep_conv_3x3" in capsys.readouterr().out
    assert load_genotype(tmp_path / "g.json") == load_genotype("DARTS_V2")
    bad = tmp_path / "bad.txt"
    bad.write_text("Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2], reduce=[], reduce_concat=[2])")
    assert main(["genotype", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dartsnas: error:") and "\n" not in err


def test_console_entry_point_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dartsnas", "search", "--dataset", "nope", "--out",
                           str(tmp_path / "r")], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert list(Path(tmp_path).iterdir()) == []


@pytest.mark.integration
def test_search_on_real_cifar10_images_through_imagefolder(cifar10_small, tmp_path):
    out = tmp_path / "cifar"
    code = main(["search", "--dataset", "imagefolder", "--data", str(cifar10_small), "--epochs", "1",
                 "--layers", "3", "--init-channels", "4", "--batch-size", "25", "--workers", "0",
                 "--out", str(out)])
    assert code == 0
    rows = read_metrics(out)
    assert len(rows) == 1 and float(rows[0]["train_loss"]) > 0
    g = load_genotype(out / "genotype.json")
    assert len(g.normal.nodes) == 4 and all(len(n) == 2 for n in g.normal.nodes)
    with np.load(out / "alphas.npz") as h:
        assert h["alpha_normal"].shape == (2, 14, 8)
