"""Data sets, their presets and transforms, and the DARTS search split.

Every data set is registered in ``DATASETS`` under a name (``digits``, ``cifar10``, ``cifar100``,
``imagenet``, ``imagefolder``). A preset (:class:`DatasetInfo`) carries what the rest of the library
needs to know about a data set without loading it: classes, channels, image size, normalisation,
and the defaults that depend on them (cutout length, whether an auxiliary head fits).

``digits`` (scikit-learn's bundled 8x8 digits) needs no download and is the data set for demos and
tests. The others read from a folder given by the caller (``--data DIR`` on the command line).
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .errors import DataError
from .registry import Registry

logger = logging.getLogger(__name__)

__all__ = [
    "DATASETS",
    "Cutout",
    "DatasetBuilder",
    "DatasetInfo",
    "DigitsDataset",
    "build_search_loaders",
    "canonical_dataset",
    "shard",
    "dataset_info",
    "load_split",
    "make_loader",
    "search_split",
]

SPLITS = ("train", "test")
TRANSFORMS = ("train", "autoaugment", "test", "none")  # autoaugment: train + AutoAugment

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set looks like and the training defaults that depend on it."""

    name: str
    num_classes: int
    channels: int  # 3 for RGB, 1 for digits
    image_size: int  # side of the (square) network input: 32 CIFAR, 8 digits, 224 ImageNet
    mean: tuple[float, ...]
    std: tuple[float, ...]
    cutout_length: int  # default cutout for training; 0 turns it off
    auxiliary: bool  # whether an auxiliary head fits the feature maps


@dataclass(frozen=True)
class DatasetBuilder:
    """A registered data set: ``info(root)`` gives its preset, ``load(root, split, transform, download)``
    returns ``(dataset, info)``. ``in_memory`` data sets are read with ``num_workers=0``."""

    info: Callable[[Path | None], DatasetInfo]
    load: Callable[[Path | None, str, str, bool], "tuple[Dataset, DatasetInfo]"]
    in_memory: bool = False


DATASETS: Registry[DatasetBuilder] = Registry("data set")


# --------------------------------------------------------------------------- public API


def dataset_info(name: str, root: str | Path | None = None) -> DatasetInfo:
    """The preset of data set ``name``. ``imagefolder`` and ``imagenet`` read the class count (and for
    ``imagefolder`` the image size) from ``root``; the others ignore ``root``."""
    return DATASETS.get(canonical_dataset(name)).info(_as_path(root))


def load_split(
    name: str,
    root: str | Path | None,
    split: str,
    *,
    transform: str = "train",
    download: bool = True,
    cutout: int = 0,
) -> tuple[Dataset, DatasetInfo]:
    """Load the ``"train"`` or ``"test"`` split of data set ``name`` from ``root``.

    ``transform`` is ``"train"`` (augmentation + normalisation), ``"autoaugment"`` (the train transform
    with torchvision's AutoAugment policy: CIFAR-10's for small images, ImageNet's for large ones),
    ``"test"`` (normalisation only) or
    ``"none"`` (the raw samples: PIL images, or unnormalised [0, 1] tensors for ``digits``).
    ``cutout`` > 0 appends a :class:`Cutout` of that length to the train transform (off by default;
    the preset's ``cutout_length`` is the usual value for training, not for search).
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; pass one of {', '.join(SPLITS)}")
    if transform not in TRANSFORMS:
        raise DataError(f"unknown transform {transform!r}; pass one of {', '.join(TRANSFORMS)}")
    builder = DATASETS.get(canonical_dataset(name))
    if transform == "autoaugment" and builder.in_memory:
        raise DataError(f"AutoAugment needs RGB images; {name} has none: leave out --autoaugment")
    dataset, info = builder.load(_as_path(root), split, transform, download)
    if cutout > 0 and transform in ("train", "autoaugment"):
        dataset = _with_extra_transform(dataset, Cutout(cutout))
    return dataset, info


def shard(indices: Sequence[int], rank: int, world_size: int, *, equal: bool = True) -> list[int]:
    """This rank's part of ``indices`` under torchrun: every ``world_size``-th one from position ``rank`` on; with
    ``equal``, cut to the same length on every rank (the remainder dropped), so that all ranks take the same
    number of steps. The one sharding rule of the search and the training loaders."""
    part = list(indices[rank::world_size])
    return part[: len(indices) // world_size] if equal else part


def canonical_dataset(name: str) -> str:
    """A data set name as registered: names are case-insensitive (``CIFAR10``, as pt.darts and D-DARTS spell
    them, is ``cifar10``) and ``fashion_mnist``/``fashion-mnist`` are ``fashionmnist``."""
    if not isinstance(name, str):
        return name
    key = name.strip().lower()
    return "fashionmnist" if key in ("fashion_mnist", "fashion-mnist") else key


def search_split(n: int, train_portion: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into (weight half, alpha half) for the DARTS search.

    A permutation seeded with ``seed`` (so classes stored in order are interleaved), then the first
    ``floor(train_portion * n)`` indices train the weights and the rest the alphas. The result depends
    only on the arguments, so every process of a distributed run gets the same split.
    """
    if not 0.0 < float(train_portion) < 1.0:
        raise DataError(f"train_portion must be between 0 and 1 (exclusive), got {train_portion}; pass e.g. 0.5")
    # round() guards against 0.29 * 100 == 28.999999999999996
    n_train = math.floor(round(float(train_portion) * n, 9))
    if n_train < 1 or n_train >= n:
        raise DataError(
            f"the search split of {n} images with train_portion {train_portion} leaves an empty half; "
            "use more data or a train_portion nearer 0.5"
        )
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n, generator=generator).tolist()
    return order[:n_train], order[n_train:]


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    workers: int = 2,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader with a generator seeded by ``seed`` (repeatable order) and sensible worker settings.

    In-memory data sets (``digits``) are read in the main process whatever ``workers`` says: starting
    worker processes costs more than they save. ``loader.generator`` can be saved and restored to
    resume mid-run.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    num_workers = 0 if _is_in_memory(dataset) else max(0, int(workers))
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        drop_last=drop_last,
    )


def build_search_loaders(
    name: str,
    root: str | Path | None,
    *,
    batch_size: int,
    train_portion: float = 0.5,
    seed: int = 0,
    workers: int = 2,
    rank: int = 0,
    world_size: int = 1,
    download: bool = True,
    generator_seed: int | None = None,
    pin_memory: bool = False,
) -> tuple[DataLoader, DataLoader, DatasetInfo]:
    """Loaders for the DARTS search: (weight loader, alpha loader, info).

    The training set of ``name`` with its train transform is split by :func:`search_split` (``seed``);
    with ``world_size`` > 1 each rank reads a disjoint shard of equal length of each half
    (``half[rank::world_size]`` truncated). Both loaders shuffle every epoch with their own generator,
    seeded from ``generator_seed`` (default: ``seed``) and the rank, so a run is repeatable.
    The last batch is dropped when a shard holds at least one full batch.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise DataError(f"rank {rank} is not in a world of size {world_size}; pass 0 <= rank < world_size")
    dataset, info = _load_train_once_per_node(name, root, download=download, rank=rank, world_size=world_size)
    weight_idx, alpha_idx = search_split(len(dataset), train_portion, seed)
    base = seed if generator_seed is None else generator_seed
    loaders = []
    for which, half in enumerate((weight_idx, alpha_idx)):
        part = shard(half, rank, world_size)
        shard_len = len(part)
        if shard_len < 1:
            raise DataError(
                f"the search split of {len(dataset)} images leaves no images for each of {world_size} "
                "processes; use more data or fewer processes"
            )
        loaders.append(
            make_loader(
                Subset(dataset, part),
                batch_size=batch_size,
                shuffle=True,
                seed=_derive_seed(base, rank, which),
                workers=workers,
                drop_last=shard_len >= batch_size,
                pin_memory=pin_memory,
            )
        )
    logger.debug(
        "search split of %s: %d weight / %d alpha images, rank %d of %d reads %d / %d",
        name, len(weight_idx), len(alpha_idx), rank, world_size,
        len(loaders[0].dataset), len(loaders[1].dataset),  # type: ignore[arg-type]
    )
    return loaders[0], loaders[1], info


class Cutout:
    """Cutout (DeVries & Taylor, 2017) on a [C, H, W] tensor: zero one ``length`` x ``length`` square,
    centred anywhere in the image (clipped at the border). Draws from torch's RNG."""

    def __init__(self, length: int) -> None:
        if length < 1:
            raise DataError(f"cutout length must be at least 1, got {length}")
        self.length = int(length)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        cy = int(torch.randint(h, ()).item())
        cx = int(torch.randint(w, ()).item())
        half = self.length // 2
        y0, y1 = max(cy - half, 0), min(cy + half, h)
        x0, x1 = max(cx - half, 0), min(cx + half, w)
        img = img.clone()
        img[..., y0:y1, x0:x1] = 0.0
        return img

    def __repr__(self) -> str:
        return f"Cutout(length={self.length})"


# --------------------------------------------------------------------------- digits

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 300
DIGITS_INFO = DatasetInfo(
    name="digits",
    num_classes=10,
    channels=1,
    image_size=8,
    # of all 1797 images scaled to [0, 1]: 0.30526, 0.37605
    mean=(0.3053,),
    std=(0.3760,),
    cutout_length=0,
    auxiliary=False,
)


class DigitsDataset(Dataset):
    """An in-memory image data set: float32 images [N, C, H, W] and int64 labels. Samples are
    ``(image, label)`` with ``label`` a Python int, as torchvision data sets give them."""

    in_memory = True

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, classes: Sequence[str]) -> None:
        if images.shape[0] != targets.shape[0]:
            raise ValueError("images and targets differ in length")
        self.images = images
        self.targets = targets
        self.classes = list(classes)
        self.transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])


def _digits_load(root: Path | None, split: str, transform: str, download: bool) -> tuple[Dataset, DatasetInfo]:
    """scikit-learn's 1797 8x8 digits, no download. A fixed split (a permutation seeded with 0): the
    first 1497 images are ``train``, the last 300 ``test``. Images are [1, 8, 8] float32, scaled to
    [0, 1] and normalised; no augmentation (8x8 is too small to crop), so the train and test
    transforms are the same."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise DataError(f"the digits data set needs scikit-learn ({exc}); pip install scikit-learn") from None
    bunch = load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0).unsqueeze(1)
    targets = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    n_train = len(targets) - DIGITS_TEST_SIZE
    idx = order[:n_train] if split == "train" else order[n_train:]
    images, targets = images[idx].contiguous(), targets[idx].contiguous()
    if transform != "none":
        mean = torch.tensor(DIGITS_INFO.mean).view(-1, 1, 1)
        std = torch.tensor(DIGITS_INFO.std).view(-1, 1, 1)
        images = (images - mean) / std
    return DigitsDataset(images, targets, [str(d) for d in range(10)]), DIGITS_INFO


DATASETS.register("digits", DatasetBuilder(info=lambda root: DIGITS_INFO, load=_digits_load, in_memory=True))


# --------------------------------------------------------------------------- CIFAR


def _cifar_transform(info: DatasetInfo, transform: str):
    from torchvision import transforms as T

    if transform == "none":
        return None
    normalize = [T.ToTensor(), T.Normalize(info.mean, info.std)]
    if transform == "test":
        return T.Compose(normalize)
    size = info.image_size
    return T.Compose([T.RandomCrop(size, padding=size // 8, pad_if_needed=True), T.RandomHorizontalFlip()]
                     + _autoaugment(transform, small=True) + normalize)


def _autoaugment(transform: str, *, small: bool) -> list:
    """torchvision's AutoAugment (on PIL images, before ToTensor) when asked for."""
    if transform != "autoaugment":
        return []
    from torchvision import transforms as T

    policy = T.AutoAugmentPolicy.CIFAR10 if small else T.AutoAugmentPolicy.IMAGENET
    return [T.AutoAugment(policy)]


def _cifar_builder(name: str, pretty: str, num_classes: int, mean, std, archive_hint: str) -> DatasetBuilder:
    info = DatasetInfo(
        name=name, num_classes=num_classes, channels=3, image_size=32, mean=mean, std=std,
        cutout_length=16, auxiliary=True,
    )

    def load(root: Path | None, split: str, transform: str, download: bool) -> tuple[Dataset, DatasetInfo]:
        from torchvision import datasets

        cls = datasets.CIFAR10 if num_classes == 10 else datasets.CIFAR100
        if root is None:
            raise DataError(f"{pretty} needs a data folder; pass --data DIR with the extracted {archive_hint} data")
        folder = root / cls.base_folder
        if not _cifar_present(root, cls):
            reason = _try_download(
                download, cls.url, root, [root / cls.filename, root / cls.base_folder],
                lambda: cls(str(root), train=True, download=True))
            if reason is not None:
                raise DataError(
                    f"{pretty} not found in {root} (looked for {folder}) and {reason}; pass --data DIR with the "
                    f"extracted {archive_hint} data, or use --dataset imagefolder for a JPEG copy"
                )
        try:
            dataset = cls(str(root), train=(split == "train"), transform=_cifar_transform(info, transform),
                          download=False)
        except Exception as exc:  # torchvision raises RuntimeError on a checksum mismatch
            raise DataError(
                f"{pretty} in {folder} is corrupted or unreadable ({exc}); delete it and pass --data DIR with a "
                f"fresh copy of the {archive_hint} data"
            ) from None
        return dataset, info

    return DatasetBuilder(info=lambda root: info, load=load)


def _cifar_present(root: Path, cls: Any) -> bool:
    folder = root / cls.base_folder
    names = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return folder.is_dir() and all((folder / f).is_file() for f in names)


def _try_download(download: bool, url: str, root: Path, leftovers: list[Path],
                  fetch: Callable[[], Any]) -> str | None:
    """Download a torchvision data set into ``root`` with ``fetch()`` if ``download``. Returns None on success,
    else why there is none.

    Fails fast when ``url``'s host cannot be reached, and leaves nothing behind that it created."""
    if not download:
        return "download=False"
    host = urllib.parse.urlparse(url).hostname or ""
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in urllib.request.getproxies():
        try:
            socket.create_connection((host, 443 if scheme == "https" else 80), timeout=5).close()
        except OSError:
            return f"the download failed ({host} unreachable: no network?)"
    created = _first_missing_ancestor(root)
    leftovers = [p for p in leftovers if not p.exists()]
    logger.info("downloading %s into %s", url, root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fetch()
        return None
    except Exception as exc:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        else:
            for path in leftovers:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.exists():
                    path.unlink()
        return f"the download failed ({type(exc).__name__}: {_one_line(exc)})"


DATASETS.register("cifar10", _cifar_builder(
    "cifar10", "CIFAR-10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "cifar-10-python"))
DATASETS.register("cifar100", _cifar_builder(
    "cifar100", "CIFAR-100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "cifar-100-python"))


# --------------------------------------------------------------------------- MNIST, Fashion-MNIST


def _mnist_builder(name: str, pretty: str, cls_name: str, mean: float, std: float, flip: bool) -> DatasetBuilder:
    """torchvision's MNIST-family reader: ``DIR/<MNIST|FashionMNIST>/raw/*-ubyte`` (pt.darts' layout), 1-channel
    28x28, with pt.darts' normalisation and augmentation (a random affine, plus a vertical flip for
    Fashion-MNIST)."""
    info = DatasetInfo(name=name, num_classes=10, channels=1, image_size=28, mean=(mean,), std=(std,),
                       cutout_length=16, auxiliary=False)  # 7x7 after two reductions: no auxiliary head

    def transform_of(kind: str):
        from torchvision import transforms as T

        if kind == "none":
            return None
        normalize = [T.ToTensor(), T.Normalize(info.mean, info.std)]
        if kind == "test":
            return T.Compose(normalize)
        augment = [T.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=0.1)]
        return T.Compose(augment + ([T.RandomVerticalFlip()] if flip else []) + normalize)

    def load(root: Path | None, split: str, transform: str, download: bool) -> tuple[Dataset, DatasetInfo]:
        from torchvision import datasets

        cls = getattr(datasets, cls_name)
        if root is None:
            raise DataError(f"{pretty} needs a data folder; pass --data DIR (it reads DIR/{cls_name}/raw)")
        raw = root / cls_name / "raw"
        files = [raw / Path(f).stem for f, _ in cls.resources]  # the uncompressed idx files
        if not all(f.is_file() for f in files):
            reason = _try_download(
                download, cls.mirrors[0] + cls.resources[0][0], root, [root / cls_name],
                lambda: cls(str(root), train=True, download=True))
            if reason is not None:
                raise DataError(
                    f"{pretty} not found in {root} (looked for {raw}/{files[0].name} and the other idx files) and "
                    f"{reason}; pass --data DIR holding {cls_name}/raw/ with the four uncompressed idx files"
                )
        try:
            dataset = cls(str(root), train=(split == "train"), transform=transform_of(transform), download=False)
        except Exception as exc:  # a truncated or foreign idx file
            raise DataError(f"{pretty} in {raw} is unreadable ({_one_line(exc)}); replace its idx files") from None
        return dataset, info

    return DatasetBuilder(info=lambda root: info, load=load)


DATASETS.register("mnist", _mnist_builder("mnist", "MNIST", "MNIST", 0.13066051707548254, 0.30810780244715075,
                                          flip=False))
DATASETS.register("fashionmnist", _mnist_builder("fashionmnist", "Fashion-MNIST", "FashionMNIST",
                                                 0.28604063146254594, 0.35302426207299326, flip=True))


# --------------------------------------------------------------------------- image folders


def _check_folder(name: str, root: Path | None) -> Path:
    if root is None:
        raise DataError(f"{name} needs a data folder; pass --data DIR holding train/ and val/ (or test/) class folders")
    train = root / "train"
    if not train.is_dir():
        raise DataError(
            f"{name}: no train/ folder in {root} (looked for {train}); pass --data DIR holding train/ and val/ "
            "(or test/) class folders"
        )
    return train


def _class_folders(train: Path) -> list[str]:
    from torchvision.datasets.folder import find_classes

    try:
        return find_classes(str(train))[0]
    except FileNotFoundError:
        raise DataError(
            f"no class folders in {train}; put the images of each class in a folder of its own (train/<class>/...)"
        ) from None


def _first_image_size(train: Path, classes: list[str]) -> tuple[int, int]:
    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS

    for cls in classes:
        files = sorted(e.name for e in os.scandir(train / cls) if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS))
        if files:
            path = train / cls / files[0]
            try:
                with Image.open(path) as im:
                    return im.size
            except OSError as exc:
                raise DataError(f"cannot read image {path} ({_one_line(exc)}); remove or replace it") from None
    raise DataError(
        f"no images in the class folders of {train} (looked for {', '.join(IMG_EXTENSIONS)}); put images in "
        "train/<class>/"
    )


def _imagefolder_info(root: Path | None) -> DatasetInfo:
    train = _check_folder("imagefolder", root)
    classes = _class_folders(train)
    w, h = _first_image_size(train, classes)
    side = min(w, h)
    small = side <= 64
    return DatasetInfo(
        name="imagefolder",
        num_classes=len(classes),
        channels=3,
        image_size=side if small else 224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        cutout_length=16 if small else 0,
        auxiliary=side >= 32,
    )


def _imagenet_info(root: Path | None) -> DatasetInfo:
    if root is None:
        num_classes = 1000
    else:
        num_classes = len(_class_folders(_check_folder("imagenet", root)))
    return DatasetInfo(
        name="imagenet", num_classes=num_classes, channels=3, image_size=224, mean=IMAGENET_MEAN,
        std=IMAGENET_STD, cutout_length=0, auxiliary=True,
    )


def _folder_transform(info: DatasetInfo, transform: str):
    """Small images (<= 64 px): CIFAR-style pad-and-crop; larger ones: the ImageNet recipe at 224."""
    from torchvision import transforms as T

    if transform == "none":
        return None
    normalize = [T.ToTensor(), T.Normalize(info.mean, info.std)]
    size = info.image_size
    if size < 224:  # the small-image path; a centre crop makes images of other sizes batchable
        if transform == "test":
            return T.Compose([T.CenterCrop(size)] + normalize)
        return T.Compose([T.RandomCrop(size, padding=size // 8, pad_if_needed=True), T.RandomHorizontalFlip()]
                         + _autoaugment(transform, small=True) + normalize)
    if transform == "test":
        return T.Compose([T.Resize(256), T.CenterCrop(224)] + normalize)
    return T.Compose([
        T.RandomResizedCrop(224),
        T.RandomHorizontalFlip(),
        T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2),
    ] + _autoaugment(transform, small=False) + normalize)


def _folder_builder(name: str, info_fn: Callable[[Path | None], DatasetInfo]) -> DatasetBuilder:
    def load(root: Path | None, split: str, transform: str, download: bool) -> tuple[Dataset, DatasetInfo]:
        from torchvision.datasets import ImageFolder

        info = info_fn(root)  # checks root and train/
        assert root is not None
        if split == "train":
            folder = root / "train"
        else:
            candidates = [root / "val", root / "test"]
            folder = next((c for c in candidates if c.is_dir()), None)
            if folder is None:
                raise DataError(
                    f"{name}: no val/ or test/ folder in {root} (looked for {candidates[0]} and {candidates[1]}); "
                    "add one with the same class folders as train/"
                )
        try:
            dataset = ImageFolder(str(folder), transform=_folder_transform(info, transform))
        except FileNotFoundError as exc:
            raise DataError(f"{name}: {_one_line(exc)} (in {folder}); every class folder needs images") from None
        if split != "train":
            train_classes = _class_folders(root / "train")
            if dataset.classes != train_classes:
                raise DataError(
                    f"{name}: the class folders of {folder} differ from those of {root / 'train'}; "
                    "give both the same class folders"
                )
        return dataset, info

    return DatasetBuilder(info=info_fn, load=load)


DATASETS.register("imagefolder", _folder_builder("imagefolder", _imagefolder_info))
DATASETS.register("imagenet", _folder_builder("imagenet", _imagenet_info))


# --------------------------------------------------------------------------- helpers


def _as_path(root: str | Path | None) -> Path | None:
    return None if root is None else Path(root).expanduser().resolve()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _first_missing_ancestor(path: Path) -> Path | None:
    """The top-most folder of ``path`` (itself included) that does not exist yet, or None."""
    missing = None
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing = p
    return missing


def _derive_seed(base: int, rank: int, which: int) -> int:
    """An independent seed per (base seed, rank, loader)."""
    return int(np.random.SeedSequence([int(base) & 0xFFFFFFFF, int(rank), int(which)]).generate_state(1)[0])


def _is_in_memory(dataset: Dataset) -> bool:
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return bool(getattr(dataset, "in_memory", False))


class _TransformedDataset(Dataset):
    """Applies one more transform to the images of a data set (keeps ``in_memory``)."""

    def __init__(self, dataset: Dataset, transform: Callable) -> None:
        self.dataset = dataset
        self.transform = transform
        self.in_memory = _is_in_memory(dataset)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        return self.transform(image), target

    def __getattr__(self, name: str):  # classes, targets, ... of the wrapped data set
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def _with_extra_transform(dataset: Dataset, transform: Callable) -> Dataset:
    return _TransformedDataset(dataset, transform)


def _load_train_once_per_node(
    name: str, root: str | Path | None, *, download: bool, rank: int, world_size: int
) -> tuple[Dataset, DatasetInfo]:
    """Load the training split; in an initialised process group rank 0 loads (and downloads) first."""
    dist = torch.distributed
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        error: DataError | None = None
        result = None
        if rank == 0:
            try:
                result = load_split(name, root, "train", transform="train", download=download)
            except DataError as exc:
                error = exc
        dist.barrier()
        if error is not None:
            raise error
        if rank != 0:
            result = load_split(name, root, "train", transform="train", download=False)
        assert result is not None
        return result
    return load_split(name, root, "train", transform="train", download=download)
