"""Coming from the seed systems: their data sets (MNIST, Fashion-MNIST as pt.darts reads them), their flag
spellings, D-DARTS' fp16 --amp, and the course project's alpha history files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dartsnas.cli import build_parser, main
from dartsnas.data import dataset_info, load_split
from dartsnas.genotype import load_genotype, softmax
from dartsnas.runs import COURSE_PRIMITIVES, RunDir, load_checkpoint


def write_idx(root: Path, folder: str, n_train: int = 96, n_test: int = 32, seed: int = 0) -> None:
    """Tiny MNIST-format files (idx3 images, idx1 labels, uncompressed) where torchvision looks for them."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (rng.integers(0, 40, (n, 28, 28)) + labels[:, None, None] * 20).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(np.array([0x803, n, 28, 28], ">i4").tobytes()
                                                           + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([0x801, n], ">i4").tobytes() + labels.tobytes())


def test_mnist_family_presets_and_case_insensitive_names(tmp_path: Path) -> None:
    write_idx(tmp_path, "MNIST")
    write_idx(tmp_path, "FashionMNIST", seed=1)
    for name, cls in (("MNIST", "mnist"), ("FashionMNIST", "fashionmnist"), ("fashion_mnist", "fashionmnist")):
        info = dataset_info(name)
        assert (info.name, info.channels, info.image_size, info.num_classes, info.auxiliary) == (cls, 1, 28, 10, False)
        train, _ = load_split(name, tmp_path, "train")
        test, _ = load_split(name, tmp_path, "test", transform="test")
        assert (len(train), len(test)) == (96, 32) and train[0][0].shape == (1, 28, 28)
    assert dataset_info("CIFAR10").name == "cifar10"


def test_search_and_train_on_fashion_mnist_with_the_seeds_flags(tmp_path: Path) -> None:
    write_idx(tmp_path / "data", "FashionMNIST")
    search, train = tmp_path / "search", tmp_path / "train"
    # pt.darts' and D-DARTS' spellings: --dataset FashionMNIST, underscore flags, --learning_rate, --cutout
    assert main(["search", "--dataset", "FashionMNIST", "--data", str(tmp_path / "data"), "--epochs", "1",
                 "--layers", "3", "--init_channels", "2", "--nodes", "2", "--multiplier", "2", "--batch_size", "48",
                 "--workers", "0", "--learning_rate", "0.05", "--arch_learning_rate", "0.001", "--no-download",
                 "-q", "--out", str(search)]) == 0
    saved = RunDir.open(search)
    cfg = (search / "config.yaml").read_text()
    assert "dataset: fashionmnist" in cfg and "lr: 0.05" in cfg and "arch_lr: 0.001" in cfg
    assert saved.genotype_path.is_file()
    assert main(["train", "--from-run", str(search), "--dataset", "fashionmnist", "--data", str(tmp_path / "data"),
                 "--epochs", "1", "--layers", "2", "--init_channels", "2", "--batch_size", "48", "--workers", "0",
                 "--cutout", "--no-download", "-q", "--out", str(train)]) == 0
    assert "cutout: 16" in (train / "config.yaml").read_text()
    final = json.loads((train / "final.json").read_text())
    assert 0 <= final["test_acc"] <= 100


def test_missing_mnist_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["search", "--dataset", "mnist", "--data", str(tmp_path), "--no-download", "--epochs", "1",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "MNIST not found" in err and "\n" not in err and "Traceback" not in err


def test_seed_flag_spellings() -> None:
    parse = build_parser().parse_args
    a = parse(["train", "--batch_size", "32", "--cutout", "--w_lr", "0.1", "--init_channels", "8",
               "--drop_path_prob", "0.3", "--no-channels_last"])
    assert (a.batch_size, a.cutout, a.lr, a.init_channels, a.drop_path_prob, a.channels_last) == (
        32, 16, 0.1, 8, 0.3, False)
    assert parse(["train", "--cutout", "8"]).cutout == 8 and parse(["train", "--cutout_length", "4"]).cutout == 4
    a = parse(["search", "--unrolled", "--alpha_lr", "1e-3", "--op_threshold", "0.7", "--alpha_weight_decay", "0"])
    assert (a.order, a.arch_lr, a.threshold, a.arch_weight_decay) == (2, 1e-3, 0.7, 0.0)
    assert parse(["search", "--amp"]).amp == "fp16" and parse(["train", "--amp", "bf16"]).amp == "bf16"
    assert parse(["train", "--arch", "DARTS_V2"]).genotype == "DARTS_V2"


def test_fp16_search_scales_the_weight_step_and_resumes_its_scaler(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["search", "--dataset", "digits", "--layers", "3", "--init-channels", "2", "--nodes", "2",
                 "--multiplier", "2", "--batch-size", "256", "--workers", "0", "--epochs", "1", "--amp", "fp16",
                 "-q", "--out", str(run)]) == 0
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["config"]["amp"] == "fp16" and state["scaler"]["scale"] > 0
    rows = RunDir.open(run).read_metrics()
    assert np.isfinite(float(rows[-1]["train_loss"])) and np.isfinite(float(rows[-1]["val_loss"]))


def test_course_project_histories_derive_and_train(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(3)
    normal = np.zeros((6, 9, 8))
    reduce = np.zeros((6, 9, 8))
    normal[:4], reduce[:4] = rng.normal(size=(4, 9, 8)), rng.normal(size=(4, 9, 8))  # stopped after epoch 4
    folder = tmp_path / "course"
    folder.mkdir()
    np.save(folder / "alpha_normal_history.npy", normal)
    np.save(folder / "alpha_reduce_history.npy", reduce)

    def reference(alphas: np.ndarray) -> tuple:
        """The project's get_edge2oper, written out: per node the two edges with the largest non-zero softmax
        weight, each with its best non-zero op ('zero' is the last op)."""
        out, start = [], 0
        for j in range(3):
            p = softmax(alphas[start:start + 2 + j], axis=-1)[:, :7]
            edges = sorted(range(2 + j), key=lambda i: (-p[i].max(), i))[:2]
            out.append(tuple((COURSE_PRIMITIVES[int(np.argmax(p[i]))], i) for i in edges))
            start += 2 + j
        return tuple(out)

    assert main(["derive", str(folder), "--epoch", "3", "--out", str(tmp_path / "g3.json")]) == 0
    g = load_genotype(tmp_path / "g3.json")
    assert g.normal.nodes == reference(normal[2]) and g.reduce.nodes == reference(reduce[2])
    assert g.normal.concat == (2, 3, 4)  # the project's cells concatenate every node
    capsys.readouterr()
    assert main(["derive", str(folder)]) == 0  # default: the last epoch reached
    assert capsys.readouterr().out.startswith("epoch 4:")
    assert main(["derive", str(folder), "--epoch", "5"]) == 2
    assert "epochs reached: 1 to 4" in capsys.readouterr().err
    assert main(["derive", str(folder), "--rule", "threshold-edge"]) == 2
    assert "derive by its own rule (top-k)" in capsys.readouterr().err
    np.save(folder / "alpha_reduce_history.npy", reduce[:, :, :5])  # a file of another search space
    assert main(["derive", str(folder)]) == 2
    assert "expected a float array [epochs, edges, 8]" in capsys.readouterr().err
    np.save(folder / "alpha_reduce_history.npy", reduce)
    train = tmp_path / "train"
    assert main(["train", "--from-run", str(folder), "--epoch", "3", "--dataset", "digits", "--layers", "2",
                 "--init-channels", "2", "--epochs", "1", "--batch-size", "256", "--workers", "0", "-q",
                 "--out", str(train)]) == 0
    assert json.loads((train / "final.json").read_text())["genotype"] == load_genotype(
        tmp_path / "g3.json").to_dict()
