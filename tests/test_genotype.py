"""Genotype data model, JSON files, classic text parsing (no eval), derivation and published genotypes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dartsnas.errors import GenotypeError
from dartsnas.genotype import (
    CellDesign,
    Genotype,
    derive_cell,
    derive_genotype,
    derive_per_cell_genotype,
    load_genotype,
    num_edges,
    parse_genotype_text,
    parse_genotype_texts,
    published_genotype,
    published_names,
    save_genotype,
    softmax,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "genotypes"
DARTS_PRIMITIVES = (
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)
CLASSIC_NAMES = ["NASNet", "AmoebaNet", "DARTS_V1", "DARTS_V2", "PC_DARTS_cifar", "PC_DARTS_image", "PDARTS"]


def shared(*parts: str) -> Path:
    """A file under ../shared/genotypes, skipping the test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


def per_cell_example() -> Genotype:
    """A small per-position genotype with uneven input counts and a reduction in the middle."""
    a = CellDesign(nodes=[[("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0)], [("dil_conv_3x3", 2)]],
                   concat=[2, 3])
    b = CellDesign(nodes=[[("max_pool_3x3", 0)], [("avg_pool_3x3", 1), ("sep_conv_5x5", 2)]], concat=[3],
                   reduction=True)
    return Genotype(cells=(a, b, a), primitives=DARTS_PRIMITIVES)


# ---------------------------------------------------------------------------------------------- data model


def test_data_model_is_hashable_and_compares_by_value() -> None:
    a = CellDesign(nodes=[[("sep_conv_3x3", 0), ("sep_conv_3x3", 1)]], concat=[2])
    b = CellDesign(nodes=((("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),), concat=(2,))
    assert a == b and hash(a) == hash(b)
    g = Genotype(normal=a, reduce=b)
    assert g.reduce.reduction and not g.normal.reduction  # the flag follows the slot
    assert {g, Genotype(normal=b, reduce=a)} == {g}
    assert g.ops() == ["sep_conv_3x3"] and not g.is_per_cell()
    assert g.cell_designs() == [g.normal, g.reduce]
    p = per_cell_example()
    assert p.is_per_cell() and p.reductions() == [1]
    assert p.ops() == ["avg_pool_3x3", "dil_conv_3x3", "max_pool_3x3", "sep_conv_3x3", "sep_conv_5x5", "skip_connect"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"nodes": [], "concat": [0]}, "at least one intermediate node"),
        ({"nodes": [[]], "concat": [2]}, "at least one intermediate node"),
        ({"nodes": [[], [("sep_conv_3x3", 0)]], "concat": [2, 3]}, "state 2, a node without inputs"),
        ({"nodes": [[], [("sep_conv_3x3", 2)]], "concat": [3]}, r"node 1 \(state 3\) reads only states \[2\]"),
        ({"nodes": [[("sep_conv_3x3", 2)]], "concat": [2]}, "not computed before it"),
        ({"nodes": [[("", 0)]], "concat": [2]}, "non-empty strings"),
        ({"nodes": [[("sep_conv_3x3", 0)]], "concat": []}, "concat is empty"),
        ({"nodes": [[("sep_conv_3x3", 0)]], "concat": [3]}, "states 0..2 only"),
        ({"nodes": [[("sep_conv_3x3", 0.0)]], "concat": [2]}, "must be an integer"),
    ],
)
def test_cell_design_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(GenotypeError, match=match):
        CellDesign(**kwargs)


def test_genotype_validation() -> None:
    cell = CellDesign(nodes=[[("sep_conv_3x3", 0)]], concat=[2])
    with pytest.raises(GenotypeError, match="not both"):
        Genotype(normal=cell, reduce=cell, cells=(cell,))
    with pytest.raises(GenotypeError, match="both a normal and a reduce"):
        Genotype(normal=cell)
    with pytest.raises(GenotypeError, match="needs normal and reduce"):
        Genotype()
    with pytest.raises(GenotypeError, match="not among its primitives"):
        Genotype(normal=cell, reduce=cell, primitives=("none", "skip_connect"))


# ---------------------------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("make", [lambda: published_genotype("NASNet"), per_cell_example])
def test_json_round_trip_is_exact(tmp_path: Path, make) -> None:
    g = make()
    out = save_genotype(g, tmp_path / "sub" / "genotype.json")
    assert out == tmp_path / "sub" / "genotype.json"
    assert load_genotype(out) == g
    assert load_genotype(str(out)) == g
    assert Genotype.from_dict(json.loads(out.read_text())) == g
    assert sorted(p.name for p in out.parent.iterdir()) == ["genotype.json"]  # no temp file left behind
    data = json.loads(out.read_text())
    assert data["format"] == "dartsnas-genotype" and data["version"] == 1
    assert data["ops"] == g.ops()


def test_json_is_human_readable(tmp_path: Path) -> None:
    g = derive_genotype(np.eye(14, 8), np.eye(14, 8)[::-1], DARTS_PRIMITIVES, 4, 4)
    text = save_genotype(g, tmp_path / "g.json").read_text()
    assert '\n  "normal": {\n' in text
    assert '      [["' in text  # one node per line, its pairs inline
    assert '"concat": [2, 3, 4, 5]' in text
    assert json.loads(text)["primitives"] == list(DARTS_PRIMITIVES)


def test_save_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    save_genotype(published_genotype("DARTS_V1"), path)
    save_genotype(published_genotype("DARTS_V2"), path)
    assert load_genotype(path) == published_genotype("DARTS_V2")
    assert [p.name for p in tmp_path.iterdir()] == ["g.json"]


def _good_dict() -> dict:
    return published_genotype("DARTS_V2").to_dict()


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.update(format="something-else"), "unknown format 'something-else'"),
        (lambda d: d.update(version=2), "version 2 is newer"),
        (lambda d: d.pop("format"), "missing key \"format\""),
        (lambda d: d.pop("version"), "missing key \"version\""),
        (lambda d: d.pop("reduce"), "missing key 'reduce'"),
        (lambda d: d["normal"].pop("concat"), "normal: missing key 'concat'"),
        (lambda d: d.update(primitives="none"), "\"primitives\" must be a list"),
        (lambda d: d["normal"].update(nodes={"a": 1}), "\"nodes\" must be a list"),
        (lambda d: d["normal"]["nodes"][0].append(["sep_conv_3x3", "1"]), "expected an \\[op, input\\] pair"),
        (lambda d: d["reduce"]["nodes"][0].append(["sep_conv_3x3", 3]), "reduce: node 0 .* reads state 3"),
        (lambda d: d.update(extra=1), "unknown keys \\['extra'\\]"),
    ],
)
def test_json_errors_name_file_and_problem(tmp_path: Path, edit, match: str) -> None:
    d = _good_dict()
    edit(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(GenotypeError, match=match) as info:
        load_genotype(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_invalid_json_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"format": "dartsnas-genotype", ')
    with pytest.raises(GenotypeError, match="not valid JSON"):
        load_genotype(path)


# ---------------------------------------------------------------------------------------------- classic texts


@pytest.mark.parametrize("name", CLASSIC_NAMES)
def test_classic_file_parses_to_published(name: str) -> None:
    found = parse_genotype_texts(shared("classic.txt").read_text())
    assert list(found) == CLASSIC_NAMES
    g = found[name]
    nodes = 5 if name in ("NASNet", "AmoebaNet") else 4
    assert [len(c.nodes) for c in g.cell_designs()] == [nodes, nodes]
    assert all(len(node) == 2 for c in g.cell_designs() for node in c.nodes)
    assert g == published_genotype(name)
    assert g.primitives == ()


def test_classic_concats() -> None:
    found = parse_genotype_texts(shared("classic.txt").read_text())
    assert found["NASNet"].normal.concat == (2, 3, 4, 5, 6)
    assert found["NASNet"].reduce.concat == (4, 5, 6)
    assert found["AmoebaNet"].normal.concat == (4, 5, 6)
    assert found["AmoebaNet"].reduce.concat == (3, 4, 6)
    assert found["PC_DARTS_cifar"].normal.concat == (2, 3, 4, 5)  # range(2, 6)
    assert "sep_conv_7x7" in found["NASNet"].ops() and "conv_7x1_1x7" in found["AmoebaNet"].ops()


def test_d_darts_cifar_file() -> None:
    g = load_genotype(shared("d-darts", "D-DARTS_threshold_sparse_cifar10_0.85_50.txt"))
    assert g.is_per_cell() and len(g.cells) == 8
    assert g.reductions() == [2, 6]
    assert [sum(len(node) for node in c.nodes) for c in g.cells] == [8] * 7 + [7]
    assert all(len(c.nodes) == 4 and c.concat == (2, 3, 4, 5) for c in g.cells)
    assert g.cells[7].nodes[3] == (("sep_conv_3x3", 2),)  # node 5 of the last cell has one input
    assert g.cells[0].nodes[0] == (("sep_conv_3x3", 1), ("max_pool_3x3", 0))  # (op, to, from) order kept


def test_d_darts_resnet_file() -> None:
    g = load_genotype(shared("d-darts", "ResNet18_cifar10_threshold_sparse_0.85.txt"))
    assert len(g.cells) == 4 and g.reductions() == [1, 2, 3]
    assert "bottleneck_1x3x1" in g.ops()


def test_triple_form_groups_by_target_node() -> None:
    text = """
    # a sparse fork writes (op, to_node, from_node)
    Genotype(
        normal=[('sep_conv_3x3', 2, 0), ('skip_connect', 3, 2), ('sep_conv_5x5', 2, 1),
                ('dil_conv_3x3', 3, 0), ('max_pool_3x3', 3, 1),],
        normal_concat=range(2, 4),
        reduce=[('max_pool_3x3', 3, 1), ('max_pool_3x3', 2, 0)],
        reduce_concat=[2, 3],
    )
    """
    g = parse_genotype_text(text)
    assert g.normal.nodes == (
        (("sep_conv_3x3", 0), ("sep_conv_5x5", 1)),
        (("skip_connect", 2), ("dil_conv_3x3", 0), ("max_pool_3x3", 1)),
    )
    assert g.normal.concat == (2, 3)
    assert g.reduce.nodes == ((("max_pool_3x3", 0),), (("max_pool_3x3", 1),))
    with pytest.raises(GenotypeError):
        g.to_classic()
    assert parse_genotype_text(str(g)) == g  # the fallback text form reads back


def test_text_forms_read_back() -> None:
    g = published_genotype("AmoebaNet")
    assert parse_genotype_text(g.to_classic()) == g
    assert parse_genotype_text(str(g)) == g
    p = per_cell_example()
    assert parse_genotype_text(str(p)) == Genotype(cells=p.cells)  # text keeps no primitives
    with pytest.raises(GenotypeError, match="per-position"):
        p.to_classic()


def test_nested_default_reductions_and_positional_classic() -> None:
    cell = "[('sep_conv_3x3', 2, 0), ('skip_connect', 3, 2)]"
    g = parse_genotype_text(f"Genotype_nested(genes=[{', '.join([cell] * 6)}], concat=[2, 3])")
    assert g.reductions() == [2, 4]  # DARTS positions n // 3 and 2n // 3
    pairs = "[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)]"
    assert parse_genotype_text(f"Genotype({pairs}, [2], {pairs}, [2])").normal.nodes == (
        (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),
    )


def test_original_genotypes_py_layout() -> None:
    text = '''"""Genotypes."""
from collections import namedtuple

Genotype = namedtuple('Genotype', 'normal normal_concat reduce reduce_concat')
PRIMITIVES = [
    'none',
    'skip_connect',
]
V2 = Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=[2],
              reduce = [('skip_connect', 0), ('skip_connect', 1)], reduce_concat = range(2, 3))
DARTS = V2
'''
    found = parse_genotype_texts(text)
    assert list(found) == ["V2", "DARTS"] and found["DARTS"] == found["V2"]


BAD_TEXTS = [
    ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2]", "never closed"),
    ("Genotype(normal=[('a', 0), ('b', 1)), normal_concat=[2], reduce=[], reduce_concat=[2])",
     "does not match opening"),
    (("Genotype(normal=[('a', 0), ('b', 1), ('c', 0)], normal_concat=[2], reduce=[('a', 0), ('b', 1)], "
      "reduce_concat=[2])"), "3 \\(op, input\\) pairs.*must be even"),
    (("Genotype(\n  normal=[\n    ('a', 0), ('b', 3)],\n  normal_concat=[2], reduce=[('a', 0), ('b', 1)], "
      "reduce_concat=[2])"),
     "line 3: gene \\('b', 3\\) in 'normal': state 2 reads state 3, which is not computed"),
    ("Genotype_nested(genes=[[('a', 2, 0), ('b', 3, 3)]], concat=[2])", "state 3 reads state 3"),
    ("Genotype(normal=range(2, 6), normal_concat=[2], reduce=[], reduce_concat=[2])",
     "expected a list of \\(op, input\\) pairs in 'normal'"),
    ("Genotype(normal=[('a', 0), ('b', 1)], normal_concat=[2], reduce=[('a', 0), ('b', 1)])", "missing reduce_concat"),
    ("Genotype(normal=[('a', 0), ('b', 1)], normal_concat=[2], reduce=[('a', 0), ('b', 1)], reduce_concat=[2], x=1)",
     "no field 'x'"),
    ("Genotype(normal=[('a', 0), ('b', 1)], normal_concat=[2], reduce=[('a', 0), ('b', 1)], reduce_concat=[7])",
     "concat names state 7"),
    ("Genotype(normal=[('a', 0, 1)], normal_concat=[2], reduce=[('a', 2, 0)], reduce_concat=[2])", "targets state 0"),
    ("the quick brown fox", "line 1: invalid syntax"),
    ("", "no Genotype"),
    ("\n\nfoo(1)", "line 3: expected Genotype\\(...\\) or Genotype_nested\\(...\\), found a call to foo"),
    ("Genotype_nested(genes=[[('a', 2, 0)]], reductions=[3], concat=[2])", "outside the 1 cells"),
    (("A = Genotype(normal=[('a', 0), ('b', 1)], normal_concat=[2], reduce=[('a', 0), ('b', 1)], reduce_concat=[2])\n"
      "B = A\n"), "several genotypes \\(A, B\\)"),
    ("Genotype(normal='abc', normal_concat=[2], reduce=[], reduce_concat=[2])", "found the string 'abc'"),
    ("X = " + "[" * 5000 + "]" * 5000, "too many nested parentheses"),
]


@pytest.mark.parametrize("text, match", BAD_TEXTS)
def test_malformed_texts_raise_one_clear_line(text: str, match: str) -> None:
    with pytest.raises(GenotypeError, match=match) as info:
        parse_genotype_text(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "code",
    [
        "__import__('os').system('touch {marker}')",
        "Genotype(normal=__import__('os').system('touch {marker}'), normal_concat=[2], reduce=[], reduce_concat=[2])",
        "X = Genotype(normal=[(open('{marker}', 'w'), 0)], normal_concat=[2], reduce=[], reduce_concat=[2])",
        "import os; os.system('touch {marker}')",
    ],
)
def test_code_is_rejected_not_executed(tmp_path: Path, code: str) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.txt"
    path.write_text(code.format(marker=marker))
    with pytest.raises(GenotypeError):
        load_genotype(path)
    assert not marker.exists()


def test_garbage_file_is_neither_json_nor_classic(tmp_path: Path) -> None:
    path = tmp_path / "garbage.bin"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(GenotypeError, match="not a text file"):
        load_genotype(path)
    path.write_text("<html>not a genotype</html>")
    with pytest.raises(GenotypeError, match=str(path).replace("\\", "\\\\") + ": line 1: invalid syntax"):
        load_genotype(path)


# ---------------------------------------------------------------------------------------------- loading


def test_load_by_name_path_and_selection(tmp_path: Path) -> None:
    assert load_genotype("DARTS_V2") == published_genotype("DARTS_V2")
    assert load_genotype("DARTS") == published_genotype("DARTS_V2")
    classic = shared("classic.txt")
    assert load_genotype(f"{classic}::PDARTS") == published_genotype("PDARTS")
    with pytest.raises(GenotypeError, match="several genotypes .*::NAME"):
        load_genotype(classic)
    with pytest.raises(GenotypeError, match="no genotype named 'NOPE'; the file holds: NASNet, AmoebaNet"):
        load_genotype(f"{classic}::NOPE")
    one = tmp_path / "one.txt"
    one.write_text(published_genotype("PC_DARTS_image").to_classic())
    assert load_genotype(one) == published_genotype("PC_DARTS_image")
    named = tmp_path / "named.py"
    named.write_text("MINE = " + published_genotype("PDARTS").to_classic() + "\n")
    assert load_genotype(named) == load_genotype(f"{named}::MINE") == published_genotype("PDARTS")


def test_unknown_name_lists_published() -> None:
    message = ("no genotype file or published genotype named 'DARTS_V9', and it is not a genotype text .*; "
               "published: .*DARTS_V2")
    with pytest.raises(GenotypeError, match=message):
        load_genotype("DARTS_V9")
    with pytest.raises(GenotypeError, match="published: "):
        published_genotype("DARTS_V9")
    with pytest.raises(GenotypeError, match="no genotype file 'missing.txt'"):
        load_genotype("missing.txt::DARTS_V2")


def test_published_names() -> None:
    names = published_names()
    assert set(CLASSIC_NAMES) <= set(names) and names == sorted(names)
    for name in names:
        g = published_genotype(name)
        if name.endswith("_BASELINE"):  # ResNet and Xception blocks (baselines.py): one or two inputs a node
            assert all(1 <= len(node) <= 2 for c in g.cell_designs() for node in c.nodes)
            continue
        assert all(len(node) == 2 for c in g.cell_designs() for node in c.nodes)


# ---------------------------------------------------------------------------------------------- derivation


def test_softmax_is_stable_and_normalised() -> None:
    x = np.array([[1000.0, 1000.0, -1000.0], [0.0, 1.0, 2.0]])
    s = softmax(x)
    assert np.allclose(s.sum(axis=-1), 1.0) and np.isfinite(s).all()
    assert np.allclose(s[0], [0.5, 0.5, 0.0])
    assert np.allclose(softmax(x, axis=0).sum(axis=0), 1.0)


def test_num_edges() -> None:
    assert num_edges(4) == 14 and num_edges(5) == 20 and num_edges(1) == 2


def _weights(nodes: int, prims: int) -> np.ndarray:
    """Small uniform weights; tests set the entries that matter."""
    return np.full((num_edges(nodes), prims), 0.01)


def test_derive_cell_picks_strongest_non_none_edges_and_ops() -> None:
    w = _weights(4, 8)
    # node 0: edges 0, 1. 'none' dominates edge 0 but must never win; edge 1 has the strongest real op.
    w[0] = [0.9, 0.02, 0.01, 0.03, 0.04, 0.0, 0.0, 0.0]  # best non-none: sep_conv_3x3 (0.04)
    w[1] = [0.1, 0.0, 0.0, 0.0, 0.0, 0.5, 0.3, 0.1]  # sep_conv_5x5
    # node 1: edges 2, 3, 4 (states 0, 1, 2); state 2 strongest, then state 0; state 1 only strong in 'none'.
    w[2] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.4, 0.0]  # dil_conv_3x3
    w[3] = [0.99, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    w[4] = [0.0, 0.0, 0.0, 0.7, 0.0, 0.0, 0.0, 0.0]  # skip_connect
    cell = derive_cell(w, DARTS_PRIMITIVES, 4, 4)
    assert cell.nodes[0] == (("sep_conv_5x5", 1), ("sep_conv_3x3", 0))  # strongest edge first
    assert cell.nodes[1] == (("skip_connect", 2), ("dil_conv_3x3", 0))
    assert all(len(node) == 2 for node in cell.nodes)
    assert "none" not in cell.ops()
    assert cell.concat == (2, 3, 4, 5) and not cell.reduction


def test_derive_cell_ties() -> None:
    w = np.zeros((num_edges(2), 4))
    w[:, 1] = 0.5
    w[:, 2] = 0.5  # ops 1 and 2 tie everywhere; every edge ties
    cell = derive_cell(w, ["none", "a", "b", "c"], 2, 2)
    assert cell.nodes == ((("a", 0), ("a", 1)), (("a", 0), ("a", 1)))  # lower input, earlier op win


def test_derive_cell_without_none_and_concat() -> None:
    prims = ["skip_connect", "sep_conv_3x3"]
    w = np.tile([0.3, 0.7], (num_edges(4), 1))
    cell = derive_cell(w, prims, 4, 3)
    assert cell.ops() == ["sep_conv_3x3"] and cell.concat == (3, 4, 5)
    assert derive_cell(w, prims, 4, 4).concat == (2, 3, 4, 5)
    assert derive_cell(w, prims, 4, 1, k=1).concat == (5,)
    assert [len(n) for n in derive_cell(w, prims, 4, 4, k=3).nodes] == [2, 3, 3, 3]  # fewer than k: keep all


def test_derive_cell_accepts_tensors_by_duck_typing() -> None:
    torch = pytest.importorskip("torch")
    w = torch.rand(num_edges(4), 8, requires_grad=True).softmax(-1)
    assert derive_cell(w, DARTS_PRIMITIVES, 4, 4) == derive_cell(w.detach().numpy(), DARTS_PRIMITIVES, 4, 4)


def test_derive_cell_shape_errors() -> None:
    with pytest.raises(GenotypeError, match="expected \\(14, 8\\)"):
        derive_cell(np.zeros((13, 8)), DARTS_PRIMITIVES, 4, 4)
    with pytest.raises(GenotypeError, match="expected \\(14, 8\\)"):
        derive_cell(np.zeros((14, 7)), DARTS_PRIMITIVES, 4, 4)
    with pytest.raises(GenotypeError, match="multiplier"):
        derive_cell(np.zeros((14, 8)), DARTS_PRIMITIVES, 4, 5)
    with pytest.raises(GenotypeError, match="NaN"):
        derive_cell(np.full((14, 8), np.nan), DARTS_PRIMITIVES, 4, 4)
    with pytest.raises(GenotypeError, match="excluded"):
        derive_cell(np.zeros((2, 1)), ["none"], 1, 1)


def test_derive_genotype_records_primitives_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    normal, reduce = (softmax(rng.normal(size=(14, 8))) for _ in range(2))
    g = derive_genotype(normal, reduce, DARTS_PRIMITIVES, 4, 4)
    assert g.primitives == DARTS_PRIMITIVES and g.reduce.reduction
    assert g.normal == derive_cell(normal, DARTS_PRIMITIVES, 4, 4)
    assert load_genotype(save_genotype(g, tmp_path / "g.json")) == g
    assert parse_genotype_text(g.to_classic()) == Genotype(normal=g.normal, reduce=g.reduce)


def test_derive_per_cell_genotype() -> None:
    rng = np.random.default_rng(1)
    weights = [softmax(rng.normal(size=(14, 8))) for _ in range(5)]
    g = derive_per_cell_genotype(weights, [1, 3], DARTS_PRIMITIVES, 4, 4)
    assert g.reductions() == [1, 3] and len(g.cells) == 5
    assert g.cells[2].nodes == derive_cell(weights[2], DARTS_PRIMITIVES, 4, 4).nodes
    with pytest.raises(GenotypeError, match="outside the 5 cells"):
        derive_per_cell_genotype(weights, [5], DARTS_PRIMITIVES, 4, 4)
