"""Search modes that change speed or memory, not the maths: channels-last, recompute, bf16; and PC-DARTS."""
import numpy as np
import pytest
import torch

from dartsnas.config import SearchConfig
from dartsnas.engine.search import Search
from dartsnas.runs import RunDir, derive_from_history

TINY = dict(dataset="digits", layers=3, init_channels=4, nodes=2, multiplier=2, stem_multiplier=1, batch_size=64,
            workers=0, epochs=1, seed=3, checkpoint_every=0)


def one_epoch(tmp_path, name, **extra):
    search = Search(SearchConfig(**{**TINY, **extra}), show_progress=False)
    run = RunDir.create(tmp_path / name)
    result = search.run(run)
    return search, result, run


@pytest.mark.parametrize("mode", [dict(channels_last=True), dict(recompute="cells"),
                                  dict(recompute="edges", channels_last=True), dict(recompute="all"),
                                  dict(partial=2, recompute="edges"), dict(recompute="ops"),
                                  dict(recompute="ops", channels_last=True), dict(partial=2, recompute="ops")])
@pytest.mark.parametrize("hessian", ["finite-difference", "exact"])
def test_layout_and_recompute_give_the_same_gradients(mode, hessian):
    """float64, the supernet and the second-order Architect (both Hessian modes): weight gradients and
    hypergradients agree."""
    from dartsnas import Architect
    from dartsnas.ops import DARTS_PRIMITIVES
    from dartsnas.space import SearchSpace
    from dartsnas.supernet import SearchNetwork

    space = SearchSpace(primitives=tuple(DARTS_PRIMITIVES), nodes=2, multiplier=2)
    torch.manual_seed(0)
    pc = mode.get("partial", 1)
    nets = [SearchNetwork(space, 4, 10, 3, stem_multiplier=1, partial_channels=pc).double(),
            SearchNetwork(space, 4, 10, 3, stem_multiplier=1, partial_channels=pc,
                          recompute=mode.get("recompute", "off")).double()]
    nets[1].load_state_dict(nets[0].state_dict())
    fmt = torch.channels_last if mode.get("channels_last") else torch.contiguous_format
    nets[1].to(memory_format=fmt)
    x, y = torch.randn(8, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (8,))
    xv, yv = torch.randn(8, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (8,))
    grads = []
    for net, f in zip(nets, (torch.contiguous_format, fmt)):
        opt = torch.optim.SGD(net.weights(), lr=0.1, momentum=0.9, weight_decay=3e-4)
        batch, val = (x.contiguous(memory_format=f), y), (xv.contiguous(memory_format=f), yv)
        hyper = Architect(net, order=2, hessian=hessian).hypergradient(batch, val, opt)
        torch.nn.functional.cross_entropy(net(batch[0]), y).backward()
        grads.append((hyper, [p.grad for p in net.weights()]))
    for a, b in zip(grads[0][0], grads[1][0]):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-9)
    for a, b in zip(grads[0][1], grads[1][1]):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-11)


@pytest.mark.slow
def test_bf16_autocast_tracks_float32(tmp_path):
    ref, ref_result, _ = one_epoch(tmp_path, "fp32")
    bf, result, _ = one_epoch(tmp_path, "bf16", amp="bf16")
    moved = [b - a0 for b, a0 in zip(bf.network.alphas(), (torch.from_numpy(h[0]) for h in bf.history.values()))]
    moved_ref = [a - a0 for a, a0 in zip(ref.network.alphas(), (torch.from_numpy(h[0]) for h in ref.history.values()))]
    for m, r in zip(moved, moved_ref):  # the alphas move the same way, within bf16's rounding
        assert torch.nn.functional.cosine_similarity(m.flatten(), r.flatten(), dim=0) > 0.9
    assert result.metrics[0]["train_loss"] == pytest.approx(ref_result.metrics[0]["train_loss"], rel=0.05)


def test_pc_darts_search_saves_betas_and_derives_the_same_genotype(tmp_path):
    search, result, run = one_epoch(tmp_path, "pc", partial_channels=2, recompute="cells")
    with np.load(run.alphas_path) as h:
        assert h["beta_normal"].shape == (2, search.space.num_edges)
        assert not np.array_equal(h["beta_normal"][0], h["beta_normal"][1])  # the betas learn
    run.write_config(search.cfg.to_dict())
    assert derive_from_history(run.path)[0] == result.genotype


def test_partial_channels_must_divide_the_channels():
    from dartsnas.errors import ConfigError

    with pytest.raises(ConfigError, match="partial_channels"):
        SearchConfig(**{**TINY, "partial_channels": 3}).validate()
