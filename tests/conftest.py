"""Shared fixtures. ``cifar10_small``: a few hundred real CIFAR-10 images from ../shared/data."""
from __future__ import annotations

import tarfile
from collections import Counter
from pathlib import Path

import pytest

CIFAR10_JPG = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"


def extract_cifar10_subset(archive: Path, dest: Path, *, train_per_class: int = 20, test_per_class: int = 5) -> Path:
    """Extract the first ``train_per_class`` / ``test_per_class`` JPEGs of each class of the CIFAR-10
    ImageFolder archive (``train/<class>/NNNN.jpg``, ``test/<class>/NNNN.jpg``) into ``dest``.

    Streams the archive once and stops as soon as every quota is met (the test images come last, so
    this reads the whole archive, about half a second of decompression)."""
    quota = {"train": train_per_class, "test": test_per_class}
    taken: Counter[tuple[str, str]] = Counter()
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 3 or parts[0] not in quota or ".." in parts:
                continue
            key = (parts[0], parts[1])
            if taken[key] >= quota[parts[0]]:
                continue
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
            taken[key] += 1
            test_classes = [k for k in taken if k[0] == "test"]
            if len(test_classes) == 10 and all(taken[k] >= test_per_class for k in test_classes):
                break
    return dest


@pytest.fixture(scope="session")
def cifar10_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a small CIFAR-10 ImageFolder copy (20 train + 5 test images per class); skips without the archive."""
    if not CIFAR10_JPG.is_file():
        pytest.skip(f"real CIFAR-10 copy not found at {CIFAR10_JPG} (the ../shared/data folder of this project)")
    return extract_cifar10_subset(CIFAR10_JPG, tmp_path_factory.mktemp("cifar10_small"))
