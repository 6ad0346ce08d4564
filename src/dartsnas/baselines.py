"""Search spaces around handcrafted networks (D-DARTS): cells whose alphas start on a ResNet or Xception
block, with extra candidate ops to move to.

Each baseline is a cell design in our cell format (inputs c_{k-2}, c_{k-1}; intermediate nodes; the output is
the last node alone, ``multiplier`` 1), reproduced exactly when the alphas pick the baseline's ops on the
baseline's edges and ``none`` elsewhere:

- ``resnet18``: node 0 = conv_3x3(c_{k-1}); node 1 = conv_3x3(node 0) + c_{k-1} (the basic block);
- ``resnet50``: node 0 = conv_1x1(c_{k-1}); node 1 = conv_3x3(node 0); node 2 = conv_1x1(node 1) + c_{k-1}
  (the bottleneck, at constant width: every op keeps C channels);
- ``xception``: three separable convolutions in a row plus the skip (a middle-flow module).

The convolutions are pre-activation (ReLU, conv, BN), as every DARTS op is, and a cell's two inputs pass
through DARTS's 1x1 preprocessing; a reduction cell runs its first node's op at stride 2 and its skip as a
factorized reduce. The search starts from the baseline: each edge's baseline op (or ``none`` on edges the
baseline lacks) gets alpha ``strength`` above the others, so the first genotype is the baseline, and derivation
defaults to ``threshold-edge`` at 0.5 (the ops whose weight reaches one half), which can drop or add edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .genotype import CellDesign, Genotype, gene_matrix, sparse_design

BASELINE_DESIGNS: dict[str, tuple[tuple[tuple[tuple[str, int], ...], ...], tuple[str, ...]]] = {
    "resnet18": (((("conv_3x3", 1),), (("conv_3x3", 2), ("skip_connect", 1))),
                 ("none", "skip_connect", "conv_3x3", "conv_1x1", "sep_conv_3x3", "dil_conv_3x3", "max_pool_3x3")),
    "resnet50": (((("conv_1x1", 1),), (("conv_3x3", 2),), (("conv_1x1", 3), ("skip_connect", 1))),
                 ("none", "skip_connect", "conv_1x1", "conv_3x3", "sep_conv_3x3", "dil_conv_3x3", "max_pool_3x3")),
    "xception": (((("xsep_conv_3x3", 1),), (("xsep_conv_3x3", 2),), (("xsep_conv_3x3", 3), ("skip_connect", 1))),
                 ("none", "skip_connect", "xsep_conv_3x3", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
                  "max_pool_3x3")),
}


def baseline_genotype(name: str) -> Genotype:
    """The untouched baseline as a genotype (the same block in normal and reduction cells)."""
    nodes, primitives = BASELINE_DESIGNS[name]
    last = 2 + len(nodes) - 1
    normal = CellDesign(nodes=nodes, concat=(last,), reduction=False)
    reduce = CellDesign(nodes=nodes, concat=(last,), reduction=True)
    return Genotype(normal=normal, reduce=reduce, primitives=primitives)


def baseline_alphas(design: CellDesign, primitives, strength: float = 4.0) -> np.ndarray:
    """Initial alphas ``[edges, ops]`` that pick ``design``: its op on each of its edges, ``none`` elsewhere,
    ``strength`` above every other op (under a softmax over 7 ops, 4 gives the chosen op a weight of 0.9)."""
    prims = list(primitives)
    nodes = len(design.nodes)
    edges = sum(2 + i for i in range(nodes))
    alphas = np.zeros((edges, len(prims)), dtype=np.float32)
    start = 0
    for i, pairs in enumerate(design.nodes):
        chosen = {j: op for op, j in pairs}
        for j in range(2 + i):
            alphas[start + j, prims.index(chosen.get(j, "none"))] = strength
        start += 2 + i
    return alphas


# -- D-DARTS' DARTOpti baselines ------------------------------------------------------------------------------
# Whole networks, as D-DARTS' genotypes.py writes them (Genotype_opt): distinct cell designs (`genes`, in its
# (op, to, from) form), the design of each cell position (`seq`), the reduction positions and the nodes per cell
# (its concat[-1] - 1). The architectures are published facts; the lists are D-DARTS'.
_RESIDUAL_SIMPLE = [("simple_conv_3x3", 2, 0), ("simple_conv_3x3", 3, 2), ("skip_connect", 3, 0),
                    ("simple_conv_3x3", 4, 3), ("simple_conv_3x3", 5, 4), ("skip_connect", 5, 3)]
_RESIDUAL = [("bottleneck_1x3x1", 2, 0), ("skip_connect", 2, 0), ("bottleneck_1x3x1", 3, 2), ("skip_connect", 3, 2),
             ("bottleneck_1x3x1", 4, 3), ("skip_connect", 4, 3)]
_MORE = [("bottleneck_1x3x1", 5, 4), ("skip_connect", 5, 4), ("bottleneck_1x3x1", 6, 5), ("skip_connect", 6, 5),
         ("bottleneck_1x3x1", 7, 6), ("skip_connect", 7, 6)]
DARTOPTI_BASELINES: dict[str, tuple[list[list[tuple[str, int, int]]], list[int], tuple[int, ...], int]] = {
    "resnet18": ([_RESIDUAL_SIMPLE], [0] * 4, (1, 2, 3), 4),
    "resnet50": ([_RESIDUAL, _RESIDUAL + _MORE[:2], _RESIDUAL + _MORE], [0, 1, 2, 0], (1, 2, 3), 6),
    "xception": ([[("simple_conv_1x1", 4, 0), ("sep_conv_3x3", 2, 0), ("sep_conv_3x3", 3, 2), ("max_pool_3x3", 4, 3)],
                  [("skip_connect", 4, 0), ("sep_conv_3x3", 2, 0), ("sep_conv_3x3", 3, 2), ("sep_conv_3x3", 4, 3)],
                  [("sep_conv_3x3", 2, 0), ("sep_conv_3x3", 3, 2)]],
                 [0] * 3 + [1] * 8 + [0] + [2], (1, 2, 11, 12), 4),
}


@dataclass(frozen=True)
class CellLayout:
    """A supernet whose cells follow a handcrafted network (D-DARTS' DARTOpti): cell ``i`` has the design
    ``genes[seq[i]]`` and reduces if ``i`` is in ``reductions``; cells sharing a ``seq`` index share one set of
    alphas, which start on that design."""

    name: str
    genes: tuple[CellDesign, ...]
    seq: tuple[int, ...]
    reductions: tuple[int, ...]

    def genotype(self) -> Genotype:
        """The baseline network as a per-position genotype (one cell per entry of ``seq``)."""
        from dataclasses import replace

        return Genotype(cells=tuple(replace(self.genes[g], reduction=i in self.reductions)
                                    for i, g in enumerate(self.seq)))

    def gene_genotype(self) -> Genotype:
        """One cell per distinct design (what D-DARTS compares its metric on)."""
        return Genotype(cells=self.genes)


def dartopti_layout(name: str) -> CellLayout:
    """D-DARTS' ``ResNet18``, ``ResNet50`` or ``Xception`` baseline (case-insensitive)."""
    genes, seq, reductions, nodes = DARTOPTI_BASELINES[name.lower()]
    return CellLayout(name=name.lower(), genes=tuple(sparse_design(g, nodes=nodes) for g in genes), seq=tuple(seq),
                      reductions=reductions)


def layout_alphas(design: CellDesign, primitives, nodes: int, value: float = 10.0) -> np.ndarray:
    """D-DARTS' starting alphas ``[edges, ops]``: ``value`` at each gene's edge and op, 0 elsewhere (its
    ``deserialize_architecture_to_alphas``; under sigmoid gates the baseline's ops start near 1, the others
    at 0.5)."""
    return gene_matrix(design, primitives, nodes).astype(np.float32) * value


__all__ = ["BASELINE_DESIGNS", "CellLayout", "DARTOPTI_BASELINES", "baseline_alphas", "baseline_genotype",
           "dartopti_layout", "layout_alphas"]


def _register_published() -> None:
    """The untouched baselines by name, for ``dartsnas train --genotype RESNET18_BASELINE`` (a sanity check)."""
    from .genotype import PUBLISHED

    for name in BASELINE_DESIGNS:
        key = f"{name.upper()}_BASELINE"
        if key not in PUBLISHED:
            PUBLISHED.register(key, baseline_genotype(name))


_register_published()
