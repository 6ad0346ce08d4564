"""Data sets, their presets and transforms, and the DARTS search split (the built-in data sets are in
``builtin.py``).

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..errors import DartsNASError, DataError
from ..registry import Registry

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
    load: Callable[[Path | None, str, str, bool], tuple[Dataset, DatasetInfo]]
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
    return CountingLoader(
        dataset,
        collate_fn=skip_unreadable,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        drop_last=drop_last,
    )


MAX_UNREADABLE = 0.5  # a batch with more unreadable images than this share stops the run


class CountingLoader(DataLoader):
    """A DataLoader that counts the images its collation left out as unreadable (``unreadable``, since it was
    made): each batch is that many images short of what the sampler asked for. Counted in the process that
    iterates, so it holds with worker processes too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unreadable = 0

    def __iter__(self) -> Iterator[Any]:
        return self._counted(super().__iter__())

    def _counted(self, batches: Iterator[Any]) -> Iterator[Any]:
        size = self.batch_size
        total = len(self.sampler) if size is not None and hasattr(self.sampler, "__len__") else None
        try:
            if total is None:  # no length to count against (an iterable data set)
                yield from batches
                return
            for i, batch in enumerate(batches):
                asked = size if self.drop_last else min(size, total - i * size)
                self.unreadable += max(0, asked - len(batch[-1]))  # [images, labels]
                yield batch
        except DartsNASError as e:  # from a worker process, torch wraps it in a traceback: the message alone
            raise type(e)(worker_message(str(e))) from None


def worker_message(message: str) -> str:
    """The original message of an error that a DataLoader worker raised (torch re-raises it with the worker's
    whole traceback as its text); other messages unchanged."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    if len(lines) < 2 or "DataLoader worker process" not in lines[0]:
        return message
    last = lines[-1]  # "package.module.ErrorType: the message"
    head, sep, rest = last.partition(": ")
    return rest if sep and " " not in head else last


def skip_unreadable(batch: list) -> Any:
    """The default collation, without the images an image folder could not read (None; each was named in a
    warning); a batch that is mostly unreadable means a broken data folder: one clear error."""
    from torch.utils.data import default_collate

    good = [item for item in batch if item is not None]
    if len(good) < len(batch) * (1 - MAX_UNREADABLE) or not good:
        raise DataError(f"{len(batch) - len(good)} of the {len(batch)} images of a batch could not be read (the "
                        "warnings name them); check or replace the data folder")
    return default_collate(good)


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


from . import builtin  # noqa: E402,F401  (registers digits, CIFAR, MNIST, image folders)
from .builtin import DigitsDataset  # noqa: E402
