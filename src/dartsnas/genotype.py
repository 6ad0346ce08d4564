"""Genotypes: the discrete architecture a search produces, as pure data.

A genotype holds either one cell design per cell type (``normal`` and ``reduce``, as in DARTS) or one
design per cell position (``cells``, as in D-DARTS' per-cell search). A cell design lists its intermediate
nodes; node ``i`` (0-based) is state ``2 + i`` and sums any number of ``(op, input)`` pairs, where inputs 0
and 1 are the two cell inputs. ``concat`` names the states whose concatenation is the cell output.

This module also derives genotypes from architecture weights (the top-k rule of the DARTS code, and D-DARTS'
threshold rules, which may give a node any number of pairs, several on one edge), reads and
writes the JSON file format, reads the classic text forms of the original code and its forks *without*
``eval`` (a small tokenizer and parser of literals), and holds the published genotypes by name.
"""
from __future__ import annotations

import dataclasses
import json
import operator
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import GenotypeError
from .fileio import atomic_write_text
from .registry import Registry

__all__ = [
    "DERIVATION_RULES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PUBLISHED",
    "CellDesign",
    "Genotype",
    "derive_cell",
    "derive_genotype",
    "derive_per_cell_genotype",
    "gene_matrix",
    "load_genotype",
    "num_edges",
    "parse_genotype_text",
    "parse_genotype_texts",
    "published_genotype",
    "published_names",
    "save_genotype",
    "softmax",
    "sparse_design",
]

FORMAT_NAME = "dartsnas-genotype"
FORMAT_VERSION = 1

Pair = tuple[str, int]
Node = tuple[Pair, ...]
PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------------


def _as_index(value: Any, what: str) -> int:
    """Return ``value`` as a non-negative int, refusing bools, floats and strings."""
    if isinstance(value, bool):
        raise GenotypeError(f"{what} must be an integer, got {value!r}")
    try:
        index = operator.index(value)
    except TypeError:
        raise GenotypeError(f"{what} must be an integer, got {value!r}") from None
    if index < 0:
        raise GenotypeError(f"{what} must be >= 0, got {index}")
    return index


@dataclass(frozen=True)
class CellDesign:
    """One cell: per intermediate node its incoming ``(op, input)`` pairs, and the states concatenated as output.

    Sparse cells (FairDARTS' and D-DARTS' ``(op, to, from)`` genes, threshold derivation) may leave a node
    without pairs: that node does not exist, a pair reading it is skipped, and ``concat`` may not name it. A
    node whose every pair reads a missing node cannot be computed (the original code fails on it) and is
    refused. Lists are accepted and stored as tuples, so designs are hashable and compare by value.
    """

    nodes: tuple[tuple[tuple[str, int], ...], ...]
    concat: tuple[int, ...]
    reduction: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.nodes, (str, bytes)) or not isinstance(self.nodes, Iterable):
            raise GenotypeError(f"cell nodes must be a list of nodes, got {self.nodes!r}")
        nodes = []
        for i, node in enumerate(self.nodes):
            if isinstance(node, (str, bytes)) or not isinstance(node, Iterable):
                raise GenotypeError(f"node {i} must be a list of (op, input) pairs, got {node!r}")
            pairs = []
            for pair in node:
                if isinstance(pair, (str, bytes)) or not isinstance(pair, Iterable) or len(tuple(pair)) != 2:
                    raise GenotypeError(f"node {i}: expected an (op, input) pair, got {pair!r}")
                op, src = tuple(pair)
                if not isinstance(op, str) or not op:
                    raise GenotypeError(f"node {i}: op names must be non-empty strings, got {op!r}")
                src = _as_index(src, f"node {i}: input of {op!r}")
                if src >= 2 + i:
                    raise GenotypeError(
                        f"node {i} (state {2 + i}) reads state {src}, which is not computed before it; "
                        f"a node reads the cell inputs 0 and 1 or an earlier node (states < {2 + i})"
                    )
                pairs.append((op, src))
            nodes.append(tuple(pairs))
        if not any(nodes):
            raise GenotypeError("a cell needs at least one intermediate node with an (op, input) pair")
        live = {0, 1} | {2 + i for i, node in enumerate(nodes) if node}
        for i, node in enumerate(nodes):
            if node and not any(src in live for _, src in node):
                missing = sorted({src for _, src in node})
                raise GenotypeError(
                    f"node {i} (state {2 + i}) reads only states {missing}, which do not exist (no op enters "
                    "them), so it cannot be computed; give it an input that exists or remove its genes"
                )
        if isinstance(self.concat, (str, bytes)) or not isinstance(self.concat, Iterable):
            raise GenotypeError(f"concat must be a list of state indices, got {self.concat!r}")
        concat = tuple(_as_index(c, "concat entry") for c in self.concat)
        states = 2 + len(nodes)
        if not concat:
            raise GenotypeError("concat is empty; list the states whose concatenation is the cell output")
        for c in concat:
            if c >= states:
                raise GenotypeError(f"concat names state {c}, but the cell has states 0..{states - 1} only")
            if c not in live:
                raise GenotypeError(f"concat names state {c}, a node without inputs (it does not exist)")
        if len(set(concat)) != len(concat):
            raise GenotypeError(f"concat {list(concat)} names a state twice; list each state once")
        if not isinstance(self.reduction, (bool, np.bool_)):
            raise GenotypeError(f"reduction must be true or false, got {self.reduction!r}")
        object.__setattr__(self, "nodes", tuple(nodes))
        object.__setattr__(self, "concat", concat)
        object.__setattr__(self, "reduction", bool(self.reduction))

    def live_states(self) -> set[int]:
        """The states that exist: the two cell inputs and every node with at least one pair."""
        return {0, 1} | {2 + i for i, node in enumerate(self.nodes) if node}

    def live_pairs(self, i: int) -> tuple[tuple[str, int], ...]:
        """Node ``i``'s pairs that read an existing state (a pair from a missing node is skipped)."""
        live = self.live_states()
        return tuple(pair for pair in self.nodes[i] if pair[1] in live)

    def ops(self) -> list[str]:
        """Sorted unique op names this cell uses."""
        return sorted({op for node in self.nodes for op, _ in node})

    def to_dict(self, *, with_reduction: bool = False) -> dict[str, Any]:
        """Plain JSON-ready dict; ``with_reduction`` adds the flag (per-position form)."""
        d: dict[str, Any] = {"reduction": self.reduction} if with_reduction else {}
        d["nodes"] = [[[op, src] for op, src in node] for node in self.nodes]
        d["concat"] = list(self.concat)
        return d


@dataclass(frozen=True)
class Genotype:
    """A discrete architecture: ``normal`` and ``reduce`` designs (DARTS) or one design per position (``cells``).

    ``primitives`` is the candidate set the genotype was searched with, ``()`` when unknown.
    """

    normal: CellDesign | None = None
    reduce: CellDesign | None = None
    cells: tuple[CellDesign, ...] | None = None
    primitives: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        has_pair = self.normal is not None or self.reduce is not None
        if has_pair and self.cells is not None:
            raise GenotypeError("a genotype holds either normal and reduce designs or per-position cells, not both")
        if has_pair:
            if self.normal is None or self.reduce is None:
                raise GenotypeError("a genotype needs both a normal and a reduce design (or per-position cells)")
            for name, design in (("normal", self.normal), ("reduce", self.reduce)):
                if not isinstance(design, CellDesign):
                    raise GenotypeError(f"{name} must be a CellDesign, got {type(design).__name__}")
            # The flag follows the slot: normal cells keep the resolution, reduce cells halve it.
            if self.normal.reduction:
                object.__setattr__(self, "normal", dataclasses.replace(self.normal, reduction=False))
            if not self.reduce.reduction:
                object.__setattr__(self, "reduce", dataclasses.replace(self.reduce, reduction=True))
        elif self.cells is not None:
            if isinstance(self.cells, CellDesign) or not isinstance(self.cells, Iterable):
                raise GenotypeError("cells must be a list of CellDesign, one per cell position")
            cells = tuple(self.cells)
            if not cells:
                raise GenotypeError("cells is empty; give one design per cell position")
            for i, design in enumerate(cells):
                if not isinstance(design, CellDesign):
                    raise GenotypeError(f"cell {i} must be a CellDesign, got {type(design).__name__}")
            object.__setattr__(self, "cells", cells)
        else:
            raise GenotypeError("a genotype needs normal and reduce designs, or per-position cells")
        if isinstance(self.primitives, (str, bytes)) or not isinstance(self.primitives, Iterable):
            raise GenotypeError(f"primitives must be a list of op names, got {self.primitives!r}")
        primitives = tuple(self.primitives)
        for p in primitives:
            if not isinstance(p, str) or not p:
                raise GenotypeError(f"primitives must be non-empty op names, got {p!r}")
        if len(set(primitives)) != len(primitives):
            raise GenotypeError(f"primitives {list(primitives)} name an op twice; list each once")
        if primitives:
            unknown = [op for op in self.ops() if op not in primitives]
            if unknown:
                raise GenotypeError(
                    f"the genotype uses {unknown}, which are not among its primitives {list(primitives)}; "
                    "add them to primitives or leave primitives empty"
                )
        object.__setattr__(self, "primitives", primitives)

    def is_per_cell(self) -> bool:
        """True for the per-position form (one design per cell, D-DARTS)."""
        return self.cells is not None

    def cell_designs(self) -> list[CellDesign]:
        """``[normal, reduce]`` for the DARTS form, else the per-position designs."""
        if self.cells is not None:
            return list(self.cells)
        assert self.normal is not None and self.reduce is not None
        return [self.normal, self.reduce]

    def ops(self) -> list[str]:
        """Sorted unique op names the genotype uses."""
        return sorted({op for design in self.cell_designs() for op in design.ops()})

    def reductions(self) -> list[int]:
        """Positions of the reduction cells in the per-position form; [] for the DARTS form."""
        return [i for i, c in enumerate(self.cells or ()) if c.reduction]

    def to_dict(self) -> dict[str, Any]:
        """The JSON file content as plain types (format ``dartsnas-genotype``, version 1)."""
        d: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "primitives": list(self.primitives),
            "ops": self.ops(),
        }
        if self.cells is not None:
            d["cells"] = [c.to_dict(with_reduction=True) for c in self.cells]
        else:
            assert self.normal is not None and self.reduce is not None
            d["normal"] = self.normal.to_dict()
            d["reduce"] = self.reduce.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Genotype:
        """Build from the JSON file content; raises GenotypeError naming what is wrong."""
        if not isinstance(d, dict):
            raise GenotypeError(f"expected a JSON object with \"format\": \"{FORMAT_NAME}\", got {type(d).__name__}")
        fmt = d.get("format")
        if fmt is None:
            raise GenotypeError(f"missing key \"format\"; a genotype file says \"format\": \"{FORMAT_NAME}\"")
        if fmt != FORMAT_NAME:
            raise GenotypeError(f"unknown format {fmt!r}; expected {FORMAT_NAME!r}")
        version = d.get("version")
        if version is None:
            raise GenotypeError("missing key \"version\"; this reader understands version 1")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise GenotypeError(f"\"version\" must be a positive integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise GenotypeError(
                f"genotype format version {version} is newer than this dartsnas reads ({FORMAT_VERSION}); "
                "upgrade dartsnas"
            )
        per_cell = "cells" in d
        layout = ("cells",) if per_cell else ("normal", "reduce")
        allowed = {"format", "version", "primitives", "ops", *layout}
        extra = sorted(set(d) - allowed)
        if extra:
            if per_cell and ({"normal", "reduce"} & set(d)):
                raise GenotypeError("the file has both \"cells\" and \"normal\"/\"reduce\"; keep one form")
            raise GenotypeError(f"unknown keys {extra}; a version-1 genotype file has {sorted(allowed)}")
        for key in ("primitives", *layout):
            if key not in d:
                raise GenotypeError(f"missing key {key!r}")
        primitives = d["primitives"]
        if not isinstance(primitives, list) or not all(isinstance(p, str) for p in primitives):
            raise GenotypeError("\"primitives\" must be a list of op names ([] when unknown)")
        if "ops" in d and (not isinstance(d["ops"], list) or not all(isinstance(p, str) for p in d["ops"])):
            raise GenotypeError("\"ops\" must be a list of op names")
        if per_cell:
            cells_raw = d["cells"]
            if not isinstance(cells_raw, list):
                raise GenotypeError("\"cells\" must be a list of cell designs")
            cells = tuple(_design_from_dict(c, f"cells[{i}]", per_cell=True) for i, c in enumerate(cells_raw))
            return cls(cells=cells, primitives=tuple(primitives))
        normal = _design_from_dict(d["normal"], "normal", per_cell=False, reduction=False)
        reduce = _design_from_dict(d["reduce"], "reduce", per_cell=False, reduction=True)
        return cls(normal=normal, reduce=reduce, primitives=tuple(primitives))

    def to_classic(self) -> str:
        """The 2018 DARTS text ``Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])``.

        Only the normal/reduce form with exactly two inputs per node has one; raises GenotypeError otherwise.
        """
        if self.normal is None or self.reduce is None:
            raise GenotypeError("a per-position genotype has no classic text form; save it as JSON")
        for name, design in (("normal", self.normal), ("reduce", self.reduce)):
            for i, node in enumerate(design.nodes):
                if len(node) != 2:
                    raise GenotypeError(
                        f"{name} node {i} has {len(node)} inputs; the classic text form needs exactly two per node "
                        "(save it as JSON)"
                    )
        return (
            f"Genotype(normal={_fmt_pairs(self.normal)}, normal_concat={list(self.normal.concat)}, "
            f"reduce={_fmt_pairs(self.reduce)}, reduce_concat={list(self.reduce.concat)})"
        )

    def __str__(self) -> str:
        """A one-line text form that :func:`parse_genotype_text` reads back (primitives aside)."""
        try:
            return self.to_classic()
        except GenotypeError:
            pass
        if self.cells is None:
            assert self.normal is not None and self.reduce is not None
            return (
                f"Genotype(normal={_fmt_nested(self.normal)}, normal_concat={list(self.normal.concat)}, "
                f"reduce={_fmt_nested(self.reduce)}, reduce_concat={list(self.reduce.concat)})"
            )
        # D-DARTS' triple form when each cell's output is all its nodes (what triples mean), else nested lists
        triples = all(c.concat == tuple(sorted(c.live_states() - {0, 1})) for c in self.cells)
        genes = ", ".join(_fmt_triples(c) if triples else _fmt_nested(c) for c in self.cells)
        concats = {c.concat for c in self.cells}
        concat = list(self.cells[0].concat) if len(concats) == 1 else [list(c.concat) for c in self.cells]
        return f"Genotype_nested(genes=[{genes}], reductions={self.reductions()}, concat={concat})"


def _fmt_pairs(design: CellDesign) -> str:
    """``[('op', input), ...]`` of all nodes in order, as the 2018 code writes them."""
    return "[" + ", ".join(f"({op!r}, {src})" for node in design.nodes for op, src in node) + "]"


def _fmt_nested(design: CellDesign) -> str:
    """``[[('op', input), ...], ...]``: one list per node (pt.darts' form), any number of pairs, empty ones too."""
    return "[" + ", ".join("[" + ", ".join(f"({op!r}, {src})" for op, src in node) + "]" for node in design.nodes) + "]"


def _fmt_triples(design: CellDesign) -> str:
    """``[('op', to_state, from_state), ...]``: the triple form, for any number of inputs per node."""
    items = [f"({op!r}, {2 + i}, {src})" for i, node in enumerate(design.nodes) for op, src in node]
    return "[" + ", ".join(items) + "]"


def _design_from_dict(d: Any, where: str, *, per_cell: bool, reduction: bool = False) -> CellDesign:
    """One cell design from its JSON object; errors name ``where``."""
    if not isinstance(d, dict):
        raise GenotypeError(f"{where} must be an object with \"nodes\" and \"concat\"")
    keys = ("reduction", "nodes", "concat") if per_cell else ("nodes", "concat")
    for key in keys:
        if key not in d:
            raise GenotypeError(f"{where}: missing key {key!r}")
    extra = sorted(set(d) - set(keys))
    if extra:
        raise GenotypeError(f"{where}: unknown keys {extra}; expected {list(keys)}")
    if per_cell:
        if not isinstance(d["reduction"], bool):
            raise GenotypeError(f"{where}: \"reduction\" must be true or false")
        reduction = d["reduction"]
    nodes = d["nodes"]
    if not isinstance(nodes, list):
        raise GenotypeError(f"{where}: \"nodes\" must be a list of nodes, each a list of [op, input] pairs")
    for i, node in enumerate(nodes):
        if not isinstance(node, list):
            raise GenotypeError(f"{where}: node {i} must be a list of [op, input] pairs")
        for pair in node:
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not isinstance(pair[0], str)
                or isinstance(pair[1], bool)
                or not isinstance(pair[1], int)
            ):
                raise GenotypeError(f"{where}: node {i}: expected an [op, input] pair, got {json.dumps(pair)}")
    concat = d["concat"]
    if not isinstance(concat, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in concat):
        raise GenotypeError(f"{where}: \"concat\" must be a list of state indices")
    try:
        return CellDesign(nodes=nodes, concat=concat, reduction=reduction)
    except GenotypeError as e:
        raise GenotypeError(f"{where}: {e}") from None


# --------------------------------------------------------------------------------------------------
# Derivation from architecture weights
# --------------------------------------------------------------------------------------------------


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


def gene_matrix(design: CellDesign, columns: Sequence[str], nodes: int) -> np.ndarray:
    """D-DARTS' view of a cell as alphas: an ``[edges, ops]`` boolean matrix marking every pair's edge and op
    (pairs from missing nodes included) in a cell of ``nodes`` intermediate nodes (rows node by node)."""
    cols = list(columns)
    rows = np.zeros((num_edges(nodes), len(cols)), dtype=bool)
    for i, pairs in enumerate(design.nodes):
        for op, src in pairs:
            rows[num_edges(i) + src, cols.index(op)] = True
    return rows


def num_edges(nodes: int) -> int:
    """Edges of a cell with ``nodes`` intermediate nodes: node i reads states 0..i+1, so sum of (2 + i)."""
    return sum(2 + i for i in range(nodes))


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


def derive_genotype(
    normal_weights: Any,
    reduce_weights: Any,
    primitives: Sequence[str],
    nodes: int,
    multiplier: int,
    *,
    k: int = 2,
    exclude: Iterable[str] = ("none",),
    rule: str = "top-k",
    threshold: float | None = None,
) -> Genotype:
    """A DARTS genotype (normal and reduce) from the gated weights of both cell types; records ``primitives``.

    ``rule`` and ``threshold`` as in :func:`derive_cell`.
    """
    exclude = tuple(exclude)
    opts: dict[str, Any] = {"k": k, "exclude": exclude, "rule": rule, "threshold": threshold}
    normal = derive_cell(normal_weights, primitives, nodes, multiplier, reduction=False, **opts)
    reduce = derive_cell(reduce_weights, primitives, nodes, multiplier, reduction=True, **opts)
    return Genotype(normal=normal, reduce=reduce, primitives=tuple(primitives))


def derive_per_cell_genotype(
    weights: Sequence[Any],
    reductions: Iterable[int],
    primitives: Sequence[str],
    nodes: int,
    multiplier: int,
    *,
    k: int = 2,
    exclude: Iterable[str] = ("none",),
    rule: str = "top-k",
    threshold: float | None = None,
) -> Genotype:
    """A per-position genotype (D-DARTS) from one weight matrix per cell; ``reductions`` are the reducing positions.

    ``rule`` and ``threshold`` as in :func:`derive_cell`, the same for every cell.
    """
    exclude = tuple(exclude)
    red = set(reductions)
    bad = sorted(r for r in red if not 0 <= r < len(weights))
    if bad:
        raise GenotypeError(f"reduction positions {bad} are outside the {len(weights)} cells")
    opts: dict[str, Any] = {"k": k, "exclude": exclude, "rule": rule, "threshold": threshold}
    cells = tuple(
        derive_cell(w, primitives, nodes, multiplier, reduction=i in red, **opts) for i, w in enumerate(weights)
    )
    return Genotype(cells=cells, primitives=tuple(primitives))


# --------------------------------------------------------------------------------------------------
# JSON files
# --------------------------------------------------------------------------------------------------


def _dumps(obj: Any, indent: int = 0, width: int = 100) -> str:
    """JSON with two-space indents, keeping short lists (pairs, nodes, concat) on one line."""
    pad = " " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad}  {json.dumps(key)}: {_dumps(value, indent + 2, width)}" for key, value in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list):
        inline = json.dumps(obj)
        if indent + len(inline) <= width and not any(isinstance(x, dict) for x in obj):
            return inline
        items = [f"{pad}  {_dumps(x, indent + 2, width)}" for x in obj]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(obj)


def save_genotype(genotype: Genotype, path: PathLike) -> Path:
    """Write ``genotype`` as a JSON file atomically (temp file in the same folder, fsync, rename); returns the path."""
    if not isinstance(genotype, Genotype):
        raise TypeError(f"save_genotype expects a Genotype, got {type(genotype).__name__}")
    return atomic_write_text(path, _dumps(genotype.to_dict()) + "\n")


def _parse_json(text: str) -> Genotype:
    """A genotype from JSON file content."""
    try:
        data = json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as e:
        raise GenotypeError(f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    return Genotype.from_dict(data)


def _looks_like_json(text: str) -> bool:
    """JSON genotype files are objects: the first non-blank character is ``{``."""
    return text.lstrip("\ufeff \t\r\n").startswith("{")


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for strings the OS cannot take as a path (too long, NUL bytes)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


_INLINE_RE = re.compile(r"^\s*(\{|(\w+\s*=\s*)?(\w+\.)?Genotype(_nested|_opt)?\s*\()")


def _looks_inline(text: str) -> bool:
    """A genotype given as text itself: JSON, or a ``Genotype(...)``-family call (as D-DARTS' ``--arch`` takes)."""
    return bool(_INLINE_RE.match(text.lstrip("\ufeff")))


def load_genotype(source: PathLike) -> Genotype:
    """Load a genotype from a JSON or classic text file, ``FILE::NAME`` (one of several in a file), a published
    name, or the genotype text itself (JSON, ``Genotype(...)``, ``Genotype_nested(...)``, ``Genotype_opt(...)``).

    An existing file wins over a published genotype of the same name.
    """
    if isinstance(source, Genotype):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"load_genotype expects a path or a name, got {type(source).__name__}")
    text_source = os.fspath(source)
    path = Path(text_source)
    if _is_file(path):
        return _load_file(path, None)
    if isinstance(source, str) and _looks_inline(text_source):
        try:
            return parse_genotype_text(text_source)
        except GenotypeError as e:
            raise GenotypeError(f"the genotype text given inline: {e}") from None
    if "::" in text_source:
        file_part, name = text_source.rsplit("::", 1)
        file_path = Path(file_part)
        if _is_file(file_path):
            return _load_file(file_path, name)
        raise GenotypeError(f"no genotype file {file_part!r}; check the path before '::{name}'")
    if is_dir(path):
        raise GenotypeError(f"{path} is a folder; pass a genotype file such as {path / 'genotype.json'}")
    if text_source in PUBLISHED:
        return PUBLISHED.get(text_source)
    shown = text_source if len(text_source) <= 80 else text_source[:77] + "..."
    raise GenotypeError(
        f"no genotype file or published genotype named {shown!r}, and it is not a genotype text "
        f"(Genotype(...), Genotype_nested(...) or JSON); published: {', '.join(published_names())}"
    )


def is_dir(path: Path) -> bool:
    """``path.is_dir()``, False for strings the OS cannot take as a path (an inline genotype text)."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _load_file(path: Path, name: str | None) -> Genotype:
    """Read and parse one file; errors start with the file's path."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GenotypeError(f"{path}: not a text file; expected a JSON or classic genotype text") from None
    except OSError as e:
        raise GenotypeError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        if _looks_like_json(text):
            if name is not None:
                raise GenotypeError(f"a JSON genotype file holds one genotype; drop '::{name}'")
            return _parse_json(text)
        found = _parse_all(text)
        if name is not None:
            if name not in found:
                known = ", ".join(n or "(unnamed)" for n in found) or "none"
                raise GenotypeError(f"no genotype named {name!r}; the file holds: {known}")
            return _built(found[name])
        return _single(found, hint=f"'{path}::NAME'")
    except GenotypeError as e:
        raise GenotypeError(f"{path}: {e}") from None


def _single(found: dict[str, Genotype | GenotypeError], hint: str) -> Genotype:
    """The one genotype of a text, or an error saying there are none or several."""
    if not found:
        raise GenotypeError("no Genotype(...) or Genotype_nested(...) found; expected a genotype text or JSON")
    if len(found) > 1:
        names = ", ".join(n or "(unnamed)" for n in found)
        raise GenotypeError(f"found several genotypes ({names}); pick one with {hint}")
    return _built(next(iter(found.values())))


def _built(value: Genotype | GenotypeError) -> Genotype:
    if isinstance(value, GenotypeError):
        raise value
    return value


def parse_genotype_text(text: str) -> Genotype:
    """Parse one genotype from text: the JSON file format or a classic text holding exactly one genotype."""
    if _looks_like_json(text):
        return _parse_json(text)
    return _single(_parse_all(text), hint="parse_genotype_texts(text)[NAME] or 'FILE::NAME'")


# --------------------------------------------------------------------------------------------------
# Classic text forms, read without eval: a tokenizer and a parser of Python literals
# --------------------------------------------------------------------------------------------------


class _Tok(NamedTuple):
    """A token: kind (name, num, str, op), its text or value, its line, and the bracket depth before it."""

    kind: str
    value: Any
    line: int
    depth: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\f\r]+|\\\r?\n)
    |(?P<nl>\n)
    |(?P<comment>\#[^\n]*)
    |(?P<str>'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
    |(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)
    |(?P<name>[A-Za-z_][A-Za-z_0-9]*)
    |(?P<op>[^\s\w'"\#])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "\n": ""}
_CLOSERS = {")": "(", "]": "[", "}": "{"}
_MAX_DEPTH = 64  # genotypes nest three or four deep; this keeps the recursive parser far from Python's limit
_MAX_STATE = 1000  # states per cell in a triple gene: bounds the nodes a file can make us allocate


def _unquote(raw: str) -> str:
    """The value of a quoted string token (simple escapes only; op names need none)."""
    q = 3 if raw[:3] in ("'''", '"""') else 1
    body = raw[q:-q]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body, flags=re.DOTALL)


def _tokenize(text: str) -> list[_Tok]:
    """Split text into tokens, checking that brackets balance."""
    tokens: list[_Tok] = []
    stack: list[tuple[str, int]] = []
    line, pos = 1, 0
    text = text.lstrip("\ufeff")
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch in "'\"":
                raise GenotypeError(f"line {line}: unterminated string; close the quote {ch}")
            raise GenotypeError(f"line {line}: unexpected character {ch!r}")
        kind, raw = m.lastgroup, m.group()
        if kind == "str":
            tokens.append(_Tok("str", _unquote(raw), line, len(stack)))
        elif kind == "num":
            value: Any = float(raw) if any(c in raw for c in ".eE") else int(raw)
            tokens.append(_Tok("num", value, line, len(stack)))
        elif kind == "name":
            tokens.append(_Tok("name", raw, line, len(stack)))
        elif kind == "op":
            depth = len(stack)
            if raw in "([{":
                if len(stack) >= _MAX_DEPTH:
                    raise GenotypeError(f"line {line}: brackets nested more than {_MAX_DEPTH} deep; not a genotype")
                stack.append((raw, line))
            elif raw in _CLOSERS:
                if not stack:
                    raise GenotypeError(f"line {line}: unmatched {raw!r}; remove it or add the opening bracket")
                opener, opened = stack.pop()
                if opener != _CLOSERS[raw]:
                    raise GenotypeError(
                        f"line {line}: {raw!r} closes {opener!r} opened on line {opened}; the brackets do not match"
                    )
                depth = len(stack)
            tokens.append(_Tok("op", raw, line, depth))
        line += raw.count("\n")
        pos = m.end()
    if stack:
        opener, opened = stack[-1]
        raise GenotypeError(f"line {opened}: {opener!r} is never closed; the brackets are unbalanced")
    return tokens


@dataclass
class _Lit:
    """A string or number literal."""

    value: Any
    line: int


@dataclass
class _Seq:
    """A list or tuple literal."""

    items: list[Any]
    line: int
    kind: str  # "list" or "tuple"


@dataclass
class _Name:
    """A (possibly dotted) bare name."""

    name: str
    line: int


@dataclass
class _Call:
    """A call ``name(args, key=value)``, never executed: only its literal arguments are read."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    line: int


@dataclass
class _BinOp:
    """``left * right`` or ``left + right``: evaluated on literal lists and integers only (see _resolve)."""

    op: str
    left: Any
    right: Any
    line: int


_Expr = _Lit | _Seq | _Name | _Call | _BinOp
_MAX_ITEMS = 100_000  # list arithmetic never builds more than this many items


def _resolve(node: _Expr, env: dict[str, _Expr]) -> _Expr:
    """``node`` with names of earlier literal assignments substituted and list arithmetic evaluated."""
    if isinstance(node, _Name) and node.name in env:
        return env[node.name]
    if isinstance(node, _Seq):
        return _Seq([_resolve(x, env) for x in node.items], node.line, node.kind)
    if isinstance(node, _Call):
        return _Call(node.name, [_resolve(x, env) for x in node.args],
                     {k: _resolve(v, env) for k, v in node.kwargs.items()}, node.line)
    if not isinstance(node, _BinOp):
        return node
    left, right = _resolve(node.left, env), _resolve(node.right, env)
    if node.op == "*" and isinstance(right, _Seq) and isinstance(left, _Lit):
        left, right = right, left
    if node.op == "*" and isinstance(left, _Seq) and isinstance(right, _Lit) and type(right.value) is int:
        count = max(right.value, 0)
        if len(left.items) * count > _MAX_ITEMS:
            raise GenotypeError(f"line {node.line}: the list product makes over {_MAX_ITEMS} items; not a genotype")
        return _Seq(left.items * count, node.line, left.kind)
    if node.op == "+" and isinstance(left, _Seq) and isinstance(right, _Seq) and left.kind == right.kind:
        if len(left.items) + len(right.items) > _MAX_ITEMS:
            raise GenotypeError(f"line {node.line}: the list sum makes over {_MAX_ITEMS} items; not a genotype")
        return _Seq(left.items + right.items, node.line, left.kind)
    raise GenotypeError(
        f"line {node.line}: {_describe(left)} {node.op} {_describe(right)} is not list arithmetic a genotype "
        "file uses (list * integer, list + list)"
    )


def _describe(node: _Expr) -> str:
    """A short description of a parsed value for error messages."""
    if isinstance(node, _Call):
        return f"a call to {node.name}(...)"
    if isinstance(node, _Seq):
        return f"a {node.kind}"
    if isinstance(node, _Name):
        return f"the name {node.name}"
    if isinstance(node, _BinOp):
        return f"an expression with {node.op!r}"
    if isinstance(node.value, str):
        return f"the string {node.value!r}"
    return f"the number {node.value!r}"


class _Parser:
    """Recursive-descent parser of the literal subset of Python that genotype files use."""

    def __init__(self, tokens: list[_Tok]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self, offset: int = 0) -> _Tok | None:
        """The token ``offset`` ahead, or None at the end."""
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def is_op(self, value: str, offset: int = 0) -> bool:
        """Whether the token ``offset`` ahead is the punctuation ``value``."""
        t = self.peek(offset)
        return t is not None and t.kind == "op" and t.value == value

    def next(self, what: str) -> _Tok:
        """Consume a token; ``what`` names what was expected if the text ends."""
        t = self.peek()
        if t is None:
            last = self.toks[-1].line if self.toks else 1
            raise GenotypeError(f"line {last}: the text ends where {what} was expected")
        self.i += 1
        return t

    def statements(self) -> list[tuple[str | None, _Expr]]:
        """Top-level statements: ``NAME = value`` or a bare value; imports and docstrings are skipped."""
        out: list[tuple[str | None, _Expr]] = []
        while self.peek() is not None:
            t = self.peek()
            assert t is not None
            if t.kind == "name" and t.value in ("import", "from"):
                start = t.line
                while (u := self.peek()) is not None and (u.line == start or u.depth > 0):
                    self.i += 1
                continue
            if t.kind == "str":  # a docstring
                self.i += 1
                self.end_of_statement()
                continue
            name = None
            if t.kind == "name" and self.is_op("=", 1):
                name = t.value
                self.i += 2
            value = self.value()
            self.end_of_statement()
            out.append((name, value))
        return out

    def end_of_statement(self) -> None:
        """A statement ends at a line break (or ``;``)."""
        t = self.peek()
        if t is None:
            return
        if t.kind == "op" and t.value == ";":
            self.i += 1
            return
        prev = self.toks[self.i - 1]
        if t.line == prev.line:
            raise GenotypeError(
                f"line {t.line}: unexpected {_tok_text(t)}; "
                "expected one statement per line, such as NAME = Genotype(...)"
            )

    def value(self) -> _Expr:
        """A value, or list arithmetic on values (``[0] * 4 + [1]``, as D-DARTS' ``seq`` lists are written):
        sums of products of atoms (``*`` binds tighter than ``+``)."""
        return self.chain("+", lambda: self.chain("*", self.atom))

    def chain(self, symbol: str, operand: Callable[[], _Expr]) -> _Expr:
        """``operand (symbol operand)*``, left to right."""
        left = operand()
        while self.is_op(symbol):
            line = self.next("an operator").line
            left = _BinOp(symbol, left, operand(), line)
        return left

    def atom(self) -> _Expr:
        """One literal value: list, tuple, string, number, name, or call of literals."""
        t = self.next("a value")
        if t.kind == "str":
            value = t.value
            while (u := self.peek()) is not None and u.kind == "str":  # implicit concatenation
                value += u.value
                self.i += 1
            return _Lit(value, t.line)
        if t.kind == "num":
            return _Lit(t.value, t.line)
        if t.kind == "op" and t.value in "-+":
            u = self.next("a number")
            if u.kind != "num":
                raise GenotypeError(f"line {u.line}: expected a number after {t.value!r}, found {_tok_text(u)}")
            return _Lit(-u.value if t.value == "-" else u.value, t.line)
        if t.kind == "op" and t.value == "[":
            items, _ = self.items("]")
            return _Seq(items, t.line, "list")
        if t.kind == "op" and t.value == "(":
            items, comma = self.items(")")
            if len(items) == 1 and not comma:
                return items[0]  # parentheses only group
            return _Seq(items, t.line, "tuple")
        if t.kind == "name":
            name = t.value
            while self.is_op(".") and (u := self.peek(1)) is not None and u.kind == "name":
                name += "." + u.value
                self.i += 2
            if self.is_op("("):
                self.i += 1
                return self.call(name, t.line)
            return _Name(name, t.line)
        raise GenotypeError(f"line {t.line}: unexpected {_tok_text(t)}")

    def items(self, closer: str) -> tuple[list[_Expr], bool]:
        """Comma-separated values up to ``closer`` (trailing comma allowed); also says whether a comma was seen."""
        items: list[_Expr] = []
        comma = False
        while not self.is_op(closer):
            items.append(self.value())
            if self.is_op(","):
                self.i += 1
                comma = True
            elif not self.is_op(closer):
                t = self.next(repr(closer))
                raise GenotypeError(f"line {t.line}: expected ',' or {closer!r}, found {_tok_text(t)}")
        self.i += 1
        return items, comma

    def call(self, name: str, line: int) -> _Call:
        """Arguments of a call after its ``(``: positional values then ``key=value`` pairs."""
        args: list[_Expr] = []
        kwargs: dict[str, _Expr] = {}
        while not self.is_op(")"):
            t = self.peek()
            if t is not None and t.kind == "name" and self.is_op("=", 1):
                self.i += 2
                if t.value in kwargs:
                    raise GenotypeError(f"line {t.line}: {name}() gets {t.value!r} twice")
                kwargs[t.value] = self.value()
            else:
                if kwargs:
                    where = t.line if t is not None else line
                    raise GenotypeError(f"line {where}: {name}(): positional argument after keyword arguments")
                args.append(self.value())
            if self.is_op(","):
                self.i += 1
            elif not self.is_op(")"):
                u = self.next("')'")
                raise GenotypeError(f"line {u.line}: expected ',' or ')' in {name}(...), found {_tok_text(u)}")
        self.i += 1
        return _Call(name, args, kwargs, line)


def _tok_text(t: _Tok) -> str:
    """A token as it appears in the text, for messages."""
    return repr(t.value) if t.kind == "str" else f"'{t.value}'"


_CLASSIC_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_NESTED_FIELDS = ("genes", "concat", "reductions")
_OPT_FIELDS = ("genes", "seq", "concat", "reductions")
_GENOTYPE_CALLS = ("Genotype", "Genotype_nested", "Genotype_opt")


def parse_genotype_texts(text: str) -> dict[str, Genotype]:
    """All genotypes of a classic text (a file like the original ``genotypes.py``), by assigned name.

    Reads ``NAME = Genotype(...)``, ``NAME = Genotype_nested(...)`` and ``NAME = Genotype_opt(...)`` (D-DARTS'
    baselines: ``genes`` indexed by ``seq``, one entry per cell) statements, aliases such as
    ``DARTS = DARTS_V2``, and one bare unnamed genotype (keyed ``""``). Imports, docstrings and other
    literal assignments (``PRIMITIVES = [...]``) are skipped; nothing is ever executed.
    """
    found = _parse_all(text)
    for value in found.values():
        if isinstance(value, GenotypeError):
            raise value
    return found  # type: ignore[return-value]


def _parse_all(text: str) -> dict[str, Genotype | GenotypeError]:
    """Every genotype of a text by name; one that does not build is kept as its error, so that a file of many
    (D-DARTS' ``genotypes.py`` holds empty placeholders) still gives the good ones by name."""
    statements = _Parser(_tokenize(text)).statements()
    found: dict[str, Genotype | GenotypeError] = {}
    env: dict[str, _Expr] = {}
    for name, value in statements:
        if isinstance(value, _Call) and value.name.rsplit(".", 1)[-1] in _GENOTYPE_CALLS:
            key = name or ""
            if name is None and "" in found:
                raise GenotypeError(f"line {value.line}: a second unnamed genotype; name them (NAME = Genotype(...))")
            try:
                found[key] = _genotype_from_call(_resolve(value, env), name)
            except GenotypeError as e:
                if name is None:
                    raise
                found[key] = e
        elif name is not None and isinstance(value, _Name) and value.name in found:
            found[name] = found[value.name]
        elif name is not None:
            try:
                env[name] = _resolve(value, env)  # a literal used by later genotypes (D-DARTS' gene lists)
            except GenotypeError:
                env.pop(name, None)
        else:
            raise GenotypeError(
                f"line {value.line}: expected Genotype(...) or Genotype_nested(...), found {_describe(value)}"
            )
    return found


def _genotype_from_call(call: _Call, name: str | None) -> Genotype:
    """Build a genotype from a parsed ``Genotype(...)`` or ``Genotype_nested(...)`` call."""
    try:
        if call.name.rsplit(".", 1)[-1] in ("Genotype_nested", "Genotype_opt"):
            return _nested_genotype(call)
        return _classic_genotype(call)
    except GenotypeError as e:
        msg = str(e)
        if not msg.startswith("line "):
            msg = f"line {call.line}: {name}: {msg}" if name else f"line {call.line}: {msg}"
        raise GenotypeError(msg) from None


def _call_fields(call: _Call, fields: tuple[str, ...], positional_ok: bool) -> dict[str, _Expr]:
    """The call's arguments by field name; unknown or repeated fields are errors."""
    if call.args and not positional_ok:
        raise GenotypeError(f"{call.name}() takes keyword arguments only ({', '.join(fields)})")
    if len(call.args) > len(fields):
        raise GenotypeError(f"{call.name}() takes at most {len(fields)} arguments ({', '.join(fields)})")
    got: dict[str, _Expr] = dict(zip(fields, call.args, strict=False))
    for key, value in call.kwargs.items():
        if key not in fields:
            raise GenotypeError(f"{call.name}() has no field {key!r}; its fields are {', '.join(fields)}")
        if key in got:
            raise GenotypeError(f"{call.name}() gets {key!r} twice")
        got[key] = value
    return got


def _classic_genotype(call: _Call) -> Genotype:
    """``Genotype(normal=[...], normal_concat=..., reduce=[...], reduce_concat=...)`` in pair or triple form."""
    got = _call_fields(call, _CLASSIC_FIELDS, positional_ok=True)
    missing = [f for f in _CLASSIC_FIELDS if f not in got]
    if missing:
        raise GenotypeError(f"Genotype() is missing {', '.join(missing)}")
    normal = _design(got["normal"], "'normal'", _int_list(got["normal_concat"], "normal_concat"), False)
    reduce = _design(got["reduce"], "'reduce'", _int_list(got["reduce_concat"], "reduce_concat"), True)
    return Genotype(normal=normal, reduce=reduce)


def _nested_genotype(call: _Call) -> Genotype:
    """D-DARTS' ``Genotype_nested(genes=[[...], ...], concat=..., reductions=[...])``: one design per position;
    or its ``Genotype_opt(genes, seq, concat, reductions)``: position i takes ``genes[seq[i]]``."""
    opt = call.name.rsplit(".", 1)[-1] == "Genotype_opt"
    fields = _OPT_FIELDS if opt else _NESTED_FIELDS
    got = _call_fields(call, fields, positional_ok=True)
    for f in fields[:-1]:
        if f not in got:
            raise GenotypeError(f"{call.name}() is missing {f}")
    genes = got["genes"]
    if not isinstance(genes, _Seq) or not genes.items:
        raise GenotypeError(f"line {genes.line}: expected a list of cells (lists of genes) in 'genes'")
    if opt:
        seq = _int_list(got["seq"], "seq")
        bad = [i for i in seq if i >= len(genes.items)]
        if not seq or bad:
            raise GenotypeError(f"line {genes.line}: 'seq' must index the {len(genes.items)} entries of 'genes'"
                                + (f", found {bad[0]}" if bad else ", found none"))
        genes = _Seq([genes.items[i] for i in seq], genes.line, genes.kind)
    n = len(genes.items)
    concat_node = got["concat"]
    if isinstance(concat_node, _Seq) and concat_node.items and all(isinstance(c, _Seq) for c in concat_node.items):
        concats = [_int_list(c, f"concat[{i}]") for i, c in enumerate(concat_node.items)]  # one per cell
        if len(concats) != n:
            raise GenotypeError(f"line {concat_node.line}: 'concat' lists {len(concats)} cells, 'genes' {n}")
    else:
        concats = [_int_list(concat_node, "concat")] * n
    if "reductions" in got:
        reductions = _int_list(got["reductions"], "reductions")
        bad = [r for r in reductions if r >= n]
        if bad:
            raise GenotypeError(f"reductions {bad} are outside the {n} cells of 'genes' (positions 0..{n - 1})")
    else:
        reductions = (n // 3, 2 * n // 3)  # the DARTS positions
    cells = tuple(
        _design(cell, f"cell {i} of 'genes'", concats[i], i in reductions) for i, cell in enumerate(genes.items)
    )
    return Genotype(cells=cells)


def _int_list(node: _Expr, what: str) -> tuple[int, ...]:
    """A list/tuple of integers or ``range(...)`` of integer literals."""
    if isinstance(node, _Call) and node.name == "range":
        if node.kwargs or not 1 <= len(node.args) <= 3:
            raise GenotypeError(f"line {node.line}: range() in {what!r} takes one to three integers")
        bounds = []
        for a in node.args:
            if not isinstance(a, _Lit) or not isinstance(a.value, int):
                raise GenotypeError(f"line {node.line}: range() in {what!r} takes integers, found {_describe(a)}")
            bounds.append(a.value)
        if len(bounds) == 3 and bounds[2] == 0:
            raise GenotypeError(f"line {node.line}: range() in {what!r} has a step of 0")
        return tuple(range(*bounds))
    if isinstance(node, _Seq):
        values = []
        for item in node.items:
            if not isinstance(item, _Lit) or not isinstance(item.value, int) or item.value < 0:
                raise GenotypeError(
                    f"line {item.line}: {what!r} must list state indices (integers >= 0), found {_describe(item)}"
                )
            values.append(item.value)
        return tuple(values)
    raise GenotypeError(
        f"line {node.line}: expected a list of integers or range(a, b) in {what!r}, found {_describe(node)}"
    )


def _gene(item: _Expr, what: str) -> tuple[Any, ...]:
    """One gene: ``(op, input)`` or ``(op, to_node, from_node)``, as plain values."""
    shape = "(op, input) pairs or (op, to_node, from_node) triples"
    if not isinstance(item, _Seq) or len(item.items) not in (2, 3):
        raise GenotypeError(f"line {item.line}: expected a list of {shape} in {what}, found {_describe(item)}")
    op, *idx = item.items
    if not isinstance(op, _Lit) or not isinstance(op.value, str) or not op.value:
        raise GenotypeError(f"line {item.line}: a gene in {what} must start with an op name, found {_describe(op)}")
    for x in idx:
        if not isinstance(x, _Lit) or not isinstance(x.value, int) or x.value < 0:
            raise GenotypeError(
                f"line {item.line}: gene {op.value!r} in {what} needs integer states, found {_describe(x)}"
            )
    return (op.value, *(x.value for x in idx))


def _is_nested(node: _Seq) -> bool:
    """The nested-list form (pt.darts, the TF2 port): one list of ``(op, input)`` pairs per node."""
    return all(isinstance(item, _Seq) and all(isinstance(x, _Seq) for x in item.items) for item in node.items)


def _check_gene_order(item: _Expr, gene: tuple[Any, ...], target: int, what: str) -> None:
    """A node reads the cell inputs or earlier nodes; report the offending gene's own line."""
    if gene[-1] >= target >= 2:
        raise GenotypeError(
            f"line {item.line}: gene {gene!r} in {what}: state {target} reads state {gene[-1]}, which is not "
            f"computed before it; a node reads the cell inputs 0 and 1 or an earlier node"
        )


def _design(node: _Expr, what: str, concat: tuple[int, ...], reduction: bool) -> CellDesign:
    """A cell design from a gene list in any of the three forms the seed systems write:

    - flat ``(op, input)`` pairs, two per node in order (the 2018 DARTS code); ``concat`` applies;
    - nested lists, one list of ``(op, input)`` pairs per node (pt.darts, the TF2 port); ``concat`` applies;
    - ``(op, to, from)`` triples (FairDARTS, D-DARTS): a node no gene enters does not exist, a gene from a
      missing node is skipped, and the output concatenates the nodes that exist, whatever ``concat`` says
      (as their ``DCOCell`` does).
    """
    if not isinstance(node, _Seq):
        raise GenotypeError(
            f"line {node.line}: expected a list of (op, input) pairs in {what}, found {_describe(node)}"
        )
    if not node.items:
        raise GenotypeError(f"line {node.line}: {what} is empty; a cell needs at least one node")
    if _is_nested(node):
        nodes = []
        for i, item in enumerate(node.items):
            pairs = []
            for x in item.items:
                gene = _gene(x, what)
                if len(gene) != 2:
                    raise GenotypeError(f"line {x.line}: node {i} of {what} holds {gene!r}; nested lists hold "
                                        "(op, input) pairs")
                _check_gene_order(x, gene, 2 + i, what)
                pairs.append(gene)
            nodes.append(tuple(pairs))
        return _make_design(node, what, nodes, concat, reduction)
    genes = [_gene(item, what) for item in node.items]
    for i, (item, gene) in enumerate(zip(node.items, genes, strict=True)):
        _check_gene_order(item, gene, 2 + i // 2 if len(gene) == 2 else gene[1], what)
    lengths = {len(g) for g in genes}
    if len(lengths) > 1:
        raise GenotypeError(f"line {node.line}: {what} mixes (op, input) pairs and (op, to, from) triples")
    if lengths == {2}:
        if len(genes) % 2:
            raise GenotypeError(
                f"line {node.line}: {what} has {len(genes)} (op, input) pairs; the classic form takes two per "
                "node, so the count must be even"
            )
        nodes = [(genes[2 * i], genes[2 * i + 1]) for i in range(len(genes) // 2)]
        return _make_design(node, what, nodes, concat, reduction)
    try:
        return sparse_design(genes, reduction=reduction)
    except GenotypeError as e:
        raise GenotypeError(f"line {node.line}: {what}: {e}") from None


def sparse_design(genes: Iterable[tuple[str, int, int]], *, reduction: bool = False, nodes: int | None = None
                  ) -> CellDesign:
    """A cell from ``(op, to, from)`` genes as FairDARTS and D-DARTS build it: a node no gene enters does not
    exist, a gene from a missing node is skipped, and the output concatenates the nodes that exist. ``nodes``
    pads the cell to that many intermediate nodes (default: up to the last one a gene enters)."""
    by_target: dict[int, list[tuple[str, int]]] = {}
    for op, to, src in genes:
        if to < 2:
            raise GenotypeError(f"gene ({op!r}, {to}, {src}) targets state {to}; targets are intermediate nodes "
                                "(states >= 2)")
        by_target.setdefault(to, []).append((op, src))
    if not by_target:
        raise GenotypeError("a cell needs at least one gene")
    last = max(by_target) if nodes is None else 1 + nodes
    if last > _MAX_STATE or max(by_target) > last:
        raise GenotypeError(f"a gene targets state {max(by_target)}; at most {min(last, _MAX_STATE)} here")
    cells = [tuple(by_target.get(t, ())) for t in range(2, last + 1)]
    return CellDesign(nodes=tuple(cells), concat=tuple(sorted(by_target)), reduction=reduction)


def _make_design(node: _Seq, what: str, nodes: list, concat: tuple[int, ...], reduction: bool) -> CellDesign:
    try:
        return CellDesign(nodes=tuple(nodes), concat=concat, reduction=reduction)
    except GenotypeError as e:
        raise GenotypeError(f"line {node.line}: {what}: {e}") from None


# --------------------------------------------------------------------------------------------------
# Published genotypes (architectures are published facts; cells as their authors' code writes them)
# --------------------------------------------------------------------------------------------------

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
