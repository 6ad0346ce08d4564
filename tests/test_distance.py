"""Architecture distance: exact hand counts, metric properties, genotype forms, and run-directory resolution."""
from __future__ import annotations

import itertools
import random

import pytest

from dartsnas.distance import (
    architecture_distance,
    cell_distance,
    cell_size,
    format_distance,
    resolve_architecture,
)
from dartsnas.errors import ConfigError, GenotypeError
from dartsnas.genotype import CellDesign, Genotype, load_genotype, published_genotype, save_genotype

# The DARTS candidate ops without "none" (a derived genotype never keeps it).
OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
CONCAT = (2, 3, 4, 5)


def cell(*nodes, concat=CONCAT, reduction=False) -> CellDesign:
    return CellDesign(nodes=nodes, concat=concat, reduction=reduction)


# A DARTS-like cell: 4 nodes, 2 pairs each.
BASE = cell(
    (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),
    (("skip_connect", 0), ("sep_conv_3x3", 1)),
    (("skip_connect", 0), ("dil_conv_3x3", 2)),
    (("sep_conv_5x5", 3), ("max_pool_3x3", 1)),
)


def random_darts_cell(rng: random.Random, *, nodes: int = 4) -> CellDesign:
    """The DARTS derivation's shape: per node 2 pairs on 2 distinct inputs, each with one op."""
    return cell(*(tuple((rng.choice(OPS), src) for src in rng.sample(range(2 + i), 2)) for i in range(nodes)),
                concat=tuple(sorted(rng.sample(range(2, 2 + nodes), rng.randint(1, nodes)))))


def random_multi_cell(rng: random.Random, *, nodes: int = 4) -> CellDesign:
    """Any number of pairs per node, repeated inputs allowed (several ops on one edge); few ops, many collisions."""
    return cell(*(tuple((rng.choice(OPS[:3]), rng.randrange(2 + i)) for _ in range(rng.randint(1, 4)))
                  for i in range(nodes)),
                concat=tuple(sorted(rng.sample(range(2 + nodes), rng.randint(1, 3)))))


# -- identity and hand counts ------------------------------------------------------------------------------


def test_identical_cells_are_at_distance_zero_whatever_the_pair_order():
    assert cell_distance(BASE, BASE) == 0
    shuffled = cell(*(tuple(reversed(node)) for node in BASE.nodes), concat=tuple(reversed(CONCAT)))
    assert shuffled != BASE and cell_distance(BASE, shuffled) == 0
    repeated = cell(*(node + node[:1] for node in BASE.nodes))  # a pair listed twice is the same triple
    assert cell_distance(BASE, repeated) == 0
    g = published_genotype("DARTS_V2")
    assert architecture_distance(g, g) == {
        "distance": 0, "normalized": 0.0, "size": 24,  # per cell 8 triples + 4 concat states
        "cells": [{"cell": "normal", "distance": 0, "size": 12}, {"cell": "reduce", "distance": 0, "size": 12}],
    }


def test_swapping_the_op_of_one_edge_counts_one():
    other = cell(BASE.nodes[0], (("skip_connect", 0), ("sep_conv_5x5", 1)), *BASE.nodes[2:])
    assert cell_distance(BASE, other) == 1
    assert cell_size(BASE, other) == 9 + 4  # 8 triples + the new one, 4 concat states


def test_moving_an_edge_to_another_input_counts_two():
    other = cell(*BASE.nodes[:3], (("sep_conv_5x5", 2), ("max_pool_3x3", 1)))  # node 3: input 3 -> input 2
    assert cell_distance(BASE, other) == 2


def test_adding_an_edge_or_an_op_on_an_existing_edge_counts_one():
    extra_edge = cell(*BASE.nodes[:3], BASE.nodes[3] + (("avg_pool_3x3", 0),))
    assert cell_distance(BASE, extra_edge) == 1
    extra_op = cell(*BASE.nodes[:3], BASE.nodes[3] + (("avg_pool_3x3", 1),))  # edge (3, 1) now sums two ops
    assert cell_distance(BASE, extra_op) == 1
    # Swapping one of the two summed ops is one edit; swapping both is two.
    one_swapped = cell(*BASE.nodes[:3], (("sep_conv_5x5", 3), ("max_pool_3x3", 1), ("dil_conv_5x5", 1)))
    assert cell_distance(extra_op, one_swapped) == 1
    both_swapped = cell(*BASE.nodes[:3], (("sep_conv_5x5", 3), ("skip_connect", 1), ("dil_conv_5x5", 1)))
    assert cell_distance(extra_op, both_swapped) == 2
    # An edge with k ops that the other cell lacks counts k: dropping the two-op edge (3, 1) costs 2.
    dropped = cell(*BASE.nodes[:3], (("sep_conv_5x5", 3),))
    assert cell_distance(extra_op, dropped) == 2


def test_concat_difference_is_counted_per_state():
    assert cell_distance(BASE, cell(*BASE.nodes, concat=(2, 3, 4))) == 1
    assert cell_distance(BASE, cell(*BASE.nodes, concat=(4, 5))) == 2
    assert cell_distance(BASE, cell(*BASE.nodes, concat=(0, 2, 3, 4))) == 2  # 5 leaves, 0 enters


def test_darts_v1_vs_v2_matches_the_hand_count():
    # From the listings in genotype/published.py (node i takes pairs 2i and 2i+1; edges written input:op):
    # normal  V1: n0 {1:sep3, 0:sep3}  n1 {0:skip, 1:sep3}  n2 {0:skip, 1:sep3}  n3 {0:sep3, 2:skip}
    #         V2: n0 {0:sep3, 1:sep3}  n1 {0:sep3, 1:sep3}  n2 {1:sep3, 0:skip}  n3 {0:skip, 2:dil3}
    #   n0 same (order only) 0; n1 edge 0 skip->sep3 1; n2 same 0; n3 edge 0 sep3->skip 1, edge 2 skip->dil3 1;
    #   concat [2,3,4,5] both 0  => normal 3.
    #   size: triples n0 2, n1 3 (0:skip, 0:sep3, 1:sep3), n2 2, n3 4 (0:sep3, 0:skip, 2:skip, 2:dil3) = 11, +4 = 15.
    # reduce  V1: n0 {0:max, 1:max}  n1 {2:skip, 0:max}  n2 {0:max, 2:skip}  n3 {2:skip, 0:avg}
    #         V2: n0 {0:max, 1:max}  n1 {2:skip, 1:max}  n2 {0:max, 2:skip}  n3 {2:skip, 1:max}
    #   n0 0; n1 edge (0) only in V1, edge (1) only in V2: 2; n2 0; n3 (0:avg) only V1, (1:max) only V2: 2;
    #   concat 0  => reduce 4.
    #   size: n0 2, n1 3, n2 2, n3 3 = 10, +4 = 14.
    # Total 3 + 4 = 7; normalised 7 / (15 + 14) = 7/29.
    result = architecture_distance(published_genotype("DARTS_V1"), published_genotype("DARTS_V2"))
    assert result["cells"] == [{"cell": "normal", "distance": 3, "size": 15},
                               {"cell": "reduce", "distance": 4, "size": 14}]
    assert result["distance"] == 7
    assert result["normalized"] == pytest.approx(7 / 29)


# -- metric properties -------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [random_darts_cell, random_multi_cell], ids=["darts", "multi-op"])
def test_symmetry_zero_iff_equal_and_normalised_range(make):
    rng = random.Random(0)
    for _ in range(200):
        a, b = make(rng), make(rng)
        d = cell_distance(a, b)
        assert d == cell_distance(b, a)
        assert 0 <= d <= cell_size(a, b)
        same = ({(i, s, op) for i, n in enumerate(a.nodes) for op, s in n}, set(a.concat)) == \
               ({(i, s, op) for i, n in enumerate(b.nodes) for op, s in n}, set(b.concat))
        assert (d == 0) == same


@pytest.mark.parametrize("make", [random_darts_cell, random_multi_cell], ids=["darts", "multi-op"])
def test_triangle_inequality(make):
    rng = random.Random(1)
    cells = [make(rng) for _ in range(12)]
    for a, b, c in itertools.permutations(cells, 3):
        assert cell_distance(a, c) <= cell_distance(a, b) + cell_distance(b, c)
    # The case that rules out "an edge in one cell only counts 1": three ops vs three others on one edge.
    x = cell((("max_pool_3x3", 0), ("avg_pool_3x3", 0), ("skip_connect", 0)), concat=(2,))
    y = cell((("sep_conv_3x3", 1),), concat=(2,))
    z = cell((("sep_conv_3x3", 0), ("sep_conv_5x5", 0), ("dil_conv_3x3", 0)), concat=(2,))
    assert cell_distance(x, z) == 3 <= cell_distance(x, y) + cell_distance(y, z) == 4 + 4


def test_architecture_triangle_inequality_on_random_genotypes():
    rng = random.Random(2)
    gs = [Genotype(normal=random_darts_cell(rng), reduce=random_darts_cell(rng)) for _ in range(8)]
    for a, b, c in itertools.permutations(gs, 3):
        ab, bc, ac = (architecture_distance(*p)["distance"] for p in ((a, b), (b, c), (a, c)))
        assert ac <= ab + bc
        assert architecture_distance(a, b)["distance"] == architecture_distance(b, a)["distance"]


# -- genotype forms ----------------------------------------------------------------------------------------


def per_cell_from(g: Genotype, layers: int = 8) -> Genotype:
    """The DARTS genotype laid out per position, reductions at layers // 3 and 2 * layers // 3."""
    reductions = {layers // 3, 2 * layers // 3}
    return Genotype(cells=[g.reduce if i in reductions else g.normal for i in range(layers)])


def test_darts_genotype_expands_to_the_per_cell_positions():
    v1, v2 = published_genotype("DARTS_V1"), published_genotype("DARTS_V2")
    per_cell = per_cell_from(v2)
    same = architecture_distance(v2, per_cell)
    assert same["distance"] == 0 and [c["cell"] for c in same["cells"]] == list(range(8))
    # V1 against V2 laid out in 8 cells: 6 normal cells at 3 each, 2 reduction cells at 4 each.
    result = architecture_distance(v1, per_cell)
    assert [c["distance"] for c in result["cells"]] == [3, 3, 4, 3, 3, 4, 3, 3]
    assert result["distance"] == 6 * 3 + 2 * 4
    assert result["normalized"] == pytest.approx(26 / (6 * 15 + 2 * 14))
    assert architecture_distance(per_cell, v1) == result  # symmetric, same labels
    # One changed position shows up at that position only.
    cells = list(per_cell.cells)
    cells[6] = cell(*v2.normal.nodes[:3], (("skip_connect", 0), ("dil_conv_5x5", 2)))
    changed = architecture_distance(v2, Genotype(cells=cells))
    assert [c["distance"] for c in changed["cells"]] == [0] * 6 + [1, 0]


def test_per_cell_genotypes_of_different_lengths_are_refused():
    v2 = published_genotype("DARTS_V2")
    with pytest.raises(GenotypeError, match="8 and 5 cells") as err:
        architecture_distance(per_cell_from(v2, 8), per_cell_from(v2, 5))
    assert "\n" not in str(err.value)


def test_format_distance_reports_total_normalised_and_cells():
    result = architecture_distance(published_genotype("DARTS_V1"), published_genotype("DARTS_V2"))
    text = format_distance(result, "DARTS_V1", "DARTS_V2")
    assert "DARTS_V1" in text and "DARTS_V2" in text and " 7 " in text and "0.241" in text
    assert "normal" in text.splitlines()[1] and "3" in text.splitlines()[1]
    assert "reduce" in text.splitlines()[2] and "4" in text.splitlines()[2]


# -- resolving sources -------------------------------------------------------------------------------------


@pytest.fixture
def search_run(tmp_path):
    run = tmp_path / "search-run"
    (run / "genotypes").mkdir(parents=True)
    (run / "config.yaml").write_text("dataset: cifar10\nnodes: 4\nmultiplier: 4\n")
    save_genotype(published_genotype("DARTS_V1"), run / "genotypes" / "epoch_001.json")
    save_genotype(published_genotype("PDARTS"), run / "genotypes" / "epoch_002.json")
    save_genotype(published_genotype("DARTS_V2"), run / "genotype.json")
    return run


def test_resolve_architecture_reads_run_directories(search_run, tmp_path):
    assert resolve_architecture(str(search_run)) == published_genotype("DARTS_V2")
    assert resolve_architecture(search_run, epoch=1) == published_genotype("DARTS_V1")
    assert resolve_architecture(str(search_run), epoch=2) == published_genotype("PDARTS")
    # A training run: config.yaml and genotype.json only.
    train = tmp_path / "train-run"
    train.mkdir()
    (train / "config.yaml").write_text("genotype: DARTS_V2\nlayers: 20\n")
    save_genotype(published_genotype("PC_DARTS_cifar"), train / "genotype.json")
    assert resolve_architecture(train) == published_genotype("PC_DARTS_cifar")
    # Files and published names go through load_genotype.
    assert resolve_architecture(str(search_run / "genotypes" / "epoch_001.json")) == published_genotype("DARTS_V1")
    assert resolve_architecture("DARTS_V2") == published_genotype("DARTS_V2")
    d = architecture_distance(resolve_architecture(search_run, epoch=1), resolve_architecture(search_run))
    assert d["distance"] == 7


@pytest.mark.parametrize(
    "case, error, match",
    [
        ("epoch 3", ConfigError, r"no genotype for epoch 3; saved epochs: 1, 2"),
        ("epoch 0", ConfigError, r"epoch must be an integer >= 1"),
        ("train epoch", ConfigError, r"saved no per-epoch genotypes"),
        ("no final", ConfigError, r"no final genotype yet; pass an epoch \(saved: 1, 2\)"),
        ("no config", ConfigError, r"not a dartsnas run directory"),
        ("file epoch", ConfigError, r"an epoch applies to a run directory only"),
        ("unknown name", GenotypeError, r"no genotype file or published genotype named 'NOPE'"),
    ],
)
def test_resolve_architecture_errors_are_one_line(search_run, tmp_path, case, error, match):
    train = tmp_path / "train-run"
    train.mkdir()
    (train / "config.yaml").write_text("genotype: DARTS_V2\n")
    save_genotype(published_genotype("DARTS_V2"), train / "genotype.json")
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    calls = {
        "epoch 3": lambda: resolve_architecture(search_run, epoch=3),
        "epoch 0": lambda: resolve_architecture(search_run, epoch=0),
        "train epoch": lambda: resolve_architecture(train, epoch=1),
        "no final": lambda: (search_run / "genotype.json").unlink() or resolve_architecture(search_run),
        "no config": lambda: resolve_architecture(empty),
        "file epoch": lambda: resolve_architecture("DARTS_V2", epoch=1),
        "unknown name": lambda: resolve_architecture("NOPE"),
    }
    with pytest.raises(error, match=match) as err:
        calls[case]()
    assert "\n" not in str(err.value)


# -- D-DARTS' Hausdorff metric -------------------------------------------------------------------------------------
def _brute_force_hausdorff(a, b, columns, nodes):
    """Independent reference: scipy's weighted Hamming distance between every pair of edge rows."""
    from scipy.spatial.distance import hamming

    from dartsnas.distance import OP_WEIGHTS
    from dartsnas.genotype import gene_matrix

    w = [OP_WEIGHTS[c] for c in columns]
    x, y = gene_matrix(a, columns, nodes) * 10.0, gene_matrix(b, columns, nodes) * 10.0
    directed = [max(min(hamming(u, v, w=w) for v in q) for u in p) for p, q in ((x, y), (y, x))]
    return max(directed)


def test_hausdorff_metric_of_d_darts_files_matches_a_brute_force_reference():
    from pathlib import Path

    from dartsnas.distance import hausdorff_metric
    from dartsnas.ops.ddarts import DARTOPTI_PRIMITIVES

    folder = Path(__file__).parent / "data" / "seeds" / "d-darts"
    sparse = load_genotype(folder / "ResNet18_cifar10_threshold_sparse_0.85.txt")
    edge = load_genotype(folder / "ResNet18_cifar10_threshold_edge_0.85.txt")
    result = hausdorff_metric(sparse, edge)
    expected = [_brute_force_hausdorff(x, y, DARTOPTI_PRIMITIVES, 4) for x, y in zip(sparse.cells, edge.cells)]
    assert [c["metric"] for c in result["cells"]] == pytest.approx(expected, abs=1e-12)
    assert result["metric"] == pytest.approx(sum(expected) / 4, abs=1e-12) and 0 < result["metric"] <= 1
    assert hausdorff_metric(edge, sparse)["metric"] == pytest.approx(result["metric"], abs=1e-15)  # symmetric
    assert hausdorff_metric(sparse, sparse)["metric"] == 0.0


def test_hausdorff_metric_by_hand():
    from dartsnas.distance import OP_WEIGHTS, hausdorff_metric

    # one node; A: sep_conv_3x3 from 0; B: sep_conv_3x3 from 0 and skip from 1. Rows: edge 0 and edge 1.
    # A's rows: (sep), (); B's rows: (sep), (skip). Row () of A is nearest B's (sep) or (skip): one op differs,
    # the nearer being the lighter skip. Row (skip) of B: nearest A's () (skip differs). The rest are 0.
    a = CellDesign(nodes=[[("sep_conv_3x3", 0)]], concat=[2])
    b = CellDesign(nodes=[[("sep_conv_3x3", 0), ("skip_connect", 1)]], concat=[2])
    ga, gb = Genotype(normal=a, reduce=a), Genotype(normal=b, reduce=b)
    total = sum(OP_WEIGHTS.values())  # the twelve DARTOpti columns
    assert hausdorff_metric(ga, gb)["metric"] == pytest.approx(OP_WEIGHTS["skip_connect"] / total, abs=1e-12)
