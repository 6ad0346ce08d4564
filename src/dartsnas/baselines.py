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

import numpy as np

from .genotype import CellDesign, Genotype

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


__all__ = ["BASELINE_DESIGNS", "baseline_alphas", "baseline_genotype"]


def _register_published() -> None:
    """The untouched baselines by name, for ``dartsnas train --genotype RESNET18_BASELINE`` (a sanity check)."""
    from .genotype import PUBLISHED

    for name in BASELINE_DESIGNS:
        key = f"{name.upper()}_BASELINE"
        if key not in PUBLISHED:
            PUBLISHED.register(key, baseline_genotype(name))


_register_published()
