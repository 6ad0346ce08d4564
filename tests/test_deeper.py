"""Deeper and shallower networks from a per-cell genotype (D-DARTS): per_cell_layout and EvalNetwork."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dartsnas.errors import ConfigError
from dartsnas.genotype import CellDesign, Genotype, load_genotype, published_genotype
from dartsnas.network import EvalNetwork, per_cell_layout

D_DARTS = Path(__file__).resolve().parents[2] / "shared" / "genotypes" / "d-darts" / (
    "D-DARTS_threshold_sparse_cifar10_0.85_50.txt")


def cell(op: str, reduction: bool = False) -> CellDesign:
    """A two-node cell whose op says which searched cell it is."""
    return CellDesign(nodes=[[(op, 0), (op, 1)], [(op, 2), ("skip_connect", 0)]], concat=[2, 3], reduction=reduction)


A, B, C, D, E = (cell(op) for op in ("sep_conv_3x3", "dil_conv_3x3", "sep_conv_5x5", "dil_conv_5x5", "skip_connect"))
R1, R2 = cell("max_pool_3x3", True), cell("avg_pool_3x3", True)


def five() -> Genotype:
    """Positions 0 normal, 1 reduction, 2 normal, 3 reduction, 4 normal, all distinct."""
    return Genotype(cells=(A, R1, B, R2, C))


def test_own_depth_keeps_the_genotype_positions() -> None:
    g = five()
    assert per_cell_layout(g.cells, 5) == ([A, R1, B, R2, C], {1, 3})
    net = EvalNetwork(g, 4, 10, 5)
    assert [c.reduction for c in net.cells] == [False, True, False, True, False]
    # at its own depth even positions a rebuilt network would not use, and no reductions at all, are kept
    odd = Genotype(cells=(R1, A, A, A))
    assert per_cell_layout(odd.cells, 4) == ([R1, A, A, A], {0})
    assert per_cell_layout((A, B), 2) == ([A, B], set())


def test_deeper_network_from_five_cells() -> None:
    designs, reductions = per_cell_layout(five().cells, 14)
    assert reductions == {4, 9}
    assert designs == [A, A, A, A, R1, B, B, B, B, R2, C, C, C, C]
    torch.manual_seed(0)
    net = EvalNetwork(five(), 4, 10, 14).eval()
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [4, 9]
    with torch.no_grad():
        logits, aux = net(torch.randn(1, 3, 32, 32))
    assert logits.shape == (1, 10) and aux is None


def test_deeper_network_with_auxiliary_head_trains() -> None:
    torch.manual_seed(0)
    net = EvalNetwork(five(), 4, 10, 14, auxiliary=True)
    assert net.auxiliary_index == 9
    logits, aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and aux is not None and aux.shape == (2, 10)


def test_normal_cells_repeat_cyclically_per_stage() -> None:
    g = Genotype(cells=(A, B, R1, C, R2, D, E))
    designs, reductions = per_cell_layout(g.cells, 11)
    assert reductions == {3, 7}
    assert designs == [A, B, A, R1, C, C, C, R2, D, E, D]


def test_shallower_network() -> None:
    designs, reductions = per_cell_layout(five().cells, 3)
    assert (designs, reductions) == ([A, R1, R2], {1, 2})  # no normal position in stages 1 and 2
    assert per_cell_layout(five().cells, 4) == ([A, R1, R2, C], {1, 2})
    assert per_cell_layout(five().cells, 1) == ([R1], {0})  # layers // 3 == 2 * layers // 3 == 0
    net = EvalNetwork(five(), 4, 10, 3).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32))[0].shape == (1, 10)


def test_stages_without_normal_cells_borrow_the_nearest() -> None:
    # one reduction cell: both new reductions use it; the missing stage 2 borrows stage 1
    assert per_cell_layout((A, R1, B), 8) == ([A, A, R1, B, B, R1, B, B], {2, 5})
    # empty middle stage: the previous stage is preferred over the next
    assert per_cell_layout((A, R1, R2, B), 8) == ([A, A, R1, A, A, R2, B, B], {2, 5})
    # empty first stage: nothing before it, so the next stage lends
    assert per_cell_layout((R1, A, R2, B), 8) == ([A, A, R1, A, A, R2, B, B], {2, 5})


def test_genotypes_that_cannot_be_rebuilt_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs reduction cells to be rebuilt at another depth") as info:
        EvalNetwork(Genotype(cells=(A, B, C)), 4, 10, 6)
    assert "\n" not in str(info.value) and "layers=3" in str(info.value)
    with pytest.raises(ConfigError, match="3 reduction cells"):
        per_cell_layout((A, R1, B, R2, C, R1, D), 9)
    with pytest.raises(ConfigError, match="no normal cell"):
        per_cell_layout((R1, R2), 5)
    with pytest.raises(ConfigError, match="layers"):
        per_cell_layout(five().cells, 0)


def test_darts_genotype_is_unaffected() -> None:
    g = published_genotype("DARTS_V2")
    for layers in (3, 8, 14, 20):
        designs, reductions = EvalNetwork._layout(g, layers)
        assert reductions == {layers // 3, 2 * layers // 3}
        assert designs == [g.reduce if i in reductions else g.normal for i in range(layers)]


def test_d_darts_file_at_twenty_layers() -> None:
    if not D_DARTS.is_file():
        pytest.skip(f"{D_DARTS} is not available")
    cells = load_genotype(D_DARTS).cells  # eight cells, reductions at 2 and 6
    designs, reductions = per_cell_layout(cells, 20)
    assert reductions == {6, 13}
    stage0, stage1, stage2 = [cells[0], cells[1]], [cells[3], cells[4], cells[5]], [cells[7]]
    expected = [stage0[i % 2] for i in range(6)] + [cells[2]] + [stage1[i % 3] for i in range(6)] + [cells[6]]
    expected += stage2 * 6
    assert designs == expected
