"""The evaluation half as a user runs it: train -> evaluate, derive, info, transfer, and bad input."""
import csv
import json

import pytest
import torch
from PIL import Image

from dartsnas.cli import main
from dartsnas.genotype import load_genotype

TINY_SEARCH = ["--dataset", "digits", "--layers", "3", "--init-channels", "2", "--nodes", "2", "--multiplier", "2",
               "--batch-size", "128", "--workers", "0", "--stem-multiplier", "1"]
TINY_TRAIN = ["--dataset", "digits", "--layers", "3", "--init-channels", "8", "--batch-size", "64", "--workers", "0",
              "--lr", "0.05", "--drop-path-prob", "0.1"]


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("s") / "search"
    assert main(["search", *TINY_SEARCH, "--epochs", "2", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("t") / "train"
    assert main(["train", "--genotype", "DARTS_V2", *TINY_TRAIN, "--epochs", "4", "--out", str(out)]) == 0
    return out


def test_training_on_digits_learns_and_leaves_a_complete_run(train_run):
    metrics = rows(train_run / "metrics.csv")
    assert [r["epoch"] for r in metrics] == ["1", "2", "3", "4"]
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "lr", "seconds"} <= set(metrics[0])
    assert float(metrics[-1]["test_acc"]) >= 85.0
    assert float(metrics[-1]["train_loss"]) < float(metrics[0]["train_loss"])
    # drop path rises linearly from 0
    assert [float(r["drop_path_prob"]) for r in metrics] == pytest.approx([0.0, 0.025, 0.05, 0.075])
    final = json.loads((train_run / "final.json").read_text())
    assert final["test_acc"] == pytest.approx(float(metrics[-1]["test_acc"]), abs=1e-3)
    assert load_genotype(train_run / "genotype.json") == load_genotype("DARTS_V2")
    state = torch.load(train_run / "checkpoints/last.pt", weights_only=True)
    assert state["kind"] == "train" and state["net_args"]["num_classes"] == 10


def test_evaluate_rebuilds_the_network_from_the_checkpoint_alone(train_run, capsys):
    assert main(["evaluate", str(train_run), "--json", "--workers", "0", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    final = json.loads((train_run / "final.json").read_text())
    assert report["top1"] == pytest.approx(final["test_acc"], abs=1e-6)
    assert report["top5"] >= report["top1"]
    assert report["params"] == final["params"] and report["macs"] == final["macs"] > 0
    assert report["images_per_second"] > 0
    assert json.loads((train_run / "evaluation.json").read_text())["top1"] == report["top1"]
    assert main(["evaluate", str(train_run / "checkpoints" / "last.pt"), "--workers", "0"]) == 0
    table = capsys.readouterr().out
    assert "top-1 accuracy" in table and "multiply-adds per image" in table
    # another test set (here: another folder) gets its own file; the run's own result stays
    own = (train_run / "evaluation.json").read_text()
    other = train_run.parent / "other-digits"
    assert main(["evaluate", str(train_run), "--data", str(other), "--json", "--workers", "0"]) == 0
    written = json.loads(capsys.readouterr().out)["written_to"]
    assert written.startswith(str(train_run / "evaluation_digits_"))
    assert (train_run / "evaluation.json").read_text() == own
    assert main(["evaluate", str(train_run), "--out", str(other / "e.json"), "--workers", "0", "-q"]) == 0
    assert json.loads((other / "e.json").read_text())["dataset"] == "digits"


def test_train_from_a_search_run_and_epoch(search_run, tmp_path):
    out = tmp_path / "t"
    without_dataset = [a for a in TINY_TRAIN if a not in ("--dataset", "digits")]
    assert main(["train", "--from-run", str(search_run), "--epoch", "1", *without_dataset, "--epochs", "1",
                 "--out", str(out)]) == 0
    assert load_genotype(out / "genotype.json") == load_genotype(search_run / "genotypes/epoch_001.json")
    assert "dataset: digits" in (out / "config.yaml").read_text()  # the search's data set, not cifar10


def test_derive_any_epoch_from_the_alpha_history(search_run, tmp_path, capsys):
    for epoch in (1, 2):
        target = tmp_path / f"e{epoch}.json"
        assert main(["derive", str(search_run), "--epoch", str(epoch), "--out", str(target)]) == 0
        assert load_genotype(target) == load_genotype(search_run / f"genotypes/epoch_{epoch:03d}.json")
    assert main(["derive", str(search_run), "--epoch", "0"]) == 0  # the initial alphas
    capsys.readouterr()
    assert main(["derive", str(search_run), "--epoch", "9"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "0 to 2" in err


def test_info_gives_the_published_counts(capsys):
    assert main(["info", "--genotype", "DARTS_V2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"] == 3_349_342 and report["macs"] == 528_359_040
    assert main(["info", "--genotype", "DARTS_V2", "--dataset", "cifar100", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 3_401_272


def _folder(root, classes=3, per_class=6, size=32):
    torch.manual_seed(0)
    for split in ("train", "test"):
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(per_class):
                pixels = (torch.rand(size, size, 3) * 80 + 60 * c).clamp(0, 255).byte().numpy()
                Image.fromarray(pixels).save(d / f"{i}.png")
    return root


def test_transfer_to_a_data_set_with_other_classes(tmp_path, capsys):
    data = _folder(tmp_path / "three")
    out = tmp_path / "t"
    assert main(["train", "--genotype", "DARTS_V1", "--dataset", "imagefolder", "--data", str(data), "--layers", "3",
                 "--init-channels", "4", "--epochs", "1", "--batch-size", "8", "--workers", "0", "--out",
                 str(out)]) == 0
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert state["net_args"]["num_classes"] == 3 and state["net_args"]["auxiliary"] is True
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json", "--workers", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test_images"] == 18
    # a 3-class network cannot be tested on 10-class digits
    assert main(["evaluate", str(out), "--dataset", "digits"]) == 2
    assert "3 classes" in capsys.readouterr().err


def test_resume_training_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    from dartsnas.engine.train import Trainer

    full = tmp_path / "full"
    assert main(["train", "--genotype", "DARTS_V2", *TINY_TRAIN, "--epochs", "3", "--out", str(full)]) == 0
    stopped = tmp_path / "stopped"
    original = Trainer.train_epoch

    def interrupted(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    assert main(["train", "--genotype", "DARTS_V2", *TINY_TRAIN, "--epochs", "3", "--out", str(stopped)]) == 130
    monkeypatch.setattr(Trainer, "train_epoch", original)
    assert len(rows(stopped / "metrics.csv")) == 2
    assert main(["train", "--resume", str(stopped)]) == 0
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(rows(stopped / "metrics.csv")) == strip(rows(full / "metrics.csv"))
    a = torch.load(stopped / "checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(full / "checkpoints/last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert main(["train", "--resume", str(stopped)]) == 2  # finished: extending needs --epochs
    assert main(["train", "--resume", str(stopped), "--epochs", "4", "--layers", "4"]) == 2  # another network
def test_mixed_precision_and_channels_last_run_on_cpu(tmp_path):
    out = tmp_path / "amp"
    assert main(["train", "--genotype", "DARTS_V2", *TINY_TRAIN, "--epochs", "1", "--amp", "bf16",
                 "--channels-last", "--out", str(out)]) == 0
    assert float(rows(out / "metrics.csv")[0]["test_acc"]) > 10


def _bad_json_genotype(path, op="sep_conv_3x3", source=0):
    g = load_genotype("DARTS_V2").to_dict()
    g["normal"]["nodes"][0][0] = [op, source]
    path.write_text(json.dumps(g))
    return path


@pytest.mark.parametrize("case", ["unknown name", "unknown op", "missing node", "not a run"])
def test_bad_genotypes_are_one_line_and_exit_2(tmp_path, capsys, case):
    genotype = {
        "unknown name": ["--genotype", "DARTS_V9"],
        "unknown op": ["--genotype", str(_bad_json_genotype(tmp_path / "g.json", op="conv_9x9"))],
        "missing node": ["--genotype", str(_bad_json_genotype(tmp_path / "g.json", source=7))],
        "not a run": ["--from-run", str(tmp_path)],
    }[case]
    out = tmp_path / "run"
    assert main(["train", *genotype, *TINY_TRAIN, "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dartsnas: error:") and "\n" not in err, err
    assert not out.exists()


def test_foreign_corrupt_and_mismatched_checkpoints(train_run, tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    state = torch.load(train_run / "checkpoints/last.pt", weights_only=True)
    state["net_args"]["layers"] = 5
    mismatched = tmp_path / "mismatch.pt"
    torch.save(state, mismatched)
    for path, message in ((junk, "corrupt"), (plain, "not a dartsnas checkpoint"), (mismatched, "do not match"),
                          (tmp_path / "missing.pt", "does not exist")):
        assert main(["evaluate", str(path), "--workers", "0"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err, (path, err)


def test_autoaugment_needs_rgb(tmp_path, capsys):
    assert main(["train", "--genotype", "DARTS_V2", *TINY_TRAIN, "--autoaugment", "--out", str(tmp_path / "r")]) == 2
    assert "AutoAugment" in capsys.readouterr().err


@pytest.mark.integration
def test_training_on_real_cifar10_images(cifar10_small, tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["train", "--genotype", "DARTS_V2", "--dataset", "imagefolder", "--data", str(cifar10_small),
                 "--layers", "3", "--init-channels", "4", "--epochs", "1", "--batch-size", "50", "--workers", "0",
                 "--autoaugment", "--out", str(out)]) == 0
    metrics = rows(out / "metrics.csv")
    assert len(metrics) == 1 and float(metrics[0]["train_loss"]) > 0
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert state["net_args"]["num_classes"] == 10 and state["net_args"]["auxiliary"] is True
