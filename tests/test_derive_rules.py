"""Derivation rules: top-k unchanged, D-DARTS' threshold-sparse and threshold-edge, multi-op edges end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dartsnas.errors import GenotypeError
from dartsnas.genotype import (
    DERIVATION_RULES,
    CellDesign,
    Genotype,
    derive_cell,
    derive_genotype,
    derive_per_cell_genotype,
    load_genotype,
    num_edges,
    parse_genotype_text,
    save_genotype,
    softmax,
)
from dartsnas.network import EvalNetwork
from dartsnas.ops import build_op
from dartsnas.profile import count_macs, count_parameters

PRIMS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
DARTS_PRIMITIVES = (
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)


def hand_weights() -> np.ndarray:
    """Gate values for nodes=3 (edges: node 0 <- states 0, 1; node 1 <- 0, 1, 2; node 2 <- 0, 1, 2, 3).

    Columns are PRIMS. Rows need not sum to 1 (sigmoid gates). With threshold 0.5:
    node 0: edge from 0 has max_pool 0.6 and sep_conv 0.7 (both kept; 'none' 0.9 never), edge from 1 skip 0.55.
    node 1: the two strongest edges are from 2 (max_pool 0.8; sep_conv 0.49 is below the threshold) and from
            0 (best 0.45: nothing reaches 0.5, so the edge is dropped); the edge from 1 is strong only in 'none'.
    node 2: three edges reach 0.5 (from 1: 0.7, from 0: 0.6, from 3: 0.55); sparse keeps the two strongest.
    """
    return np.array([
        [0.90, 0.60, 0.20, 0.70],  # node 0 <- 0
        [0.00, 0.10, 0.55, 0.30],  # node 0 <- 1
        [0.00, 0.30, 0.10, 0.45],  # node 1 <- 0
        [0.99, 0.20, 0.10, 0.10],  # node 1 <- 1
        [0.00, 0.80, 0.00, 0.49],  # node 1 <- 2
        [0.00, 0.60, 0.10, 0.10],  # node 2 <- 0
        [0.00, 0.10, 0.10, 0.70],  # node 2 <- 1
        [0.95, 0.10, 0.20, 0.10],  # node 2 <- 2
        [0.00, 0.10, 0.55, 0.10],  # node 2 <- 3
    ])


def reference_top_k(w: np.ndarray, prims, nodes: int, k: int = 2) -> tuple:
    """The DARTS code's rule, written out independently: per node the k edges with the largest non-'none'
    weight (ties: lower input), each with its best non-'none' op (ties: earlier primitive)."""
    allowed = [p for p, name in enumerate(prims) if name != "none"]
    out, start = [], 0
    for i in range(nodes):
        rows = w[start:start + 2 + i]
        best = [max(allowed, key=lambda p, r=r: (r[p], -p)) for r in rows]  # first maximum
        order = sorted(range(2 + i), key=lambda j: (-rows[j][best[j]], j))[:k]
        out.append(tuple((prims[best[j]], j) for j in order))
        start += 2 + i
    return tuple(out)


# ---------------------------------------------------------------------------------------------- top-k


def test_rules_are_exported() -> None:
    assert DERIVATION_RULES == ("top-k", "threshold-sparse", "threshold-edge", "threshold-complete")


def test_top_k_hand_example_unchanged() -> None:
    cell = derive_cell(hand_weights(), PRIMS, 3, 3)
    assert cell == derive_cell(hand_weights(), PRIMS, 3, 3, rule="top-k")
    assert cell.nodes == (
        (("sep_conv_3x3", 0), ("skip_connect", 1)),
        (("max_pool_3x3", 2), ("sep_conv_3x3", 0)),
        (("sep_conv_3x3", 1), ("max_pool_3x3", 0)),
    )
    assert cell.concat == (2, 3, 4)


@pytest.mark.parametrize("seed", range(5))
def test_top_k_matches_the_reference_on_random_weights(seed: int) -> None:
    rng = np.random.default_rng(seed)
    w = softmax(rng.normal(size=(num_edges(4), 8)))
    for k in (1, 2, 3):
        assert derive_cell(w, DARTS_PRIMITIVES, 4, 4, k=k).nodes == reference_top_k(w, DARTS_PRIMITIVES, 4, k)


# ---------------------------------------------------------------------------------------------- threshold rules


def test_threshold_sparse_hand_example() -> None:
    cell = derive_cell(hand_weights(), PRIMS, 3, 3, rule="threshold-sparse", threshold=0.5)
    assert cell.nodes == (
        (("sep_conv_3x3", 0), ("skip_connect", 1)),  # the best op of each of the two strongest edges
        (("max_pool_3x3", 2),),  # the second edge's best op (sep_conv 0.45 from 0) is below 0.5: no gene
        (("sep_conv_3x3", 1), ("max_pool_3x3", 0)),  # the edge from 3 (0.55) is the third strongest
    )
    assert cell.concat == (2, 3, 4) and "none" not in cell.ops()


def test_threshold_edge_and_complete_hand_examples() -> None:
    edge = derive_cell(hand_weights(), PRIMS, 3, 3, rule="threshold-edge", threshold=0.5)
    assert edge.nodes == (
        (("max_pool_3x3", 0), ("sep_conv_3x3", 0), ("skip_connect", 1)),  # two ops on one edge, weaker first
        (("max_pool_3x3", 2),),
        (("max_pool_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 3)),  # every edge, in input order
    )
    assert derive_cell(hand_weights(), PRIMS, 3, 3, rule="threshold-complete", threshold=0.5) == edge
    # complete keeps a third op on an edge where edge keeps the two largest
    w = hand_weights()
    w[0, 2] = 0.65
    assert derive_cell(w, PRIMS, 3, 3, rule="threshold-edge", threshold=0.5).nodes[0] == (
        ("skip_connect", 0), ("sep_conv_3x3", 0), ("skip_connect", 1))
    assert derive_cell(w, PRIMS, 3, 3, rule="threshold-complete", threshold=0.5).nodes[0] == (
        ("max_pool_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 0), ("skip_connect", 1))


@pytest.mark.parametrize("rule", ["threshold-sparse", "threshold-edge", "threshold-complete"])
def test_a_node_without_genes_drops_out_without_fallback(rule: str) -> None:
    w = np.array([
        [0.99, 0.30, 0.20, 0.10],  # node 0 <- 0: only 'none' is high
        [0.00, 0.10, 0.40, 0.20],  # node 0 <- 1: nothing reaches 0.9, so node 0 (state 2) does not exist
        [0.00, 0.95, 0.00, 0.00],  # node 1 <- 0
        [0.00, 0.00, 0.00, 0.91],  # node 1 <- 1
        [0.00, 0.00, 0.92, 0.00],  # node 1 <- 2: a gene from the missing node, kept and skipped when built
    ])
    cell = derive_cell(w, PRIMS, 2, 2, rule=rule, threshold=0.9)
    if rule == "threshold-sparse":  # the two strongest edges: from 0 (0.95) and from 2 (0.92)
        genes = (("max_pool_3x3", 0), ("skip_connect", 2))
    else:
        genes = (("max_pool_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 2))
    assert cell.nodes == ((), genes)
    assert cell.concat == (3,) and cell.live_pairs(1) == genes[:-1]
    # a node whose only genes read a missing node drops out too (the original code could not run it)
    w[2, 1] = w[3, 3] = 0.0
    with pytest.raises(GenotypeError, match="no gate of this cell reaches the threshold 0.9"):
        derive_cell(w, PRIMS, 2, 2, rule=rule, threshold=0.9)
    w[1, 2] = 0.95  # node 0 exists again
    assert derive_cell(w, PRIMS, 2, 2, rule=rule, threshold=0.9).nodes == ((("skip_connect", 1),),
                                                                            (("skip_connect", 2),))
    with pytest.raises(GenotypeError, match="no gate of this cell reaches the threshold 1.0"):
        derive_cell(w, PRIMS, 2, 2, rule=rule, threshold=1.0)


def reference_d_darts(w: np.ndarray, prims, nodes: int, rule: str, T: float) -> list[tuple[str, int, int]]:
    """D-DARTS' utils.parse threshold rules, written out independently from their description: the
    (op, to, from) genes in the order D-DARTS lists them. ``prims`` has no 'none' (D-DARTS' spaces have none)."""
    genes, start = [], 0
    for i in range(nodes):
        rows = w[start:start + 2 + i]
        start += 2 + i
        if rule == "threshold-sparse":
            strongest = sorted(range(len(rows)), key=lambda j: (-max(rows[j]), j))[:2]
            for j in strongest:
                best = 0
                for p in range(1, len(prims)):
                    if rows[j][p] > rows[j][best]:
                        best = p
                if rows[j][best] >= T:
                    genes.append((prims[best], 2 + i, j))
        else:
            for j in range(len(rows)):
                ops = range(len(prims))
                if rule == "threshold-edge":
                    ops = sorted(ops, key=lambda p: (rows[j][p], p))[-2:]
                genes += [(prims[p], 2 + i, j) for p in ops if rows[j][p] >= T]
    return genes


@pytest.mark.parametrize("rule", ["threshold-sparse", "threshold-edge", "threshold-complete"])
def test_threshold_rules_derive_what_d_darts_derives(rule: str) -> None:
    prims = DARTS_PRIMITIVES[1:]  # D-DARTS' seven ops
    T = 0.85
    rng = np.random.default_rng(7)
    pruned_cases = 0
    for _ in range(200):
        w = rng.uniform(size=(num_edges(4), len(prims)))
        # gates around the threshold, exactly at it, and ties
        w[rng.uniform(size=w.shape) < 0.2] = T
        w[rng.uniform(size=w.shape) < 0.1] = np.nextafter(T, 0.0)
        w[rng.uniform(size=w.shape) < 0.1] = 0.9
        expected = reference_d_darts(w, prims, 4, rule, T)
        # D-DARTS would fail to train a node whose genes all read missing nodes; we drop it (documented)
        live = {0, 1}
        for to in range(2, 6):
            mine = [g for g in expected if g[1] == to]
            if any(src in live for _, _, src in mine):
                live.add(to)
            elif mine:
                pruned_cases += 1
                expected = [g for g in expected if g[1] != to]
        if len(live) == 2:
            continue
        cell = derive_cell(w, prims, 4, 4, rule=rule, threshold=T)
        assert [(op, 2 + i, src) for i, node in enumerate(cell.nodes) for op, src in node] == expected
        assert cell.concat == tuple(sorted(live - {0, 1}))
    assert pruned_cases < 20


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rule": "threshold-sparse"}, "needs a threshold"),
        ({"rule": "threshold-edge"}, "needs a threshold"),
        ({"rule": "threshold-sparse", "threshold": 0.0}, r"in \(0, 1\]"),
        ({"rule": "threshold-sparse", "threshold": 1.5}, r"in \(0, 1\]"),
        ({"rule": "threshold-sparse", "threshold": float("nan")}, r"in \(0, 1\]"),
        ({"rule": "threshold-sparse", "threshold": True}, "must be a number"),
        ({"rule": "threshold-sparse", "threshold": "0.5"}, "must be a number"),
        ({"rule": "top-k", "threshold": 0.5}, "threshold applies to the threshold rules only"),
        ({"rule": "threshold-edge", "threshold": 0.5, "k": 3}, "k does not apply"),
        ({"rule": "threshold-complete", "threshold": 0.5, "k": 1}, "k does not apply"),
        ({"rule": "top-3"}, "unknown derivation rule 'top-3'; choose one of top-k, threshold-sparse"),
    ],
)
def test_bad_rule_or_threshold_is_one_line(kwargs: dict, match: str) -> None:
    with pytest.raises(GenotypeError, match=match) as info:
        derive_cell(hand_weights(), PRIMS, 3, 3, **kwargs)
    assert "\n" not in str(info.value)


def test_threshold_rules_refuse_raw_alphas() -> None:
    alphas = np.random.default_rng(0).normal(size=(num_edges(3), 4))
    with pytest.raises(GenotypeError, match="softmax or sigmoid"):
        derive_cell(alphas, PRIMS, 3, 3, rule="threshold-sparse", threshold=0.5)


def test_rules_pass_through_genotype_helpers() -> None:
    w = hand_weights()
    g = derive_genotype(w, w, PRIMS, 3, 3, rule="threshold-edge", threshold=0.5)
    assert g.normal.nodes == derive_cell(w, PRIMS, 3, 3, rule="threshold-edge", threshold=0.5).nodes
    assert g.reduce.reduction and g.reduce.nodes == g.normal.nodes
    p = derive_per_cell_genotype([w, w, w], [1], PRIMS, 3, 3, rule="threshold-sparse", threshold=0.5)
    assert p.reductions() == [1]
    assert p.cells[0].nodes == derive_cell(w, PRIMS, 3, 3, rule="threshold-sparse", threshold=0.5).nodes
    with pytest.raises(GenotypeError, match="needs a threshold"):
        derive_per_cell_genotype([w], [], PRIMS, 3, 3, rule="threshold-sparse")
    assert derive_genotype(w, w, PRIMS, 3, 3) == derive_genotype(w, w, PRIMS, 3, 3, rule="top-k")


# ---------------------------------------------------------------------------------------------- files


def multi_op_genotype() -> Genotype:
    """Normal cell from threshold-sparse (a sep_conv and a max_pool on one edge), reduce cell from top-k."""
    w = hand_weights()
    normal = derive_cell(w, PRIMS, 3, 3, rule="threshold-sparse", threshold=0.5)
    reduce = derive_cell(w, PRIMS, 3, 3, reduction=True)
    return Genotype(normal=normal, reduce=reduce, primitives=PRIMS)


def test_json_round_trip_of_multi_op_designs(tmp_path: Path) -> None:
    g = multi_op_genotype()
    assert load_genotype(save_genotype(g, tmp_path / "g.json")) == g
    assert Genotype.from_dict(g.to_dict()) == g
    same_input_twice = CellDesign(nodes=[[("sep_conv_3x3", 0), ("max_pool_3x3", 0)]], concat=[2])
    assert same_input_twice.nodes == ((("sep_conv_3x3", 0), ("max_pool_3x3", 0)),)
    per_cell = Genotype(cells=(g.normal, g.reduce, g.normal), primitives=PRIMS)
    assert load_genotype(save_genotype(per_cell, tmp_path / "p.json")) == per_cell


def test_classic_text_refuses_variable_pairs_but_str_reads_back() -> None:
    g = multi_op_genotype()
    with pytest.raises(GenotypeError, match="normal node 1 has 1 inputs; the classic text form needs exactly two"):
        g.to_classic()
    assert str(g).startswith("Genotype(normal=[[('sep_conv_3x3', 0), ('skip_connect', 1)], [")  # nested lists
    assert parse_genotype_text(str(g)) == Genotype(normal=g.normal, reduce=g.reduce)


# ---------------------------------------------------------------------------------------------- network


def _fixed_parameters(net: EvalNetwork) -> int:
    """Everything but the cells' ops: stem, each cell's two preprocessing layers, classifier."""
    parts = [net.stem, net.classifier]
    parts += [m for cell in net.cells for m in (cell.preprocess0, cell.preprocess1)]
    return sum(p.numel() for m in parts for p in m.parameters())


def _op_parameters(name: str, C: int, stride: int = 1) -> int:
    """Parameters of one op built on its own (a stride-2 skip_connect is a FactorizedReduce, with weights)."""
    return sum(p.numel() for p in build_op(name, C, stride, True).parameters())


def test_multi_op_network_counts_trains_and_sums_every_op() -> None:
    torch.manual_seed(0)
    g = multi_op_genotype()
    C, layers = 4, 3  # cells: 0 normal (C), 1 and 2 reduce (2C, 4C)
    net = EvalNetwork(g, C, 10, layers, drop_path_prob=0.2)
    designs = [g.normal, g.reduce, g.reduce]
    widths = [C, 2 * C, 4 * C]
    for cell, design in zip(net.cells, designs, strict=True):
        assert [len(pairs) for pairs in cell.wiring] == [len(node) for node in design.nodes]
        assert len(cell.ops) == sum(len(node) for node in design.nodes)
    # Independent count: every pair's op built on its own at its cell's width and stride, plus the fixed parts.
    expected_ops = sum(_op_parameters(op, w, 2 if d.reduction and src < 2 else 1)
                       for d, w in zip(designs, widths, strict=True) for node in d.nodes for op, src in node)
    assert count_parameters(net) == _fixed_parameters(net) + expected_ops
    # The sep_conv next to the max_pool on node 0's first edge costs exactly one sep_conv_3x3 at width C,
    # in parameters and in multiply-adds.
    without = [(op, src) for op, src in g.normal.nodes[0] if op != "sep_conv_3x3"]
    base = CellDesign(nodes=[without] + list(g.normal.nodes[1:]), concat=g.normal.concat)
    net_base = EvalNetwork(Genotype(normal=base, reduce=g.reduce), C, 10, layers)
    assert count_parameters(net) - count_parameters(net_base) == _op_parameters("sep_conv_3x3", C)
    sep = build_op("sep_conv_3x3", C, 1, True)
    assert count_macs(net, (3, 16, 16)) - count_macs(net_base, (3, 16, 16)) == count_macs(sep, (C, 16, 16))
    # forward/backward with drop path applied per op: every parameter gets a gradient
    x = torch.randn(2, 3, 16, 16)
    net.train()
    logits, aux = net(x)
    assert logits.shape == (2, 10) and aux is None
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
