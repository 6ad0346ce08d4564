"""The built-in data sets: scikit-learn's digits, CIFAR-10/100, MNIST and Fashion-MNIST, image folders and
ImageNet, each registered in ``DATASETS`` with its preset, transforms and one-line errors for missing or
damaged files."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from . import DATASETS, IMAGENET_MEAN, IMAGENET_STD, DatasetBuilder, DatasetInfo, _first_missing_ancestor, _one_line

logger = logging.getLogger(__name__)


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
            _download_or_fail(download, cls.url, root, [root / cls.filename, root / cls.base_folder],
                              lambda: cls(str(root), train=True, download=True),
                              f"{pretty} not found in {root} (looked for {folder})",
                              f"pass --data DIR with the extracted {archive_hint} data, or use --dataset imagefolder "
                              "for a JPEG copy")
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


def _download_or_fail(download: bool, url: str, root: Path, leftovers: list[Path], fetch: Callable[[], Any],
                      missing: str, advice: str) -> None:
    """Download with ``_try_download``, or raise one DataError: what is ``missing``, why no download, ``advice``."""
    reason = _try_download(download, url, root, leftovers, fetch)
    if reason is not None:
        raise DataError(f"{missing} and {reason}; {advice}")


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
            _download_or_fail(download, cls.mirrors[0] + cls.resources[0][0], root, [root / cls_name],
                              lambda: cls(str(root), train=True, download=True),
                              f"{pretty} not found in {root} (looked for {raw}/{files[0].name} and the other idx "
                              "files)",
                              f"pass --data DIR holding {cls_name}/raw/ with the four uncompressed idx files")
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
        files = sorted(e.name for e in os.scandir(train / cls)
                       if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS))
        if files:
            path = train / cls / files[0]
            try:
                with Image.open(path) as im:
                    return im.size
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
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


def _read_image(path: str) -> Any:
    """An RGB image, or None (with a warning naming the file) when it cannot be read: truncated, corrupt, not an
    image, or larger than PIL's decompression-bomb limit."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        logger.warning("skipping unreadable image %s: %s", path, _one_line(e))
        return None


def _tolerant_image_folder(folder: Path, transform: Any) -> Dataset:
    """torchvision's ImageFolder whose unreadable images come out as None, for ``skip_unreadable`` to drop."""
    from torchvision.datasets import ImageFolder

    class TolerantImageFolder(ImageFolder):
        def __getitem__(self, index: int) -> Any:
            path, target = self.samples[index]
            image = self.loader(path)
            if image is None:
                return None
            return (self.transform(image) if self.transform is not None else image), target

    return TolerantImageFolder(str(folder), transform=transform, loader=_read_image)


def _folder_builder(name: str, info_fn: Callable[[Path | None], DatasetInfo]) -> DatasetBuilder:
    def load(root: Path | None, split: str, transform: str, download: bool) -> tuple[Dataset, DatasetInfo]:
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
            dataset = _tolerant_image_folder(folder, _folder_transform(info, transform))
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
