"""Published genotypes by name (architectures are published facts; cells as their authors' code writes them)."""
from __future__ import annotations

from ..errors import GenotypeError
from ..registry import Registry
from .model import CellDesign, Genotype

PUBLISHED: Registry[Genotype] = Registry("published genotype")

_DARTS_CONCAT = [2, 3, 4, 5]

_PUBLISHED_CELLS: dict[str, tuple[list[tuple[str, int]], list[int], list[tuple[str, int]], list[int]]] = {
    # NASNet-A (Zoph et al., CVPR 2018), as written in quark0/darts cnn/genotypes.py
    "NASNet": (
        [("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 0), ("sep_conv_3x3", 0), ("avg_pool_3x3", 1),
         ("skip_connect", 0), ("avg_pool_3x3", 0), ("avg_pool_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 1)],
        [2, 3, 4, 5, 6],
        [("sep_conv_5x5", 1), ("sep_conv_7x7", 0), ("max_pool_3x3", 1), ("sep_conv_7x7", 0), ("avg_pool_3x3", 1),
         ("sep_conv_5x5", 0), ("skip_connect", 3), ("avg_pool_3x3", 2), ("sep_conv_3x3", 2), ("max_pool_3x3", 1)],
        [4, 5, 6],
    ),
    # AmoebaNet-A (Real et al., AAAI 2019), as written in quark0/darts cnn/genotypes.py
    "AmoebaNet": (
        [("avg_pool_3x3", 0), ("max_pool_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 2), ("sep_conv_3x3", 0),
         ("avg_pool_3x3", 3), ("sep_conv_3x3", 1), ("skip_connect", 1), ("skip_connect", 0), ("avg_pool_3x3", 1)],
        [4, 5, 6],
        [("avg_pool_3x3", 0), ("sep_conv_3x3", 1), ("max_pool_3x3", 0), ("sep_conv_7x7", 2), ("sep_conv_7x7", 0),
         ("avg_pool_3x3", 1), ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("conv_7x1_1x7", 0), ("sep_conv_3x3", 5)],
        [3, 4, 6],
    ),
    # DARTS first order (Liu, Simonyan & Yang, ICLR 2019): quark0/darts cnn/genotypes.py
    "DARTS_V1": (
        [("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1), ("skip_connect", 0),
         ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        _DARTS_CONCAT,
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0), ("max_pool_3x3", 0),
         ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
        _DARTS_CONCAT,
    ),
    # DARTS second order (Liu, Simonyan & Yang, ICLR 2019): quark0/darts cnn/genotypes.py
    "DARTS_V2": (
        [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 1),
         ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        _DARTS_CONCAT,
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1), ("max_pool_3x3", 0),
         ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
        _DARTS_CONCAT,
    ),
    # PC-DARTS searched on CIFAR-10 (Xu et al., ICLR 2020): yuhuixu1993/PC-DARTS genotypes.py
    "PC_DARTS_cifar": (
        [("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1), ("sep_conv_5x5", 0),
         ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
        _DARTS_CONCAT,
        [("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2), ("sep_conv_3x3", 0),
         ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)],
        _DARTS_CONCAT,
    ),
    # PC-DARTS searched on ImageNet (Xu et al., ICLR 2020): yuhuixu1993/PC-DARTS genotypes.py
    "PC_DARTS_image": (
        [("skip_connect", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 0), ("skip_connect", 1), ("sep_conv_3x3", 1),
         ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("dil_conv_5x5", 4)],
        _DARTS_CONCAT,
        [("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_5x5", 2), ("max_pool_3x3", 1), ("sep_conv_3x3", 2),
         ("sep_conv_3x3", 1), ("sep_conv_5x5", 0), ("sep_conv_3x3", 3)],
        _DARTS_CONCAT,
    ),
    # P-DARTS (Chen et al., ICCV 2019): chenxin061/pdarts genotypes.py
    "PDARTS": (
        [("skip_connect", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 1),
         ("sep_conv_3x3", 3), ("sep_conv_3x3", 0), ("dil_conv_5x5", 4)],
        _DARTS_CONCAT,
        [("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 2), ("max_pool_3x3", 0),
         ("dil_conv_3x3", 1), ("dil_conv_3x3", 1), ("dil_conv_5x5", 3)],
        _DARTS_CONCAT,
    ),
}


def _from_pairs(pairs: list[tuple[str, int]], concat: list[int], reduction: bool) -> CellDesign:
    """A design from the 2018 flat pair list: node i takes pairs 2i and 2i+1."""
    nodes = tuple(zip(pairs[0::2], pairs[1::2], strict=True))
    return CellDesign(nodes=nodes, concat=tuple(concat), reduction=reduction)


for _name, (_normal, _normal_concat, _reduce, _reduce_concat) in _PUBLISHED_CELLS.items():
    PUBLISHED.register(
        _name,
        Genotype(normal=_from_pairs(_normal, _normal_concat, False), reduce=_from_pairs(_reduce, _reduce_concat, True)),
    )
# quark0/darts cnn/genotypes.py: `DARTS = DARTS_V2`, the cell the paper evaluates.
PUBLISHED.register("DARTS", PUBLISHED.get("DARTS_V2"))


def published_genotype(name: str) -> Genotype:
    """The published genotype called ``name`` (e.g. ``DARTS_V2``); an unknown name lists the known ones."""
    if name not in PUBLISHED:
        raise GenotypeError(f"no published genotype named {name!r}; published: {', '.join(published_names())}")
    return PUBLISHED.get(name)


def published_names() -> list[str]:
    """Names of the published genotypes, sorted."""
    return sorted(PUBLISHED.names())
