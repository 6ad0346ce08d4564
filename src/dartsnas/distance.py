"""Architecture distance: how many edits turn one genotype's cells into another's.

D-DARTS compares searched cells with a distance between architectures; this is ours, stated exactly.

A cell is read as the *set* of its ``(node, input, op)`` triples plus its ``concat`` set; the order of the
pairs inside a node and repeated pairs do not matter. Group the triples by edge ``e = (node, input)``, with
``ops(e)`` the (possibly empty) set of ops on that edge, and define

    d_e(a, b)    = max(|ops_a(e) - ops_b(e)|, |ops_b(e) - ops_a(e)|)
    distance     = sum over edges e of d_e(a, b) + |concat_a symmetric-difference concat_b|
    size         = |triples_a union triples_b| + |concat_a union concat_b|
    normalized   = distance / size, in [0, 1]

so swapping the op of one edge counts 1, adding an edge (or one more op on an edge) counts 1, moving an edge
to another input counts 2 (one removed, one added), and a state entering or leaving ``concat`` counts 1. An
edge that only one cell has counts as many as the ops it carries (1 in a DARTS cell, where an edge carries one
op); counting it 1 whatever its ops would break the triangle inequality once an edge can carry several ops
(``{x, y, z}`` -> no edge -> ``{u, v, w}`` would cost 1 + 1, less than the direct change's 3).
``d_e`` is the maximum of the two one-sided set differences, a metric on finite sets, so ``distance`` is a
metric on cells: 0 iff the triples and concat agree, symmetric, and obeying the triangle inequality.

The ``reduction`` flag is not counted: cells are compared at the same position, and a DARTS genotype is
expanded to a per-cell one by position (its reduce design where the other genotype has a reduction cell).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, GenotypeError
from .genotype import CellDesign, Genotype, gene_matrix, is_dir, load_genotype

__all__ = ["OP_WEIGHTS", "architecture_distance", "cell_distance", "cell_hausdorff", "cell_size", "format_distance",
           "hausdorff_metric", "resolve_architecture"]

Edge = tuple[int, int]


def _edge_ops(design: CellDesign) -> dict[Edge, frozenset[str]]:
    """``{(node, input): ops}``: the cell as a set of triples, grouped by edge."""
    edges: dict[Edge, set[str]] = defaultdict(set)
    for node, pairs in enumerate(design.nodes):
        for op, src in pairs:
            edges[(node, src)].add(op)
    return {e: frozenset(ops) for e, ops in edges.items()}


def cell_distance(a: CellDesign, b: CellDesign) -> int:
    """Edit distance between two cells (module docstring): per edge the larger one-sided op difference, plus
    the symmetric difference of the concat sets."""
    ea, eb = _edge_ops(a), _edge_ops(b)
    empty: frozenset[str] = frozenset()
    edges = ea.keys() | eb.keys()
    ops = sum(max(len(ea.get(e, empty) - eb.get(e, empty)), len(eb.get(e, empty) - ea.get(e, empty))) for e in edges)
    return ops + len(set(a.concat) ^ set(b.concat))


def cell_size(a: CellDesign, b: CellDesign) -> int:
    """The normaliser of :func:`cell_distance`: distinct ``(node, input, op)`` triples of both cells plus the
    states in either concat. Never 0 (a cell has a node and a non-empty concat) and never below the distance."""
    ea, eb = _edge_ops(a), _edge_ops(b)
    empty: frozenset[str] = frozenset()
    triples = sum(len(ea.get(e, empty) | eb.get(e, empty)) for e in ea.keys() | eb.keys())
    return triples + len(set(a.concat) | set(b.concat))


def _pairs(a: Genotype, b: Genotype) -> list[tuple[str | int, CellDesign, CellDesign]]:
    """The cells to compare, labelled: normal/reduce for two DARTS genotypes, else by position."""
    if not a.is_per_cell() and not b.is_per_cell():
        assert a.normal and a.reduce and b.normal and b.reduce
        return [("normal", a.normal, b.normal), ("reduce", a.reduce, b.reduce)]
    if a.is_per_cell() and b.is_per_cell():
        assert a.cells is not None and b.cells is not None
        if len(a.cells) != len(b.cells):
            raise GenotypeError(
                f"cannot compare per-cell genotypes of {len(a.cells)} and {len(b.cells)} cells; "
                "the distance compares cells position by position, so both need the same number"
            )
        return [(i, x, y) for i, (x, y) in enumerate(zip(a.cells, b.cells))]
    # One DARTS genotype, one per-cell: the DARTS cells expanded to the per-cell one's positions.
    darts, per_cell = (a, b) if b.is_per_cell() else (b, a)
    assert darts.normal and darts.reduce and per_cell.cells is not None
    expanded = [darts.reduce if c.reduction else darts.normal for c in per_cell.cells]
    if a is darts:
        return [(i, x, y) for i, (x, y) in enumerate(zip(expanded, per_cell.cells))]
    return [(i, x, y) for i, (x, y) in enumerate(zip(per_cell.cells, expanded))]


def architecture_distance(a: Genotype, b: Genotype) -> dict[str, Any]:
    """Distance between two genotypes, cell by cell (see the module docstring).

    Two DARTS genotypes compare normal with normal and reduce with reduce; two per-cell genotypes compare
    position by position (same number of cells, else GenotypeError); a DARTS genotype against a per-cell one is
    first expanded to its positions. Returns ``{"distance", "normalized", "size", "cells": [{"cell",
    "distance", "size"}, ...]}``; ``normalized`` is the total distance over the total size.
    """
    for name, g in (("first", a), ("second", b)):
        if not isinstance(g, Genotype):
            raise TypeError(f"architecture_distance expects Genotypes, the {name} is a {type(g).__name__}")
    cells = [{"cell": label, "distance": cell_distance(x, y), "size": cell_size(x, y)} for label, x, y in _pairs(a, b)]
    distance = sum(c["distance"] for c in cells)
    size = sum(c["size"] for c in cells)
    return {"distance": distance, "normalized": distance / size, "size": size, "cells": cells}


def resolve_architecture(source: str | Path, epoch: int | None = None) -> Genotype:
    """The genotype ``source`` names: a run directory (a folder with config.yaml) gives its genotype.json, or
    with ``epoch`` its ``genotypes/epoch_NNN.json`` (search runs; epochs count from 1); anything else goes to
    :func:`load_genotype` (a genotype file, ``FILE::NAME`` or a published name)."""
    from .runs import RunDir  # runs imports torch; keep this module light

    path = Path(source)
    if not is_dir(path):
        if epoch is not None:
            raise ConfigError(f"an epoch applies to a run directory only; {source} is a genotype file or name")
        return load_genotype(source)
    run = RunDir.open(path)  # ConfigError when the folder has no config.yaml
    if epoch is None:
        if not run.genotype_path.is_file():
            saved = run.saved_epochs()
            hint = f"; pass an epoch (saved: {_span(saved)})" if saved else ""
            raise ConfigError(f"{run.genotype_path} does not exist: the run has no final genotype yet{hint}")
        return load_genotype(run.genotype_path)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ConfigError(f"epoch must be an integer >= 1 (epochs count from 1), got {epoch!r}")
    epoch_path = run.epoch_genotype_path(epoch)
    if not epoch_path.is_file():
        saved = run.saved_epochs()
        if not saved:
            raise ConfigError(f"{run.path} saved no per-epoch genotypes (a training run has only genotype.json); "
                              "leave out the epoch")
        raise ConfigError(f"{run.path} has no genotype for epoch {epoch}; saved epochs: {_span(saved)}")
    return load_genotype(epoch_path)


def _span(epochs: list[int]) -> str:
    """``1..5`` for a contiguous run of epochs, else the list."""
    if epochs == list(range(epochs[0], epochs[-1] + 1)) and len(epochs) > 2:
        return f"{epochs[0]}..{epochs[-1]}"
    return ", ".join(map(str, epochs))


def format_distance(result: dict[str, Any], name_a: str, name_b: str) -> str:
    """A short report of :func:`architecture_distance`'s result: the total, the normalised value, per cell."""
    lines = [
        f"distance {name_a} -> {name_b}: {result['distance']} edits "
        f"(normalized {result['normalized']:.3f} of {result['size']} triples and concat states)"
    ]
    width = max(len(str(c["cell"])) for c in result["cells"])
    for c in result["cells"]:
        lines.append(f"  cell {c['cell']!s:<{width}}  {c['distance']:>3} / {c['size']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# D-DARTS' architecture metric
# --------------------------------------------------------------------------------------------------

# D-DARTS' per-op weights (its op_stats.json: the median CIFAR-10 accuracy, in %, of a small ResNet-like
# network with that op in each position): a mismatch on a better op counts more. Ops it has no figure for
# weigh the mean of its figures.
OP_WEIGHTS: dict[str, float] = {
    "conv_3x1_1x3": 82.105830863444, "conv_7x1_1x7": 83.1591640991211, "max_pool_3x3": 82.13416411336264,
    "avg_pool_3x3": 81.56333073120116, "skip_connect": 81.34166406249999, "simple_conv_1x1": 81.49166413777668,
    "simple_conv_3x3": 82.30333082275389, "sep_conv_3x3": 83.39583075561525, "sep_conv_5x5": 84.97416410115558,
    "dil_conv_3x3": 82.73583073323566, "dil_conv_5x5": 82.89249749959309, "bottleneck_1x3x1": 82.87499756469727,
}


def _metric_columns(a: Genotype, b: Genotype) -> tuple[str, ...]:
    """The ops of the one-hot matrices: D-DARTS' twelve DARTOpti ops (its only columns) when they cover both
    genotypes, else the union of their primitives and ops, sorted."""
    from .ops.ddarts import DARTOPTI_PRIMITIVES

    used = set(a.ops()) | set(b.ops())
    if used <= set(DARTOPTI_PRIMITIVES):
        return DARTOPTI_PRIMITIVES
    return tuple(sorted(used | set(a.primitives) | set(b.primitives)))


def cell_hausdorff(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> float:
    """The symmetric Hausdorff distance between the rows of two one-hot matrices under the weighted Hamming
    distance (the weight of the ops where two rows differ, over the total weight)."""
    differ = a[:, None, :] != b[None, :, :]  # [rows of a, rows of b, ops]
    d = (differ * weights).sum(-1) / weights.sum()
    return float(max(d.min(axis=1).max(), d.min(axis=0).max()))


def hausdorff_metric(a: Genotype, b: Genotype) -> dict[str, Any]:
    """D-DARTS' architecture metric (``architecture_processing.py``): per cell the symmetric Hausdorff distance
    between the edge rows of the two one-hot matrices under a Hamming distance weighted by :data:`OP_WEIGHTS`,
    averaged over the cells. In [0, 1]. Cells are paired as :func:`architecture_distance` pairs them (D-DARTS
    zips a baseline's genes with the searched cells, comparing fewer cells when the baseline repeats one).
    Returns ``{"metric", "cells": [{"cell", "metric"}, ...]}``."""
    columns = _metric_columns(a, b)
    mean = float(np.mean(list(OP_WEIGHTS.values())))
    weights = np.array([OP_WEIGHTS.get(op, mean) for op in columns])
    cells = []
    for label, x, y in _pairs(a, b):
        nodes = max(len(x.nodes), len(y.nodes))
        value = cell_hausdorff(gene_matrix(x, columns, nodes), gene_matrix(y, columns, nodes), weights)
        cells.append({"cell": label, "metric": value})
    return {"metric": float(np.mean([c["metric"] for c in cells])), "cells": cells}
