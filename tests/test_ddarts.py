"""D-DARTS: per-cell alphas, sigmoid gates with the zero-one loss, warm-up epochs, threshold derivation, deeper
networks from a few searched cells, the distance between consecutive genotypes and early stopping; and the two
properties where the reference code is wrong (each cell's gradient once; weights untouched by the alpha step)."""
import csv
import json

import numpy as np
import pytest
import torch

from dartsnas import Architect
from dartsnas.architect import zero_one_loss
from dartsnas.cli import main
from dartsnas.genotype import load_genotype
from dartsnas.ops import DARTS_PRIMITIVES
from dartsnas.runs import RunDir
from dartsnas.space import SearchSpace
from dartsnas.supernet import SearchNetwork

TINY = ["--dataset", "digits", "--init-channels", "4", "--nodes", "2", "--multiplier", "2", "--batch-size", "128",
        "--workers", "0", "-q", "--limit-batches", "3"]


def _net(alphas="per-cell", gates="softmax", layers=4):
    torch.manual_seed(0)
    space = SearchSpace(primitives=tuple(DARTS_PRIMITIVES), nodes=2, multiplier=2)
    net = SearchNetwork(space, 4, 10, layers, stem_multiplier=1, alphas=alphas, gates=gates).double()
    with torch.no_grad():  # distinct alphas per cell, so that a mixed-up gradient would show
        for a in net.alphas():
            a.normal_(0, 0.5)
    return net


def _batches():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64, generator=g)
    xv = torch.randn(6, 3, 8, 8, dtype=torch.float64, generator=g)
    return (x, torch.randint(0, 10, (6,), generator=g)), (xv, torch.randint(0, 10, (6,), generator=g))


def test_per_cell_alphas_one_per_cell_and_the_network_uses_each():
    net = _net()
    assert net.alpha_names() == [f"alpha_cell_{i:02d}" for i in range(4)]
    assert net.num_alphas() == 4 * 5 * 8  # 4 cells, 5 edges (2 nodes), 8 ops
    (train, _) = _batches()
    torch.nn.functional.cross_entropy(net(train[0]), train[1]).backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in net.alphas())


@pytest.mark.parametrize("order, hessian", [(1, "finite-difference"), (2, "exact")])
def test_each_cell_gets_its_own_gradient_once(order, hessian):
    """The reference code adds cell k's architecture gradient into the following cells' (cell k steps on k+1
    times its gradient). Ours equals an independent autograd computation, cell by cell."""
    net = _net()
    train, val = _batches()
    opt = torch.optim.SGD(net.weights(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    got = Architect(net, order=order, hessian=hessian).hypergradient(train, val, opt)
    alphas = list(net.alphas())
    if order == 1:
        loss = torch.nn.functional.cross_entropy(net(val[0]), val[1])
        want = torch.autograd.grad(loss, alphas)
    else:  # autograd through the virtual step w' = w - xi * (grad + wd * w) (no momentum buffer yet)
        from torch.func import functional_call

        from dartsnas.ops.lean import plain_autograd

        names = [n for n, _ in net.named_weights()]
        weights = list(net.weights())
        with plain_autograd():  # a double backward: the modules' own autograd
            buffers = {n: b.clone() for n, b in net.named_buffers()}
            loss = torch.nn.functional.cross_entropy(functional_call(net, {**buffers}, (train[0],)), train[1])
            g = torch.autograd.grad(loss, weights, create_graph=True)
            virtual = {n: w - 0.1 * (gw + 3e-4 * w) for n, w, gw in zip(names, weights, g)}
            buffers = {n: b.clone() for n, b in net.named_buffers()}
            val_loss = torch.nn.functional.cross_entropy(functional_call(net, {**buffers, **virtual}, (val[0],)),
                                                         val[1])
            want = torch.autograd.grad(val_loss, alphas)
    for i, (a, b) in enumerate(zip(got, want)):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), f"cell {i}"


@pytest.mark.parametrize("gates", ["softmax", "sigmoid"])
def test_the_alpha_step_leaves_the_weights_untouched(gates):
    """The reference code leaves validation gradients in the network weights before the weight step."""
    net = _net(gates=gates)
    train, val = _batches()
    opt = torch.optim.SGD(net.weights(), lr=0.1, momentum=0.9)
    before = {n: t.clone() for n, t in net.state_dict().items() if not n.startswith("alpha_")}
    alphas_before = [a.clone() for a in net.alphas()]
    arch = Architect(net, order=2, regularizer=zero_one_loss(10.0) if gates == "sigmoid" else None)
    arch.step(train, val, opt)
    assert all(w.grad is None for w in net.weights())  # no gradient left for the weight step to pick up
    after = {n: t for n, t in net.state_dict().items() if not n.startswith("alpha_")}
    assert all(torch.equal(before[n], after[n]) for n in before)  # weights and BN statistics
    assert all(not torch.equal(a, b) for a, b in zip(alphas_before, net.alphas()))


def test_the_zero_one_loss_adds_its_exact_gradient():
    net = _net(gates="sigmoid")
    train, val = _batches()
    plain = Architect(net, order=1).hypergradient(train, val)
    with_reg = Architect(net, order=1, regularizer=zero_one_loss(10.0)).hypergradient(train, val)
    count = sum(a.numel() for a in net.alphas())
    for a, g0, g1 in zip(net.alphas(), plain, with_reg):
        s = torch.sigmoid(a.detach())
        expected = -10.0 * 2 * (s - 0.5) * s * (1 - s) / count  # d/da of -w * mean((sigmoid(a) - 1/2)^2)
        assert torch.allclose(g1 - g0, expected, rtol=1e-10, atol=1e-14)
        assert expected.abs().sum() > 0


def test_per_cell_sigmoid_search_then_deeper_training_and_evaluation(tmp_path, capsys):
    search, train = tmp_path / "search", tmp_path / "train"
    assert main(["search", *TINY, "--layers", "4", "--epochs", "3", "--alphas", "per-cell", "--gates", "sigmoid",
                 "--derive-rule", "threshold-sparse", "--threshold", "0.5", "--pretrain-epochs", "1",
                 "--out", str(search)]) == 0
    g = json.loads((search / "genotype.json").read_text())
    assert len(g["cells"]) == 4
    # as D-DARTS, the sparse and the edge cells are both saved at the end (at the search's threshold)
    assert load_genotype(search / "genotype_threshold-sparse.json") == load_genotype(search / "genotype.json")
    edge_file = search / "genotype_threshold-edge.json"
    code = main(["derive", str(search), "--rule", "threshold-edge", "--out", str(tmp_path / "last_edge.json")])
    assert code == (0 if edge_file.is_file() else 2)
    if code == 0:
        assert load_genotype(tmp_path / "last_edge.json") == load_genotype(edge_file)
    assert [c.get("reduction", False) for c in g["cells"]] == [False, True, True, False]
    history = RunDir.open(search).read_alpha_history()
    assert str(history["gate"]) == "sigmoid"
    cells = sorted(k for k in history if k.startswith("alpha_cell_"))
    assert cells == [f"alpha_cell_{i:02d}" for i in range(4)]
    # warm-up: the alphas do not move in epoch 1, and do afterwards
    assert np.array_equal(history["alpha_cell_00"][1], history["alpha_cell_00"][0])
    assert not np.array_equal(history["alpha_cell_00"][2], history["alpha_cell_00"][1])
    rows = list(csv.DictReader(open(search / "metrics.csv")))
    assert rows[0]["arch_loss"] == "" and rows[1]["arch_loss"] != ""
    assert all(r["genotype_distance"] != "" for r in rows)
    # derive again with another rule and threshold, from the history alone
    capsys.readouterr()
    assert main(["derive", str(search), "--rule", "threshold-edge", "--threshold", "0.3",
                 "--out", str(tmp_path / "edge.json")]) == 0
    edge = json.loads((tmp_path / "edge.json").read_text())
    assert len(edge["cells"]) == 4
    # deeper: 7 cells from the 4 searched, reductions at 2 and 4
    assert main(["train", "--from-run", str(search), "--dataset", "digits", "--layers", "7", "--init-channels", "4",
                 "--batch-size", "128", "--workers", "0", "--epochs", "1", "--out", str(train), "-q"]) == 0
    final = json.loads((train / "final.json").read_text())
    assert final["params"] > 0 and 0 <= final["test_acc"] <= 100
    assert main(["evaluate", str(train), "--workers", "0", "--json"]) == 0
    assert main(["info", "--genotype", str(search / "genotype.json"), "--dataset", "digits", "--layers", "4",
                 "--init-channels", "8"]) == 0
    assert main(["plot", str(search), "--only", "heatmaps,totals,curves"]) == 0
    assert main(["report", str(search)]) == 0


def test_early_stop_when_the_genotype_stops_moving(tmp_path):
    run = tmp_path / "run"
    # every distance is at most 1000, so the search stops after `patience` epochs past the warm-up
    assert main(["search", *TINY, "--layers", "3", "--epochs", "6", "--early-stop-distance", "1000",
                 "--patience", "2", "--pretrain-epochs", "1", "--out", str(run)]) == 0
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert (run / "genotype.json").is_file()
    # the recorded distance is the architecture distance between consecutive epochs' genotypes
    from dartsnas.distance import architecture_distance
    from dartsnas.genotype import load_genotype

    d = architecture_distance(load_genotype(run / "genotypes" / "epoch_002.json"),
                              load_genotype(run / "genotypes" / "epoch_003.json"))["distance"]
    assert float(rows[2]["genotype_distance"]) == d
    # a run that stopped early is final: resuming it is one line, and changes nothing
    before = (run / "metrics.csv").read_text()
    assert main(["search", "--resume", str(run)]) == 2
    assert (run / "metrics.csv").read_text() == before


@pytest.mark.parametrize("args, message", [
    (["--space", "resnet18", "--primitives", "none,skip_connect,sep_conv_3x3"], "needs the ops conv_3x3"),
    (["--threshold", "0.5"], "--threshold applies to the threshold rules"),
    (["--derive-rule", "threshold-edge", "--threshold", "1.5"], "threshold must be in (0, 1]"),
    (["--alphas", "everywhere"], "invalid choice"),
])
def test_bad_d_darts_options_are_one_line(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) if message == "invalid choice" else _nothing():
        code = main(["search", *TINY, "--layers", "3", "--epochs", "1", *args, "--out", str(tmp_path / "r")])
        assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and not (tmp_path / "r").exists()


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def test_resume_refuses_to_change_the_gates_or_the_rule(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", *TINY, "--layers", "3", "--epochs", "1", "--out", str(run)]) == 0
    for flag in (["--gates", "sigmoid"], ["--derive-rule", "threshold-edge"], ["--alphas", "per-cell"]):
        assert main(["search", "--resume", str(run), "--epochs", "2", *flag]) == 2
        assert "--resume cannot change" in capsys.readouterr().err


def test_distance_command(tmp_path, capsys):
    assert main(["distance", "DARTS_V2", "DARTS_V2"]) == 0
    assert "0" in capsys.readouterr().out
    assert main(["distance", "DARTS_V1", "DARTS_V2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["distance"] > 0
    assert main(["distance", "DARTS_V2", str(tmp_path / "missing.json")]) == 2


# -- search around handcrafted networks ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "xception"])
def test_a_baseline_space_starts_on_its_baseline_and_the_cell_is_the_block(name):
    from dartsnas.baselines import baseline_genotype
    from dartsnas.config import SearchConfig
    from dartsnas.distance import architecture_distance
    from dartsnas.engine.search import Search
    from dartsnas.network import EvalNetwork

    search = Search(SearchConfig(dataset="digits", layers=3, init_channels=4, space=name, workers=0, epochs=1),
                    show_progress=False)
    baseline = baseline_genotype(name)
    assert architecture_distance(search.network.genotype(), baseline)["distance"] == 0
    # the trained network's normal cell computes exactly the block on its preprocessed input
    net = EvalNetwork(f"{name.upper()}_BASELINE", 4, 10, 3, in_channels=1).eval()
    cell = net.cells[0]
    x = torch.randn(2, 12, 8, 8)
    h = cell.preprocess1(x)
    with torch.no_grad():
        if name == "resnet18":
            want = cell.ops[1](cell.ops[0](h)) + cell.ops[2](h)
        else:
            want = cell.ops[2](cell.ops[1](cell.ops[0](h))) + cell.ops[3](h)
        assert torch.allclose(cell(x, x), want)
    kinds = [type(m).__name__ for m in cell.ops]
    assert kinds[-1] == "Identity"  # the residual


def test_search_around_resnet18_then_train_the_result_and_the_baseline(tmp_path):
    search = tmp_path / "search"
    assert main(["search", *TINY[:2], "--init-channels", "4", "--batch-size", "128", "--workers", "0", "-q",
                 "--layers", "3", "--epochs", "1", "--space", "resnet18", "--out", str(search)]) == 0
    saved = (search / "config.yaml").read_text()
    assert "derive_rule: threshold-edge" in saved and "threshold: 0.5" in saved
    for genotype, out in ((["--from-run", str(search)], "t1"), (["--genotype", "RESNET18_BASELINE"], "t2")):
        assert main(["train", *genotype, "--dataset", "digits", "--layers", "3", "--init-channels", "8",
                     "--batch-size", "128", "--workers", "0", "--epochs", "1", "--out", str(tmp_path / out),
                     "-q"]) == 0
        assert json.loads((tmp_path / out / "final.json").read_text())["params"] > 0
