"""Seeing and preventing collapse: the alpha-Hessian eigenvalue (against a dense Hessian), DARTS-ES and the
robust-DARTS remedies."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from dartsnas import SearchNetwork, SearchSpace
from dartsnas.hessian import alpha_hessian_eigenvalue
from dartsnas.ops.lean import plain_autograd


def _tiny_network(seed=0):
    torch.manual_seed(seed)
    space = SearchSpace(primitives=("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3"),
                        nodes=2, multiplier=2)  # 50 alphas: a dense Hessian in seconds
    net = SearchNetwork(space, 2, 3, 3, in_channels=1, stem_multiplier=1).double()
    with torch.no_grad():  # away from the uniform start, so the Hessian has some structure
        for a in net.alphas():
            a.normal_(0, 0.5)
    return net


def _dense_hessian(net, batches):
    names = net.alpha_names()
    shapes = [a.shape for a in net.alphas()]
    flat = torch.cat([a.detach().reshape(-1) for a in net.alphas()])
    total = sum(len(y) for _, y in batches)

    def loss(v):
        parts = dict(zip(names, (p.view(s) for p, s in zip(torch.split(v, [s.numel() for s in shapes]), shapes))))
        return sum(F.cross_entropy(functional_call(net, parts, (x,)), y) * len(y) / total for x, y in batches)

    with plain_autograd():
        return torch.autograd.functional.hessian(loss, flat)


def test_the_eigenvalue_is_the_dense_hessians_largest():
    """Train mode (BatchNorm on batch statistics, which the computation must not disturb), two batches of
    different sizes, float64."""
    net = _tiny_network()
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])),
               (torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64), torch.tensor([2, 2, 1, 0]))]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    ours = alpha_hessian_eigenvalue(net, batches=batches, tol=1e-12, max_iter=200)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())  # weights, alphas, BN statistics
    assert all(p.grad is None for p in net.parameters())
    dense = _dense_hessian(net, batches)
    assert torch.allclose(dense, dense.T, atol=1e-10)
    assert ours == pytest.approx(float(torch.linalg.eigvalsh(dense)[-1]), rel=1e-6)
    # one batch through x, y; the same start each call, so the same number
    x, y = batches[0]
    assert alpha_hessian_eigenvalue(net, x, y, max_iter=5) == alpha_hessian_eigenvalue(net, batches=[(x, y)],
                                                                                        max_iter=5)


def test_the_default_tolerance_is_close_and_cheap():
    net = _tiny_network(3)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(8, 1, 8, 8, generator=g, dtype=torch.float64), torch.arange(8) % 3
    net.eval()  # eval mode too
    exact = float(torch.linalg.eigvalsh(_dense_hessian(net, [(x, y)]))[-1])
    assert alpha_hessian_eigenvalue(net, x, y) == pytest.approx(exact, rel=2e-2)


SEARCH = ["search", "--dataset", "digits", "--layers", "3", "--init-channels", "4", "--nodes", "2", "--multiplier",
          "2", "--batch-size", "64", "--workers", "0", "--limit-batches", "3", "-q"]


def _rows(run):
    import csv

    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_search_records_the_eigenvalue_and_the_parameter_free_ops(tmp_path):
    """With every remedy on at once (each is tested on its own below): they run end to end, and --max-skip 0
    leaves no skip connection in a normal cell, in every epoch's genotype."""
    from dartsnas.cli import main
    from dartsnas.genotype import load_genotype

    run = tmp_path / "run"
    remedies = ["--max-skip", "0", "--random-smoothing", "0.3", "--auxiliary-skip", "--drop-path-prob", "0.2"]
    assert main([*SEARCH, "--epochs", "2", "--hessian-eigenvalue", "--eigen-batches", "1", *remedies,
                 "--out", str(run)]) == 0
    for path in (run / "genotypes").iterdir():
        assert all(op != "skip_connect" for node in load_genotype(path).normal.nodes for op, _ in node)
    rows = _rows(run)
    assert [float(r["hessian_eigenvalue"]) > 0 for r in rows] == [True, True]  # finite, and positive here
    assert all(float(r["eigen_seconds"]) > 0 for r in rows)
    genotype = load_genotype(run / "genotypes" / "epoch_002.json")
    normal, reduce = genotype.cell_designs()
    free = {"skip_connect", "max_pool_3x3", "avg_pool_3x3"}
    assert int(rows[-1]["param_free_normal"]) == sum(op in free for node in normal.nodes for op, _ in node)
    assert int(rows[-1]["param_free_reduce"]) == sum(op in free for node in reduce.nodes for op, _ in node)
    assert "eigenvalue" in (run / "log.txt").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    logged = [e.value for e in events.Scalars("collapse/hessian_eigenvalue")]
    assert logged == pytest.approx([float(r["hessian_eigenvalue"]) for r in rows], rel=1e-5)
    assert main(["plot", str(run), "--only", "curves", "--out", str(tmp_path / "pics")]) == 0
    from PIL import Image

    with Image.open(tmp_path / "pics" / "curves.png") as im:
        assert im.width > 2000  # the fourth panel: the eigenvalue and the parameter-free ops


def test_darts_es_stops_keeps_the_genotype_of_k_epochs_before_and_resumes_across(tmp_path, monkeypatch):
    """The rule on a scripted eigenvalue curve (a real one cannot be made to grow on cue): flat, then doubled.
    With k=2 and T=0.75 the stop comes after epoch 4 and keeps epoch 2's genotype; the run is first stopped
    after epoch 3 and resumed, and a resume of the stopped run is refused."""
    from dartsnas.cli import main
    from dartsnas.engine.search import Search
    from dartsnas.genotype import load_genotype

    curve = [1.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    monkeypatch.setattr(Search, "hessian_eigenvalue", lambda self: curve[self._epoch - 1])
    run = tmp_path / "run"
    args = ["--early-stop", "eigenvalue", "--es-window", "2", "--es-threshold", "0.75"]
    assert main([*SEARCH, "--epochs", "3", *args, "--out", str(run)]) == 0
    assert main(["search", "--resume", str(run), "--epochs", "6", "-q"]) == 0
    assert [int(r["epoch"]) for r in _rows(run)] == [1, 2, 3, 4]
    assert [float(r["hessian_eigenvalue"]) for r in _rows(run)] == curve[:4]
    assert load_genotype(run / "genotype.json") == load_genotype(run / "genotypes" / "epoch_002.json")
    assert "DARTS-ES" in (run / "log.txt").read_text()
    assert main(["search", "--resume", str(run), "--epochs", "8", "-q"]) == 2


def test_max_skip_caps_the_skip_connections_of_a_normal_cell():
    import numpy as np

    from dartsnas.genotype import derive_genotype
    from dartsnas.ops import DARTS_PRIMITIVES

    prims = list(DARTS_PRIMITIVES)
    skip, conv = prims.index("skip_connect"), prims.index("sep_conv_3x3")
    rng = np.random.default_rng(0)
    w = rng.uniform(0.0, 0.05, size=(14, 8))
    w[:, skip] = 0.5 + 0.01 * np.arange(14)  # a collapsed cell: skip_connect strongest on every edge
    w[:, conv] = 0.3
    plain = derive_genotype(w, w, prims, 4, 4)
    assert sum(op == "skip_connect" for node in plain.normal.nodes for op, _ in node) == 8
    for m in (0, 2):
        capped = derive_genotype(w, w, prims, 4, 4, max_skip=m)
        kept = [(i, j) for i, node in enumerate(capped.normal.nodes) for op, j in node if op == "skip_connect"]
        assert len(kept) == m
        starts = [0, 2, 5, 9]
        strongest = sorted(((i, j) for i, node in enumerate(plain.normal.nodes) for _, j in node),
                           key=lambda e: -w[starts[e[0]] + e[1], skip])[:m]
        assert sorted(kept) == sorted(strongest)  # the strongest skips stay
        assert capped.reduce == plain.reduce  # P-DARTS caps the normal cell only


def test_random_smoothing_perturbs_the_weight_step_within_its_radius():
    from dartsnas.config import SearchConfig
    from dartsnas.engine.search import Search

    net = _tiny_network()
    clean = [g.detach().clone() for g in net.gates()]
    with net.perturbed_gates(0.1):
        noisy = [g.detach().clone() for g in net.gates()]
        assert all(torch.equal(g.detach(), n) for g, n in zip(net.gates(), noisy))  # drawn once, for the step
    assert all(0 < (n - c).abs().max() <= 0.1 for n, c in zip(noisy, clean))
    assert all(torch.equal(g.detach(), c) for g, c in zip(net.gates(), clean))  # gone after the step
    cfg = SearchConfig(dataset="digits", layers=3, init_channels=4, nodes=2, multiplier=2, workers=0, epochs=10,
                       random_smoothing=0.3)
    search = Search(cfg, show_progress=False)
    search._epoch = 1
    assert search.smoothing_radius() == pytest.approx(0.03)  # SDARTS' schedule: 0.03 rising to 0.3
    search._epoch = 10
    assert search.smoothing_radius() == pytest.approx(0.03 + 0.27 * 9 / 10)
    cfg.random_smoothing = 0.0
    assert Search(cfg, show_progress=False).smoothing_radius() == 0.0


def test_darts_minus_adds_a_decaying_skip_to_every_edge():
    from dartsnas.config import SearchConfig
    from dartsnas.engine.search import Search

    torch.manual_seed(0)
    net = SearchNetwork(SearchSpace(nodes=2, multiplier=2), 4, 3, 3, in_channels=1, auxiliary_skip=True).double()
    net.eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    kinds = {type(m).__name__ for cell in net.cells for m in cell.aux_skips}
    assert kinds == {"Identity", "FactorizedReduce"}  # a factorized reduce on a reduction cell's input edges
    net.set_auxiliary_skip_weight(0.0)
    without = net(x)
    saved = [cell.aux_skips for cell in net.cells]
    for cell in net.cells:
        cell.aux_skips = None
    assert torch.equal(net(x), without)  # beta 0: the plain supernet
    for cell, aux in zip(net.cells, saved):
        cell.aux_skips = aux
    net.set_auxiliary_skip_weight(1.0)
    assert not torch.allclose(net(x), without)
    cfg = SearchConfig(dataset="digits", layers=3, init_channels=4, nodes=2, multiplier=2, workers=0, epochs=4,
                       auxiliary_skip=True)
    search = Search(cfg, show_progress=False)
    for epoch, beta in ((1, 1.0), (4, 0.25)):  # linear decay from 1 towards 0
        search.begin_epoch(epoch, None)
        assert all(cell.aux_weight == beta for cell in search.network.cells)


def test_search_drop_path_drops_edges_in_the_weight_step_only():
    net = _tiny_network()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    net.train()
    with torch.no_grad():
        plain = [net(x) for _ in range(2)]
        with net.dropped_paths(0.5):
            dropped = [net(x) for _ in range(2)]
        after = net(x)
        net.eval()
        with net.dropped_paths(0.5):
            evaluated = net(x)
        net.train()
    assert torch.allclose(plain[0], plain[1]) and torch.allclose(after, plain[0])
    assert not torch.allclose(dropped[0], dropped[1])  # fresh masks each pass
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), evaluated)  # never in eval mode
