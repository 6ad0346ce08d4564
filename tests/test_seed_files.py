"""The seed systems' own genotype files and strings: they load, and their networks build with the original
code's exact parameter and multiply-add counts (figures measured by building each file with that code:
FairDARTS' ``NetworkCIFAR(36, 10, 20, ..., 'dco')``, D-DARTS' ``NetworkCIFAR(C, 10, len(genes), ...)`` with
C=36 for per-cell searches and 64, its training default, for DARTOpti files; auxiliary head excluded,
32x32, ``torch.utils.flop_counter`` total / 2). Networks are built on the meta device: no memory, no time."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from dartsnas.cli import main
from dartsnas.errors import GenotypeError
from dartsnas.genotype import load_genotype, parse_genotype_text, parse_genotype_texts
from dartsnas.network import EvalNetwork
from dartsnas.ops import build_op
from dartsnas.profile import count_macs, count_parameters

SEEDS = Path(__file__).parent / "data" / "seeds"
DDARTS = SEEDS / "d-darts"

FAIRDARTS_COUNTS = {  # CIFAR-10, C=36, 20 cells
    "FairDARTS_a": (2_360_782, 371_455_200),
    "FairDARTS_b": (3_407_878, 536_487_552),
    "FairDARTS_c": (2_598_814, 399_987_936),
    "FairDARTS_d": (3_365_542, 532_506_240),
    "FairDARTS_e": (2_643_742, 414_696_672),
    "FairDARTS_f": (3_151_054, 497_614_464),
    "FairDARTS_g": (2_899_054, 453_376_224),
}

DDARTS_COUNTS = {  # CIFAR-10, one cell per gene, the file's reductions
    "D-DARTS_threshold_sparse_cifar10_0.85_50.txt": (36, 1_244_242, 255_307_392),
    "D-DARTS_threshold_edge_cifar10_0.85_50.txt": (36, 2_520_298, 522_009_216),
    "ResNet18_cifar10_threshold_sparse_0.85.txt": (64, 36_318_538, 1_922_125_824),
    "ResNet18_cifar10_threshold_edge_0.85.txt": (64, 54_183_754, 2_785_857_536),
    "ResNet50_cifar10_threshold_sparse_0.85.txt": (64, 71_237_450, 3_461_740_544),
    "Xception_cifar10_threshold_sparse_0.85.txt": (64, 112_863_434, 6_603_116_544),
}


def meta_counts(genotype, C: int, layers: int, classes: int = 10, size: tuple = (3, 32, 32)) -> tuple[int, int]:
    with torch.device("meta"):
        net = EvalNetwork(genotype, C, classes, layers, in_channels=size[0])
    return count_parameters(net), count_macs(net, size)


# ---------------------------------------------------------------------------------------------- FairDARTS


def test_fairdarts_sparse_cells_build_with_fairdarts_counts() -> None:
    found = parse_genotype_texts((SEEDS / "fairdarts_genotypes.py.txt").read_text())
    assert sorted(found) == sorted(FAIRDARTS_COUNTS)
    for name, expected in FAIRDARTS_COUNTS.items():
        assert meta_counts(found[name], 36, 20) == expected, name


def test_a_triple_cell_keeps_only_the_nodes_that_exist() -> None:
    a = load_genotype(f"{SEEDS / 'fairdarts_genotypes.py.txt'}::FairDARTS_a")
    # normal: ops enter nodes 2, 4 and 5 only; node 3 does not exist and the output is 3 nodes wide
    assert a.normal.nodes == ((("sep_conv_3x3", 0), ("sep_conv_5x5", 1)), (), (("max_pool_3x3", 0),),
                              (("sep_conv_3x3", 0),))
    assert a.normal.concat == (2, 4, 5)  # the file's normal_concat=range(2, 6) does not apply
    assert a.reduce.concat == (2, 3, 4, 5)
    with torch.device("meta"):
        net = EvalNetwork(a, 36, 10, 20)
    assert net.cells[0].multiplier == 3 and net.cells[6].multiplier == 4
    # a gene from a missing node is skipped (FairDARTS_g: skip_connect 4 <- 3, node 3 missing)
    g = load_genotype(f"{SEEDS / 'fairdarts_genotypes.py.txt'}::FairDARTS_g")
    assert ("skip_connect", 3) in g.normal.nodes[2] and ("skip_connect", 3) not in g.normal.live_pairs(2)
    # JSON keeps the missing node and reads back exactly; the text form reads back too
    assert load_genotype(json.dumps(g.to_dict())) == g
    assert parse_genotype_text(str(g)) == g


def test_a_sparse_cell_diagram_leaves_out_the_missing_node() -> None:
    from dartsnas.viz.cells import cell_graph

    a = load_genotype(f"{SEEDS / 'fairdarts_genotypes.py.txt'}::FairDARTS_a")
    source = cell_graph(a.normal, "normal").source  # nodes 0, 2, 3 drawn (states 2, 4, 5); node 1 missing
    drawn = {line.split()[0] for line in source.splitlines() if "shape=circle" in line}
    assert drawn == {"0", "2", "3"}


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
def test_plot_of_one_genotype_of_a_file_names_its_pictures_by_the_genotype(tmp_path: Path) -> None:
    source = f"{SEEDS / 'fairdarts_genotypes.py.txt'}::FairDARTS_a"  # a name with dots: each cell its own file
    assert main(["plot", source, "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "FairDARTS_a_normal.png", "FairDARTS_a_normal.svg", "FairDARTS_a_reduce.png", "FairDARTS_a_reduce.svg"]


def test_sparse_cell_runs_and_every_parameter_learns() -> None:
    g = load_genotype(f"{SEEDS / 'fairdarts_genotypes.py.txt'}::FairDARTS_g")
    torch.manual_seed(0)
    net = EvalNetwork(g, 4, 10, 3, drop_path_prob=0.2)
    logits, _ = net(torch.randn(2, 3, 16, 16))
    logits.sum().backward()
    assert logits.shape == (2, 10) and all(p.grad is not None for p in net.parameters())


# ---------------------------------------------------------------------------------------------- D-DARTS


def test_every_d_darts_file_loads() -> None:
    files = sorted(DDARTS.glob("*.txt"))
    assert len(files) == 16
    for f in files:
        if f.name == "Xception_cifar100_threshold_edge_0.85.txt":
            continue
        g = load_genotype(f)
        assert g.is_per_cell() and g.reductions()


@pytest.mark.parametrize("name", sorted(DDARTS_COUNTS))
def test_d_darts_files_build_with_d_darts_counts(name: str) -> None:
    C, params, macs = DDARTS_COUNTS[name]
    g = load_genotype(DDARTS / name)
    assert meta_counts(g, C, len(g.cells)) == (params, macs)


def test_a_file_the_original_cannot_run_is_one_line_naming_the_node() -> None:
    # cell 12's node 3 reads only node 2, which no gene enters: D-DARTS' code fails on it (max_pool of 0)
    with pytest.raises(GenotypeError, match=r"cell 12 of 'genes': node 1 \(state 3\) reads only states \[2\]") as e:
        load_genotype(DDARTS / "Xception_cifar100_threshold_edge_0.85.txt")
    assert "\n" not in str(e.value)


BASELINE_COUNTS = {  # D-DARTS' NetworkCIFAR(64, 10, len(seq), ..., baseline): one cell per entry of seq
    "ResNet18": (4, [1, 2, 3], 13_982_154, 806_440_960),
    "ResNet50": (4, [1, 2, 3], 24_360_522, 1_452_358_656),
    # D-DARTS' code gives 645,861,376 multiply-adds: its Xception lists node 4's genes first, so its DCOCell
    # computes node 4 before node 3 and skips the genes from node 3 into node 4 (a sep_conv_3x3 in the eight
    # middle cells: 8 x 8,683,520 at C=256 on 8x8 maps). We compute nodes in index order, so they run.
    "Xception": (13, [1, 2, 11, 12], 15_761_738, 645_861_376 + 8 * 8_683_520),
}


def test_genotype_opt_baselines_build_as_whole_networks() -> None:
    # D-DARTS' genotypes.py as written: names of gene lists, `[0]*3+[1]*8+[0]+[2]`, `residual_layer + [...]`
    found = parse_genotype_texts((SEEDS / "d-darts-baselines.py.txt").read_text())
    assert sorted(found) == sorted(BASELINE_COUNTS)
    for name, (cells, reductions, params, macs) in BASELINE_COUNTS.items():
        g = found[name]
        assert len(g.cells) == cells and g.reductions() == reductions
        assert meta_counts(g, 64, cells) == (params, macs), name
    # seq indexes genes: ResNet50's positions 0 and 3 share one design; a reduction flag is per position
    r50 = found["ResNet50"]
    assert r50.cells[0].nodes == r50.cells[3].nodes and r50.cells[1].nodes != r50.cells[0].nodes


@pytest.mark.parametrize("text, match", [
    ("A = Genotype_opt([[('skip_connect', 2, 0)]], [0, 3], concat=[2])", "'seq' must index the 1 entries"),
    ("A = Genotype_opt([[('skip_connect', 2, 0)]], [0] * 10**9, concat=[2])", "'10 \\*\\* 9' is not a literal"),
    ("A = Genotype_opt([[('skip_connect', 2, 0)]], [x for x in y], concat=[2])", "'\\[x for x in y\\]' is not a"),
    ("def f():\n    pass", "line 1: expected NAME = Genotype\\(...\\) or a bare genotype, found a FunctionDef"),
    ("A = Genotype(*xs)", "\\*args and \\*\\*kwargs are not literals"),
    ("A = 1" + "0" * 5000, "not a genotype text|line 1"),
    ("A = Genotype_opt([[('skip_connect', 2, 0)]], [0] * 200000, concat=[2])", "over 100000 items"),
    ("A = Genotype_opt([[('skip_connect', 2, 0)]], 'ab' + 3, concat=[2])", "is not list arithmetic"),
])
def test_bad_genotype_opt_is_one_line(text: str, match: str) -> None:
    with pytest.raises(GenotypeError, match=match) as e:
        parse_genotype_texts(text)
    assert "\n" not in str(e.value)


def test_one_broken_entry_does_not_hide_the_others(tmp_path: Path) -> None:
    path = tmp_path / "genotypes.py"
    path.write_text((SEEDS / "d-darts-baselines.py.txt").read_text()
                    + "MobileNetV3 = Genotype_nested([], concat=range(2,6), reductions=[])\n")
    assert load_genotype(f"{path}::ResNet18").reductions() == [1, 2, 3]
    with pytest.raises(GenotypeError, match="MobileNetV3|list of cells"):
        load_genotype(f"{path}::MobileNetV3")


def test_d_darts_ops_have_their_layers() -> None:
    C = 8
    counts = {name: sum(p.numel() for p in build_op(name, C, 1, True).parameters())
              for name in ("conv_3x1_1x3", "bottleneck_1x3x1", "simple_conv_1x1", "simple_conv_3x3")}
    assert counts == {
        "conv_3x1_1x3": 3 * C * C * 2 + 2 * C,
        "bottleneck_1x3x1": C * C + 2 * C + 9 * C * C + 2 * C + 4 * C * C + 8 * C + 4 * C * C + 2 * C,
        "simple_conv_1x1": C * C + 2 * C,
        "simple_conv_3x3": 9 * C * C + 2 * C,
    }
    for name in counts:
        assert build_op(name, C, 2, True)(torch.randn(1, C, 9, 9)).shape == (1, C, 5, 5)


# ---------------------------------------------------------------------------------------------- pt.darts / TF2

HAJEKEL_BEST = (  # HAJEKEL/pt.darts searchs/fashionmnist/fashionmnist.log, "Best Genotype"
    "Genotype(normal=[[('sep_conv_3x3', 1), ('sep_conv_3x3', 0)], [('sep_conv_3x3', 2), ('sep_conv_3x3', 1)], "
    "[('sep_conv_3x3', 1), ('sep_conv_3x3', 3)], [('sep_conv_3x3', 1), ('sep_conv_3x3', 2)]], "
    "normal_concat=range(2, 6), reduce=[[('fused_mb_conv_3x3', 0), ('mb_conv_3x3', 1)], [('fused_mb_conv_3x3', 1), "
    "('sep_conv_3x3', 2)], [('mb_conv_3x3', 2), ('mb_conv_3x3', 3)], [('sep_conv_3x3', 3), ('sep_conv_3x3', 0)]], "
    "reduce_concat=range(2, 6))"
)


def test_nested_list_form_of_pt_darts_and_the_tf2_port(tmp_path: Path) -> None:
    g = load_genotype(HAJEKEL_BEST)  # inline
    assert g.normal.nodes[1] == (("sep_conv_3x3", 2), ("sep_conv_3x3", 1))
    assert g.reduce.nodes[0] == (("fused_mb_conv_3x3", 0), ("mb_conv_3x3", 1))
    assert g.normal.concat == g.reduce.concat == (2, 3, 4, 5)
    per_epoch = tmp_path / "genotypes" / "genotype_epoch_7"  # the TF2 port's per-epoch file, no suffix
    per_epoch.parent.mkdir()
    per_epoch.write_text("Genotype(normal=[[('sep_conv_3x3', 0), ('skip_connect', 1)],\n"
                         "  [('dil_conv_3x3', 2), ('max_pool_3x3', 0), ('sep_conv_5x5', 1)]],\n"
                         "  normal_concat=range(2, 4), reduce=[[('max_pool_3x3', 0)], [('skip_connect', 2)]],\n"
                         "  reduce_concat=range(2, 4))\n")
    e = load_genotype(per_epoch)
    assert [len(n) for n in e.normal.nodes] == [2, 3] and e.reduce.nodes == ((("max_pool_3x3", 0),),
                                                                            (("skip_connect", 2),))
    # builds on FashionMNIST-sized images (1 channel, 28x28) with HAJEKEL's ops
    net = EvalNetwork(g, 4, 10, 3, in_channels=1)
    assert net(torch.randn(2, 1, 28, 28))[0].shape == (2, 10)
    C = 4
    mb = 3 * C * C + 6 * C + 9 * 3 * C + 6 * C + 3 * C * C + 2 * C  # 1x1 expand, depthwise, 1x1 project, BNs
    fused = 9 * 3 * C + 6 * C + 3 * C * C + 2 * C  # grouped 3x3 expand (C groups), 1x1 project, BNs
    assert sum(p.numel() for p in build_op("mb_conv_3x3", C, 1, True).parameters()) == mb
    assert sum(p.numel() for p in build_op("fused_mb_conv_3x3", C, 1, True).parameters()) == fused


# ---------------------------------------------------------------------------------------------- inline text


def test_inline_genotypes_in_every_form(tmp_path: Path, capsys) -> None:
    darts_v2 = load_genotype("DARTS_V2")
    per_cell = load_genotype(DDARTS / "D-DARTS_threshold_sparse_cifar10_0.85_50.txt")
    for text, expected in [
        (darts_v2.to_classic(), darts_v2),
        (str(darts_v2).replace("Genotype(", "genotypes.Genotype("), darts_v2),
        ("DARTS = " + darts_v2.to_classic(), darts_v2),
        (HAJEKEL_BEST, load_genotype(HAJEKEL_BEST)),
        ((DDARTS / "D-DARTS_threshold_sparse_cifar10_0.85_50.txt").read_text(), per_cell),
        (json.dumps(per_cell.to_dict()), per_cell),
    ]:
        assert load_genotype(text) == Genotype_of(expected)
    # on the command line: genotype, info, and training's --genotype
    assert main(["genotype", HAJEKEL_BEST, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["reduce"]["nodes"][0] == [["fused_mb_conv_3x3", 0], ["mb_conv_3x3", 1]]
    assert main(["info", "--genotype", (SEEDS / "fairdarts_genotypes.py.txt").read_text().splitlines()[1]
                 .replace("FairDARTS_a = ", "") + (SEEDS / "fairdarts_genotypes.py.txt").read_text()
                 .splitlines()[2] + (SEEDS / "fairdarts_genotypes.py.txt").read_text().splitlines()[3],
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["params"], info["macs"]) == FAIRDARTS_COUNTS["FairDARTS_a"]


def Genotype_of(g):
    """Texts carry no primitives: compare without them."""
    from dataclasses import replace
    return replace(g, primitives=())


@pytest.mark.parametrize("text", [
    "x" * 5000,  # too long for a file name
    "Genotype(normal=[('sep_conv_3x3', 0)",  # unbalanced
    "Genotype_nested(genes=[[('sep_conv_3x3', 2, 5)]], concat=range(2, 3))",  # reads a later state
])
def test_a_string_that_is_no_genotype_is_one_line(text: str, capsys) -> None:
    assert main(["genotype", text]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and err
