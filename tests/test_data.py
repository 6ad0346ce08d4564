"""Data sets, presets, the search split and the search loaders (CPU, fast)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from dartsnas.data import (
    DATASETS,
    Cutout,
    DatasetInfo,
    build_search_loaders,
    dataset_info,
    load_split,
    search_split,
)
from dartsnas.errors import DataError, UnknownNameError

# --------------------------------------------------------------------------- registry and presets


def test_registry_holds_the_builtin_data_sets():
    assert {"digits", "cifar10", "cifar100", "imagenet", "imagefolder"} <= set(DATASETS.names())


def test_unknown_data_set_lists_known_names():
    with pytest.raises(UnknownNameError, match="digits"):
        dataset_info("svhn")


@pytest.mark.parametrize(
    "name, classes, size, cutout, aux",
    [("digits", 10, 8, 0, False), ("cifar10", 10, 32, 16, True), ("cifar100", 100, 32, 16, True),
     ("imagenet", 1000, 224, 0, True)],
)
def test_presets(name, classes, size, cutout, aux):
    info = dataset_info(name)
    assert isinstance(info, DatasetInfo)
    assert (info.num_classes, info.image_size, info.cutout_length, info.auxiliary) == (classes, size, cutout, aux)
    assert len(info.mean) == len(info.std) == info.channels


# --------------------------------------------------------------------------- digits


def test_digits_shapes_split_and_normalisation():
    train, info = load_split("digits", None, "train")
    test, _ = load_split("digits", None, "test", transform="test")
    assert (len(train), len(test)) == (1497, 300)
    assert info.channels == 1 and info.num_classes == 10
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and isinstance(y, int)
    assert train.images.mean().abs() < 0.05
    assert (train.images.std() - 1).abs() < 0.05
    assert set(train.targets.tolist()) == set(range(10)) == set(test.targets.tolist())


def test_digits_split_is_fixed_and_disjoint():
    a, _ = load_split("digits", None, "train")
    b, _ = load_split("digits", None, "train")
    test, _ = load_split("digits", None, "test")
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    raw_train, _ = load_split("digits", None, "train", transform="none")
    raw_test, _ = load_split("digits", None, "test", transform="none")
    assert 0 <= raw_train.images.min() and raw_train.images.max() <= 1
    train_rows = {tuple(r.flatten().tolist()) for r in raw_train.images}
    assert sum(tuple(r.flatten().tolist()) in train_rows for r in raw_test.images) < 10  # duplicates only
    assert len(test) == 300


def test_bad_split_or_transform():
    with pytest.raises(DataError, match="split"):
        load_split("digits", None, "valid")
    with pytest.raises(DataError, match="transform"):
        load_split("digits", None, "train", transform="augment")


def test_cutout_zeroes_a_square():
    torch.manual_seed(0)
    img = torch.ones(3, 32, 32)
    out = Cutout(16)(img)
    assert img.min() == 1  # input untouched
    assert 0 < (out == 0).sum() <= 3 * 16 * 16
    ds, _ = load_split("digits", None, "train", cutout=4)
    assert ds[0][0].shape == (1, 8, 8)


# --------------------------------------------------------------------------- search split


def test_search_split_disjoint_covering_and_seeded():
    a, b = search_split(100, 0.5, seed=3)
    assert len(a) == 50 and len(b) == 50
    assert set(a).isdisjoint(b) and sorted(a + b) == list(range(100))
    assert search_split(100, 0.5, seed=3) == (a, b)
    assert search_split(100, 0.5, seed=4) != (a, b)


@pytest.mark.parametrize("portion, expected", [(0.5, 48), (0.8, 77), (0.29, 28), (0.1, 9)])
def test_search_split_respects_portion(portion, expected):
    a, b = search_split(97, portion, seed=0)
    assert len(a) == expected and len(b) == 97 - expected
    assert len(search_split(100, 0.29, seed=0)[0]) == 29  # no float floor surprise


def test_search_split_interleaves_sorted_classes():
    labels = [c for c in range(10) for _ in range(20)]  # sorted by class, as ImageFolder lists files
    a, b = search_split(len(labels), 0.5, seed=0)
    assert {labels[i] for i in a} == set(range(10)) == {labels[i] for i in b}


@pytest.mark.parametrize("n, portion", [(1, 0.5), (10, 0.05), (2, 0.4), (10, 1.0), (10, 0.0)])
def test_search_split_empty_half_is_an_error(n, portion):
    with pytest.raises(DataError):
        search_split(n, portion, seed=0)


# --------------------------------------------------------------------------- search loaders


def _indices(loader) -> list[int]:
    return list(loader.dataset.indices)


def test_search_loaders_on_digits():
    train, valid, info = build_search_loaders("digits", None, batch_size=32, seed=0, workers=2)
    assert info.name == "digits"
    assert train.num_workers == 0 and valid.num_workers == 0  # in-memory data
    assert set(_indices(train)).isdisjoint(_indices(valid))
    assert len(_indices(train)) + len(_indices(valid)) == 1497
    x, y = next(iter(train))
    assert x.shape == (32, 1, 8, 8) and y.shape == (32,) and y.dtype == torch.int64
    xv, _ = next(iter(valid))
    assert xv.shape == (32, 1, 8, 8)
    assert all(xb.shape[0] == 32 for xb, _ in train)  # drop_last with full batches available


def test_search_loaders_small_half_keeps_last_batch():
    train, _, _ = build_search_loaders("digits", None, batch_size=1000, train_portion=0.5)
    assert train.drop_last is False and len(list(train)) == 1


def test_search_loaders_shard_per_rank():
    shards = [build_search_loaders("digits", None, batch_size=16, rank=r, world_size=2) for r in range(2)]
    (t0, v0, _), (t1, v1, _) = shards
    assert len(_indices(t0)) == len(_indices(t1)) and len(_indices(v0)) == len(_indices(v1))
    assert set(_indices(t0)).isdisjoint(_indices(t1))
    assert set(_indices(v0)).isdisjoint(_indices(v1))
    every = set(_indices(t0)) | set(_indices(t1)) | set(_indices(v0)) | set(_indices(v1))
    assert len(every) == sum(len(_indices(s)) for s in (t0, t1, v0, v1))
    with pytest.raises(DataError, match="rank"):
        build_search_loaders("digits", None, batch_size=16, rank=2, world_size=2)


def test_search_loaders_repeatable():
    def first_epoch(seed):
        train, valid, _ = build_search_loaders("digits", None, batch_size=64, seed=seed)
        return [y for _, y in train], [y for _, y in valid]

    a, b = first_epoch(0), first_epoch(0)
    assert all(torch.equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1]))
    c = first_epoch(1)
    assert not all(torch.equal(x, y) for x, y in zip(a[0], c[0]))


def test_search_loaders_reshuffle_each_epoch():
    train, _, _ = build_search_loaders("digits", None, batch_size=64, seed=0)
    e1 = torch.cat([y for _, y in train])
    e2 = torch.cat([y for _, y in train])
    assert not torch.equal(e1, e2)


# --------------------------------------------------------------------------- CIFAR without data


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_missing_without_download(tmp_path, name):
    root = tmp_path / "data"
    with pytest.raises(DataError) as err:
        load_split(name, root, "train", download=False)
    message = str(err.value)
    assert str(root) in message and "--data" in message and "\n" not in message
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []


def test_cifar_without_root():
    with pytest.raises(DataError, match="--data"):
        load_split("cifar10", None, "train", download=False)


# --------------------------------------------------------------------------- image folders


def _make_folder(root: Path, *, size: int = 32, classes: int = 3, per_class: int = 4, splits=("train", "test")):
    for split in splits:
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(per_class):
                colour = (40 * c, 10 * i, 200 - 30 * c)
                Image.new("RGB", (size, size), colour).save(d / f"{i:03d}.png")
    return root


def test_imagefolder_info_and_loaders(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    info = dataset_info("imagefolder", root)
    got = (info.num_classes, info.image_size, info.channels, info.cutout_length, info.auxiliary)
    assert got == (3, 32, 3, 16, True)
    test, _ = load_split("imagefolder", root, "test", transform="test")
    assert len(test) == 12 and test[0][0].shape == (3, 32, 32)
    train, valid, info2 = build_search_loaders("imagefolder", root, batch_size=4, workers=0)
    assert info2 == info
    x, y = next(iter(train))
    assert x.shape == (4, 3, 32, 32) and y.shape == (4,)
    assert set(_indices(train)).isdisjoint(_indices(valid))


def test_imagefolder_prefers_val_over_test(tmp_path):
    root = _make_folder(tmp_path, per_class=2)
    _make_folder(tmp_path, per_class=1, splits=("val",))
    test, _ = load_split("imagefolder", root, "test", transform="none")
    assert len(test) == 3 and Path(test.root).name == "val"


def test_imagefolder_large_images_use_imagenet_recipe(tmp_path):
    root = _make_folder(tmp_path, size=96, classes=2, per_class=1)
    info = dataset_info("imagefolder", root)
    assert (info.image_size, info.cutout_length, info.auxiliary) == (224, 0, True)
    train, _ = load_split("imagefolder", root, "train")
    test, _ = load_split("imagefolder", root, "test", transform="test")
    assert train[0][0].shape == (3, 224, 224) == test[0][0].shape


def test_imagefolder_grayscale_is_rgb(tmp_path):
    d = tmp_path / "train" / "a"
    d.mkdir(parents=True)
    Image.new("L", (16, 16), 128).save(d / "x.png")
    train, info = load_split("imagefolder", tmp_path, "train", transform="test")
    assert train[0][0].shape == (3, 16, 16) and info.auxiliary is False


def test_imagefolder_missing_train(tmp_path):
    with pytest.raises(DataError) as err:
        dataset_info("imagefolder", tmp_path)
    assert str(tmp_path / "train") in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="--data"):
        dataset_info("imagefolder", None)
    with pytest.raises(DataError, match="train"):
        load_split("imagefolder", tmp_path / "nowhere", "train")


def test_imagefolder_no_classes_or_images(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        dataset_info("imagefolder", tmp_path)
    (tmp_path / "train" / "a").mkdir()
    with pytest.raises(DataError, match="no images"):
        dataset_info("imagefolder", tmp_path)


def test_imagefolder_missing_test_split(tmp_path):
    root = _make_folder(tmp_path, splits=("train",))
    with pytest.raises(DataError, match="val/ or test/"):
        load_split("imagefolder", root, "test")


def test_imagenet_counts_class_folders(tmp_path):
    root = _make_folder(tmp_path, size=40, classes=2, per_class=1, splits=("train", "val"))
    info = dataset_info("imagenet", root)
    assert (info.num_classes, info.image_size) == (2, 224)
    val, _ = load_split("imagenet", root, "test", transform="test")
    assert val[0][0].shape == (3, 224, 224)


# --------------------------------------------------------------------------- real CIFAR-10 (JPEG copy)


@pytest.mark.integration
def test_cifar10_jpeg_copy(cifar10_small):
    info = dataset_info("imagefolder", cifar10_small)
    assert (info.num_classes, info.image_size, info.channels) == (10, 32, 3)
    train, valid, _ = build_search_loaders("imagefolder", cifar10_small, batch_size=16, workers=0)
    assert len(train.dataset) == len(valid.dataset) == 100
    x, y = next(iter(train))
    assert x.shape == (16, 3, 32, 32) and 0 <= int(y.min()) and int(y.max()) < 10
    assert x.mean().abs() < 1.0  # normalised
    test, _ = load_split("imagefolder", cifar10_small, "test", transform="test")
    assert len(test) == 50


def test_cifar_failed_download_leaves_nothing(tmp_path, monkeypatch):
    """A download that fails half-way (simulated: no network is used) removes what it created."""
    import socket

    import torchvision

    class FakeConnection:
        def close(self):
            pass

    def broken_download(self):
        Path(self.root, self.filename).write_bytes(b"partial")
        raise OSError("connection reset")

    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: FakeConnection())
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", broken_download)
    mine = tmp_path / "existing"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for root in (tmp_path / "new" / "data", mine):
        with pytest.raises(DataError, match="download failed.*connection reset"):
            load_split("cifar10", root, "train", download=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_shard_splits_indices_disjointly_and_equally():
    from dartsnas.data import shard

    indices = [7, 3, 9, 1, 4, 8, 2, 0, 6, 5, 11]  # 11 over 3 ranks: 3 each, 2 dropped when equal
    parts = [shard(indices, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 3]
    assert sorted(i for p in parts for i in p) == sorted(indices[:9])  # disjoint, every rank its stride
    evaluation = [shard(indices, r, 3, equal=False) for r in range(3)]
    assert sorted(i for p in evaluation for i in p) == sorted(indices)  # every index once
    assert shard(range(5), 0, 1) == [0, 1, 2, 3, 4]
