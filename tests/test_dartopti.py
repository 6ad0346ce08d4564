"""D-DARTS' DARTOpti: a search over a whole handcrafted network (ResNet18, ResNet50, Xception) with D-DARTS'
twelve ops, per-design alphas starting on the baseline, sigmoid gates, warm-up epochs and its metric-based stop."""
from __future__ import annotations

import csv
import json

import pytest

from dartsnas.baselines import dartopti_layout
from dartsnas.cli import main
from dartsnas.config import SearchConfig
from dartsnas.distance import architecture_distance
from dartsnas.genotype import load_genotype
from dartsnas.ops.ddarts import DARTOPTI_PRIMITIVES
from dartsnas.space import get_space
from dartsnas.supernet import SearchNetwork

TINY = ["--dataset", "digits", "--init-channels", "4", "--batch-size", "256", "--workers", "0", "-q",
        "--limit-batches", "1"]


@pytest.mark.parametrize("name, cells, designs, reductions", [
    ("resnet18", 4, 1, (1, 2, 3)), ("resnet50", 4, 3, (1, 2, 3)), ("xception", 13, 3, (1, 2, 11, 12))])
def test_the_supernet_is_the_baseline_network(name, cells, designs, reductions):
    space = get_space(f"dartopti-{name}")
    assert space.primitives == DARTOPTI_PRIMITIVES and space.gates == "sigmoid" and space.pretrain_epochs == 5
    net = SearchNetwork(space, 2, 10, cells, alphas="per-cell", gates="sigmoid", rule="threshold-sparse",
                        threshold=0.85)
    assert len(net.cells) == cells and net.reductions == reductions
    assert [c.reduction for c in net.cells] == [i in reductions for i in range(cells)]
    assert len(net.alphas()) == designs  # cells of one design share one set
    layout = dartopti_layout(name)
    for i, cell in enumerate(net.cells):
        assert net._cell_gate_index(i, cell) == layout.seq[i]
    # alphas 10 on the baseline's genes, 0 elsewhere: threshold-edge at 0.85 gives the baseline exactly
    a = net.alphas()[0].detach()
    assert set(a.unique().tolist()) == {0.0, 10.0} and int((a == 10).sum()) == sum(
        len(p) for p in layout.genes[0].nodes)
    edge = net.genotype("threshold-edge", 0.85)
    assert architecture_distance(edge, layout.genotype())["distance"] == 0
    assert len(net.genotype("threshold-edge", 0.85, per_design=True).cells) == designs
    with pytest.raises(Exception, match=f"has {cells} cells"):
        SearchNetwork(space, 2, 10, cells + 1, alphas="per-cell", gates="sigmoid")


def test_a_dartopti_search_runs_end_to_end_and_trains(tmp_path, capsys):
    search, train = tmp_path / "search", tmp_path / "train"
    # D-DARTS' spellings: --arch_baseline, --pretrain_epochs
    assert main(["search", *TINY, "--arch_baseline", "ResNet18", "--epochs", "2", "--pretrain_epochs", "1",
                 "--out", str(search)]) == 0
    cfg = (search / "config.yaml").read_text()
    assert "space: dartopti-resnet18" in cfg and "layers: 4" in cfg and "gates: sigmoid" in cfg
    assert "alphas: per-cell" in cfg and "derive_rule: threshold-sparse" in cfg and "threshold: 0.85" in cfg
    rows = list(csv.DictReader(open(search / "metrics.csv")))
    assert [r["arch_metric"] != "" for r in rows] == [True, True]
    assert 0.0 <= float(rows[-1]["arch_metric"]) <= 1.0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(search / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.value for e in events.Scalars("search/arch_metric")] == pytest.approx(
        [float(r["arch_metric"]) for r in rows])
    g = load_genotype(search / "genotype.json")
    assert len(g.cells) == 4 and g.reductions() == [1, 2, 3]
    for rule in ("threshold-sparse", "threshold-edge"):
        assert len(load_genotype(search / f"genotype_{rule}.json").cells) == 4
    # the history derives the same genotype (the layout's seq expands the one alpha set to four cells)
    assert main(["derive", str(search), "--out", str(tmp_path / "again.json")]) == 0
    assert load_genotype(tmp_path / "again.json") == g
    assert main(["train", "--from-run", str(search), *TINY, "--epochs", "1", "--out", str(train)]) == 0
    assert json.loads((train / "final.json").read_text())["params"] > 0


@pytest.mark.parametrize("flags, message", [
    (["--layers", "5"], "the dartopti-resnet18 space has 4 cells"),
    (["--alphas", "shared"], "shares alphas between the cells"),
    (["--nodes", "3"], "leave out --nodes"),
    (["--primitives", "skip_connect,sep_conv_3x3"], "needs the ops simple_conv_3x3"),
])
def test_bad_dartopti_options_are_one_line(tmp_path, capsys, flags, message):
    assert main(["search", *TINY, "--space", "dartopti-resnet18", "--epochs", "1", *flags,
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


def test_the_metric_stop_is_d_darts_rule():
    from dartsnas.engine.search import Search

    search = Search(SearchConfig(dataset="digits", init_channels=2, space="dartopti-resnet18", workers=0,
                                 epochs=30, pretrain_epochs=2), show_progress=False)
    assert search.cfg.layers == 4 and search.cfg.pretrain_epochs == 2

    def settled(values):
        search.metrics = [{"epoch": e + 1, "arch_metric": v} for e, v in enumerate(values)]
        return search._metric_settled()

    flat = [0.5] * 7  # epochs 1..7: only epochs >= pretrain + 6 = 8 count
    assert not settled(flat + [0.2, 0.2, 0.2, 0.2])  # four values from epoch 8 on: not yet five
    assert settled(flat + [0.2, 0.2, 0.2, 0.2, 0.2005])  # the fifth is within 0.001 of the four before it
    assert not settled(flat + [0.2, 0.2, 0.2, 0.2, 0.2015])
    assert not settled(flat + [0.2, 0.2, 0.2, None, 0.2])
    search.cfg.arch_metric = False
    assert not settled(flat + [0.2] * 6)
