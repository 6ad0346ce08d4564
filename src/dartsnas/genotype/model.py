"""The genotype data model: ``CellDesign`` (one cell's nodes, each a tuple of ``(op, input)`` pairs, and its output)
and ``Genotype`` (one design per cell type, or one per cell position), with their JSON-ready dicts and text forms;
sparse cells from ``(op, to, from)`` genes; a cell as D-DARTS' one-hot alpha matrix."""
from __future__ import annotations

import dataclasses
import json
import operator
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import GenotypeError

FORMAT_NAME = "dartsnas-genotype"
FORMAT_VERSION = 1

Pair = tuple[str, int]
Node = tuple[Pair, ...]
PathLike = str | os.PathLike[str]


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


def num_edges(nodes: int) -> int:
    """Edges of a cell with ``nodes`` intermediate nodes: node i reads states 0..i+1, so sum of (2 + i)."""
    return sum(2 + i for i in range(nodes))


def gene_matrix(design: CellDesign, columns: Sequence[str], nodes: int) -> np.ndarray:
    """D-DARTS' view of a cell as alphas: an ``[edges, ops]`` boolean matrix marking every pair's edge and op
    (pairs from missing nodes included) in a cell of ``nodes`` intermediate nodes (rows node by node)."""
    cols = list(columns)
    rows = np.zeros((num_edges(nodes), len(cols)), dtype=bool)
    for i, pairs in enumerate(design.nodes):
        for op, src in pairs:
            rows[num_edges(i) + src, cols.index(op)] = True
    return rows


_MAX_STATE = 1000  # states per cell in a triple gene: bounds the nodes a file can make us allocate


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
