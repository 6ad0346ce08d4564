"""Derivation: from architecture weights to a genotype, the one place the rules live. ``derive_cell`` reads a
cell off gated weights by the DARTS top-k rule or D-DARTS' threshold rules; ``derive_from_gates`` goes from raw
alphas (softmax or sigmoid gates, PC-DARTS edge normalisation, shared, per-cell or laid-out alphas) to a genotype,
for the supernet after each epoch and for ``dartsnas derive`` on a run's alpha history alike."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, GenotypeError
from .model import CellDesign, Genotype, Pair, num_edges


def softmax(x: Any, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax of an array (or tensor) along ``axis``."""
    a = _to_numpy(x)
    shifted = a - np.max(a, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def edge_normalized(op_weights: Any, betas: Any, nodes: int) -> np.ndarray:
    """PC-DARTS edge normalisation: each edge's op weights times the softmax of the betas over the edges that
    enter the same node (what its derivation ranks edges by)."""
    w = np.array(_to_numpy(op_weights), dtype=np.float64)
    b = _to_numpy(betas).astype(np.float64)
    start = 0
    for i in range(nodes):
        end = start + 2 + i
        w[start:end] *= softmax(b[start:end])[:, None]
        start = end
    return w


def _to_numpy(x: Any) -> np.ndarray:
    """A float64 numpy array from an array, a nested list, or (by duck typing) a torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if hasattr(x, "double"):
            x = x.double()  # also covers bfloat16, which numpy cannot hold
    return np.asarray(x, dtype=np.float64)


# How a discrete cell is read off gated weights; see derive_cell.
DERIVATION_RULES = ("top-k", "threshold-sparse", "threshold-edge", "threshold-complete")
DEFAULT_THRESHOLD = 0.85  # D-DARTS' and FairDARTS' gate threshold


def _check_rule(rule: Any, threshold: Any, k: Any) -> float | None:
    """Validate ``rule`` and its ``threshold``; returns the threshold as a float (None for top-k)."""
    if rule not in DERIVATION_RULES:
        raise GenotypeError(f"unknown derivation rule {rule!r}; choose one of {', '.join(DERIVATION_RULES)}")
    if rule == "top-k":
        if threshold is not None:
            raise GenotypeError(
                "threshold applies to the threshold rules only; rule='top-k' keeps k edges per node "
                "(use rule='threshold-sparse' or 'threshold-edge', or drop the threshold)"
            )
        return None
    if rule != "threshold-sparse" and k != 2:
        raise GenotypeError(f"k does not apply to rule={rule!r} (it looks at every edge), got k={k!r}")
    if threshold is None:
        raise GenotypeError(f"rule={rule!r} needs a threshold in (0, 1], e.g. threshold={DEFAULT_THRESHOLD}")
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise GenotypeError(f"threshold must be a number in (0, 1], got {threshold!r}")
    value = float(threshold)
    if not 0.0 < value <= 1.0:  # also refuses NaN
        raise GenotypeError(f"threshold must be in (0, 1] (a gate value), got {threshold!r}")
    return value


def _threshold_node(block: np.ndarray, rule: str, cut: float, k: int) -> list[tuple[int, int]]:
    """One node's ``(input, op column)`` genes under a D-DARTS threshold rule, in the order D-DARTS lists them.

    ``block`` holds the node's edges (rows, by input) by the candidate ops (columns). Written from the rules
    of D-DARTS' ``utils.parse``:

    - sparse: the ``k`` edges with the largest gate (stable sort: on ties the lower input), strongest first;
      on each its best op (the first maximum) if that gate is >= ``cut``;
    - edge: every edge in input order; of its two largest gates (a stable ascending sort's last two, listed
      in that ascending order) each one >= ``cut``;
    - complete: every edge in input order, every op >= ``cut`` in primitive order.
    """
    inputs = range(block.shape[0])
    genes: list[tuple[int, int]] = []
    if rule == "threshold-sparse":
        for j in sorted(inputs, key=lambda j: -block[j].max())[:k]:
            best = int(np.argmax(block[j]))
            if block[j, best] >= cut:
                genes.append((j, best))
    elif rule == "threshold-edge":
        for j in inputs:
            top = sorted(range(block.shape[1]), key=lambda a: block[j, a])[-2:]
            genes.extend((j, a) for a in top if block[j, a] >= cut)
    else:
        for j in inputs:
            genes.extend((j, a) for a in range(block.shape[1]) if block[j, a] >= cut)
    return genes


def derive_cell(
    weights: Any,
    primitives: Sequence[str],
    nodes: int,
    multiplier: int,
    *,
    k: int = 2,
    reduction: bool = False,
    exclude: Iterable[str] = ("none",),
    rule: str = "top-k",
    threshold: float | None = None,
) -> CellDesign:
    """The discrete cell from gated weights ``[E, P]`` (edges node by node, gate values in [0, 1]).

    ``weights`` are per-op gates: softmax rows (DARTS) or independent sigmoid gates (rows need not sum to 1).
    Ops in ``exclude`` are never chosen and never rank an edge (D-DARTS' spaces have no ``none``; ours keep
    it out of derivation everywhere).

    - ``"top-k"`` (the DARTS code): per node the ``k`` strongest edges (an edge's strength is its largest
      weight; ties: the lower input), each with its strongest op (ties: the earlier primitive), strongest edge
      first. ``concat`` is the last ``multiplier`` nodes.
    - ``"threshold-sparse"``, ``"threshold-edge"``, ``"threshold-complete"``: D-DARTS' rules, exactly as its
      ``utils.parse`` (see :func:`_threshold_node`). There is no fallback: a node may end without a pair and
      then does not exist. ``concat`` is the nodes that exist among the last ``multiplier`` (the last one that
      exists if none does): with D-DARTS' ``multiplier == nodes``, every node that exists, as its sparse cells
      concatenate them. A node whose only pairs read missing nodes would make the original code fail; it is
      dropped as well (its pairs removed), so a derived cell always builds.
    """
    prims = tuple(primitives)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise GenotypeError(f"nodes must be a positive integer, got {nodes!r}")
    if isinstance(multiplier, bool) or not isinstance(multiplier, int) or not 1 <= multiplier <= nodes:
        raise GenotypeError(f"multiplier must be an integer in 1..{nodes} (the nodes per cell), got {multiplier!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise GenotypeError(f"k (edges kept per node) must be a positive integer, got {k!r}")
    cut = _check_rule(rule, threshold, k)
    w = _to_numpy(weights)
    edges = num_edges(nodes)
    if w.shape != (edges, len(prims)):
        raise GenotypeError(
            f"weights have shape {tuple(w.shape)}, expected ({edges}, {len(prims)}): "
            f"{edges} edges for {nodes} nodes by {len(prims)} primitives"
        )
    if not np.all(np.isfinite(w)):
        raise GenotypeError("weights contain NaN or infinity; the search diverged or the alphas are corrupt")
    if cut is not None and (w.min() < -1e-6 or w.max() > 1.0 + 1e-6):
        raise GenotypeError(
            f"rule={rule!r} compares gate values in [0, 1], but the weights span [{w.min():.3g}, {w.max():.3g}]: "
            "pass the softmax or sigmoid of the alphas, not the alphas"
        )
    excluded = set(exclude)
    allowed = [p for p, name in enumerate(prims) if name not in excluded]
    if not allowed:
        raise GenotypeError(f"every primitive of {list(prims)} is excluded; nothing can be chosen")
    allowed_w = w[:, allowed]
    cell: list[tuple[Pair, ...]] = []
    start = 0
    for i in range(nodes):
        block = allowed_w[start : start + 2 + i]
        start += 2 + i
        if cut is None:
            strength = block.max(axis=1)
            # sorted() is stable, so on equal strength the lower input index ranks first.
            ranked = sorted(range(2 + i), key=lambda j: -strength[j])
            # argmax returns the first maximum: on ties the earlier primitive wins.
            cell.append(tuple((prims[allowed[int(np.argmax(block[j]))]], j) for j in ranked[:k]))
            continue
        pairs = tuple((prims[allowed[a]], j) for j, a in _threshold_node(block, rule, cut, k))
        live = {0, 1} | {2 + n for n, node in enumerate(cell) if node}
        cell.append(pairs if any(src in live for _, src in pairs) else ())
    concat = tuple(range(2 + nodes - multiplier, 2 + nodes))
    if cut is not None:
        existing = tuple(2 + i for i, node in enumerate(cell) if node)
        if not existing:
            raise GenotypeError(
                f"no gate of this cell reaches the threshold {cut}, so no node has an input; "
                "lower --threshold or derive with top-k"
            )
        concat = tuple(c for c in concat if c in existing) or existing[-1:]
    return CellDesign(nodes=tuple(cell), concat=concat, reduction=reduction)


def capped_cell(weights: Any, primitives: Sequence[str], nodes: int, multiplier: int, *,
                max_skip: int | None = None, reduction: bool = False, **options: Any) -> CellDesign:
    """:func:`derive_cell`, with P-DARTS' cap (Chen et al., ICCV 2019) on a normal cell: while it holds more than
    ``max_skip`` ``skip_connect`` pairs, the weakest of them loses its skip weight and the cell is derived again,
    so the edge takes its next best op, or another edge takes its place."""
    cell = derive_cell(weights, primitives, nodes, multiplier, reduction=reduction, **options)
    if max_skip is None or reduction or "skip_connect" not in primitives:
        return cell
    skip = list(primitives).index("skip_connect")
    w = _to_numpy(weights).copy()
    starts = np.cumsum([0] + [2 + i for i in range(nodes)])
    while True:
        chosen = [(w[starts[i] + j, skip], starts[i] + j) for i, node in enumerate(cell.nodes)
                  for op, j in node if op == "skip_connect"]
        if len(chosen) <= max_skip or min(chosen)[0] <= 0.0:  # (0: an edge with nothing else keeps its skip)
            return cell
        edge = min(chosen)[1]
        w[edge, skip] = 0.0
        cell = derive_cell(w, primitives, nodes, multiplier, reduction=reduction, **options)


def derive_genotype(normal_weights: Any, reduce_weights: Any, primitives: Sequence[str], nodes: int, multiplier: int,
                    **options: Any) -> Genotype:
    """A DARTS genotype (normal and reduce) from the gated weights of both cell types; records ``primitives``.

    ``options`` (``k``, ``exclude``, ``rule``, ``threshold``) as in :func:`derive_cell`.
    """
    normal = capped_cell(normal_weights, primitives, nodes, multiplier, reduction=False, **options)
    reduce = capped_cell(reduce_weights, primitives, nodes, multiplier, reduction=True, **options)
    return Genotype(normal=normal, reduce=reduce, primitives=tuple(primitives))


def derive_per_cell_genotype(weights: Sequence[Any], reductions: Iterable[int], primitives: Sequence[str], nodes: int,
                             multiplier: int, **options: Any) -> Genotype:
    """A per-position genotype (D-DARTS) from one weight matrix per cell; ``reductions`` are the reducing positions.

    ``options`` (``k``, ``exclude``, ``rule``, ``threshold``) as in :func:`derive_cell`, the same for every cell.
    """
    red = set(reductions)
    bad = sorted(r for r in red if not 0 <= r < len(weights))
    if bad:
        raise GenotypeError(f"reduction positions {bad} are outside the {len(weights)} cells")
    cells = tuple(
        capped_cell(w, primitives, nodes, multiplier, reduction=i in red, **options) for i, w in enumerate(weights)
    )
    return Genotype(cells=cells, primitives=tuple(primitives))


GATES = ("softmax", "sigmoid")


def gate_values(raw: Any, gate: str) -> np.ndarray:
    """Op weights of raw alphas ``[..., ops]``: softmax over the ops, or an independent sigmoid per op."""
    a = np.asarray(raw, dtype=np.float64)
    if gate == "softmax":
        return softmax(a, axis=-1)
    if gate == "sigmoid":
        return 1.0 / (1.0 + np.exp(-a))
    raise ConfigError(f"gates must be one of {', '.join(GATES)}, got {gate!r}")


def per_cell_names(raw: Mapping[str, Any]) -> list[str]:
    return sorted((n for n in raw if n.startswith("alpha_cell_")), key=lambda n: int(n.rsplit("_", 1)[1]))


def derive_from_gates(raw: Mapping[str, Any], gate: str, primitives: Sequence[str], nodes: int, multiplier: int, *,
                      reductions: Sequence[int] = (), rule: str = "top-k",
                      threshold: float | None = None, seq: Sequence[int] | None = None,
                      max_skip: int | None = None) -> Genotype:
    """The genotype of raw alphas ``{name: array}`` (``alpha_normal``/``alpha_reduce``, or ``alpha_cell_NN``,
    with ``beta_*`` edge parameters for PC-DARTS). ``reductions``: the reducing positions of a per-cell
    search; ``seq``: with a whole-network layout (DARTOpti), the ``alpha_cell_NN`` set of each position;
    ``max_skip``: P-DARTS' cap on the skip connections of each normal cell (:func:`capped_cell`)."""
    extra = {} if rule == "top-k" else {"rule": rule, "threshold": threshold}
    if max_skip is not None:
        extra["max_skip"] = max_skip

    def weights(name: str) -> np.ndarray:
        w = gate_values(raw[name], gate)
        beta = name.replace("alpha_", "beta_")
        if beta in raw:  # PC-DARTS ranks edges by op weight times edge weight
            w = edge_normalized(w, raw[beta], nodes)
        return w

    if "alpha_normal" in raw and "alpha_reduce" in raw:
        return derive_genotype(weights("alpha_normal"), weights("alpha_reduce"), primitives, nodes, multiplier,
                               **extra)
    names = per_cell_names(raw)
    if not names:
        raise ConfigError("no architecture parameters (alpha_normal/alpha_reduce or alpha_cell_NN) to derive from")
    cells = [weights(n) for n in names]
    if seq is not None:
        if any(not 0 <= g < len(cells) for g in seq):
            raise ConfigError(f"the layout's seq {list(seq)} names alpha sets the history lacks ({len(cells)})")
        cells = [cells[g] for g in seq]
    return derive_per_cell_genotype(cells, reductions, primitives, nodes, multiplier, **extra)
