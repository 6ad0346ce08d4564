"""EvalNetwork and the counts: the original code's exact figures, shapes, gradients, drop path, checkpoint args."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dartsnas.errors import ConfigError, DartsNASError, GenotypeError
from dartsnas.genotype import CellDesign, Genotype, load_genotype, published_genotype
from dartsnas.network import AuxiliaryHead, EvalCell, EvalNetwork, drop_path
from dartsnas.ops import Identity
from dartsnas.profile import count_macs, count_parameters, measure_throughput

SHARED = Path(__file__).resolve().parents[2] / "shared" / "genotypes"
D_DARTS = "D-DARTS_threshold_sparse_cifar10_0.85_50.txt"

# ../shared/genotypes/README.md: what the original DARTS code builds for each published cell.
# (CIFAR-10 params, CIFAR-10 MACs, CIFAR-100 params, ImageNet params, ImageNet MACs)
PUBLISHED_COUNTS = {
    "DARTS_V1": (3_169_414, 500_987_520, 3_221_344, 4_510_432, 505_864_704),
    "DARTS_V2": (3_349_342, 528_359_040, 3_401_272, 4_718_752, 529_911_552),
    "PC_DARTS_cifar": (3_634_678, 556_670_592, 3_686_608, 5_270_560, 571_137_408),
    "PC_DARTS_image": (3_721_510, 570_466_944, 3_773_440, 5_342_464, 581_627_328),
    "PDARTS": (3_433_798, 532_174_464, 3_485_728, 4_944_352, 542_819_328),
    "NASNet": (3_830_950, 603_452_448, 3_895_840, 5_564_320, 604_031_616),
    "AmoebaNet": (3_145_078, 488_931_552, 3_184_048, 4_627_360, 526_746_624),
}


def shared(name: str) -> Path:
    """A D-DARTS genotype file under ../shared/genotypes, skipping the test when it is absent."""
    path = SHARED / "d-darts" / name
    if not path.is_file():
        pytest.skip(f"{path} is not available (the ../shared folder of this project)")
    return path


def per_position_genotype() -> Genotype:
    """Four cells, reductions at 1 and 3, nodes with one to three inputs, a concat that is not the last nodes."""
    normal = CellDesign(nodes=[[("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0)],
                               [("dil_conv_3x3", 2)],
                               [("avg_pool_3x3", 3), ("skip_connect", 0)]], concat=[2, 4])
    reduce = CellDesign(nodes=[[("skip_connect", 0), ("sep_conv_5x5", 1)], [("max_pool_3x3", 1)],
                               [("dil_conv_5x5", 2), ("skip_connect", 3)]], concat=[2, 3, 4], reduction=True)
    other = CellDesign(nodes=[[("skip_connect", 1)], [("sep_conv_3x3", 2), ("avg_pool_3x3", 0)]], concat=[3])
    return Genotype(cells=(normal, reduce, other, reduce))


# -------------------------------------------------------------------------------------------------
# Exact counts against the original code
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PUBLISHED_COUNTS))
def test_cifar_counts_match_the_original_code(name):
    params10, macs10, params100, _, _ = PUBLISHED_COUNTS[name]
    g = published_genotype(name)
    net = EvalNetwork(g, 36, 10, 20, auxiliary=True)
    assert count_parameters(net) == params10
    assert count_macs(net, (3, 32, 32)) == macs10
    assert count_parameters(EvalNetwork(g, 36, 100, 20, auxiliary=True)) == params100


@pytest.mark.parametrize("name", list(PUBLISHED_COUNTS))
def test_imagenet_counts_match_the_original_code(name):
    _, _, _, params, macs = PUBLISHED_COUNTS[name]
    net = EvalNetwork(published_genotype(name), 48, 1000, 14, auxiliary=True, stem="imagenet")
    assert count_parameters(net) == params
    assert count_macs(net, (3, 224, 224)) == macs


def test_d_darts_per_position_counts_match_its_own_code():
    g = load_genotype(shared(D_DARTS))
    assert g.is_per_cell() and g.reductions() == [2, 6]
    net = EvalNetwork(g, 36, 10, 8, auxiliary=True)
    assert count_parameters(net) == 1_244_242
    assert count_macs(net, (3, 32, 32)) == 255_307_392
    assert count_parameters(net, exclude_auxiliary=False) == 1_720_668
    net100 = EvalNetwork(g, 36, 100, 8, auxiliary=True)
    assert count_parameters(net100) == 1_296_172
    assert count_macs(net100, (3, 32, 32)) == 255_359_232


def test_per_position_genotype_at_another_depth_moves_the_reductions_to_a_third_and_two_thirds():
    g = per_position_genotype()
    net = EvalNetwork(g, 4, 10, 6)  # the mapping itself is tested in test_deeper.py
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [2, 4]


# -------------------------------------------------------------------------------------------------
# Shapes, gradients, layout
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auxiliary", [False, True])
def test_cifar_forward_shapes_and_every_parameter_gets_a_gradient(auxiliary):
    torch.manual_seed(0)
    net = EvalNetwork(published_genotype("DARTS_V2"), 4, 7, 3, auxiliary=auxiliary, drop_path_prob=0.2)
    x = torch.randn(2, 3, 32, 32)
    logits, aux = net(x)
    assert logits.shape == (2, 7)
    if auxiliary:
        assert aux is not None and aux.shape == (2, 7)
    else:
        assert aux is None
    target = torch.tensor([1, 2])
    loss = F.cross_entropy(logits, target) + (0.4 * F.cross_entropy(aux, target) if auxiliary else 0.0)
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    net.eval()
    logits, aux = net(x)
    assert logits.shape == (2, 7) and aux is None


def test_imagenet_stem_forward_with_auxiliary_at_224():
    torch.manual_seed(0)
    net = EvalNetwork(published_genotype("DARTS_V2"), 4, 5, 3, auxiliary=True, stem="imagenet")
    logits, aux = net(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 5) and aux.shape == (2, 5)
    (logits.sum() + aux.sum()).backward()
    assert all(p.grad is not None for p in net.parameters())
    # the ImageNet auxiliary head has no BN after its 2x2 convolution (as in the paper's experiments)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.auxiliary_head.modules()) == 1
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in AuxiliaryHead(8, 3).modules()) == 2


def test_imagenet_stem_works_at_other_sizes_and_channels():
    net = EvalNetwork(published_genotype("DARTS_V1"), 4, 3, 3, stem="imagenet", in_channels=1).eval()
    logits, aux = net(torch.randn(2, 1, 64, 48))
    assert logits.shape == (2, 3) and aux is None


@pytest.mark.parametrize("layers", [1, 2, 4])
def test_shallow_networks_build_and_run(layers):
    net = EvalNetwork(published_genotype("DARTS_V2"), 4, 3, layers, in_channels=1).eval()
    assert net(torch.randn(1, 1, 8, 8))[0].shape == (1, 3)


def test_reductions_double_channels_at_one_and_two_thirds():
    net = EvalNetwork(published_genotype("DARTS_V2"), 6, 10, 8)
    assert [cell.reduction for cell in net.cells] == [i in (2, 5) for i in range(8)]
    assert net.auxiliary_index == 5
    assert net.classifier.in_features == 4 * 6 * 4
    # the cell after a reduction halves its older input with a factorized reduce
    assert type(net.cells[3].preprocess0).__name__ == "FactorizedReduce"
    assert type(net.cells[4].preprocess0).__name__ == "ReLUConvBN"
    # a reduction cell halves the resolution and doubles the channels of its output
    s = torch.randn(1, 4 * 6, 8, 8)
    assert net.cells[2].eval()(s, s).shape == (1, 4 * 12, 4, 4)


def test_per_position_genotype_keeps_its_cells_and_reductions():
    torch.manual_seed(0)
    g = per_position_genotype()
    net = EvalNetwork(g, 4, 3, 4, auxiliary=True)
    assert [c.reduction for c in net.cells] == [False, True, False, True]
    assert [c.multiplier for c in net.cells] == [2, 3, 1, 3]
    assert net.auxiliary_index == 3
    x = torch.randn(2, 3, 32, 32)
    logits, aux = net(x)
    assert logits.shape == (2, 3) and aux.shape == (2, 3)
    (logits.sum() + aux.sum()).backward()
    assert all(p.grad is not None for p in net.parameters())


def test_cell_nodes_sum_any_number_of_inputs():
    design = CellDesign(nodes=[[("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 1)], [("skip_connect", 2)]],
                        concat=[3, 2])
    cell = EvalCell(design, 4, 4, 4, reduction=False, reduction_prev=False).eval()
    s0, s1 = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    out = cell(s0, s1)
    p0, p1 = cell.preprocess0(s0), cell.preprocess1(s1)
    node = p0 + 2 * p1
    assert torch.allclose(out, torch.cat([node, node], 1))


def test_pooling_ops_have_no_bn_in_the_eval_network():
    design = CellDesign(nodes=[[("max_pool_3x3", 0), ("avg_pool_3x3", 1)]], concat=[2])
    cell = EvalCell(design, 4, 4, 4, reduction=False, reduction_prev=False)
    assert all(isinstance(op, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for op in cell.ops)


# -------------------------------------------------------------------------------------------------
# Drop path
# -------------------------------------------------------------------------------------------------


def test_drop_path_is_per_sample_and_rescaled():
    torch.manual_seed(0)
    x = torch.ones(64, 3, 2, 2)
    y = drop_path(x, 0.5)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert ((per_sample == 0).all(1) | (per_sample == 2).all(1)).all()
    assert 0 < int((per_sample[:, 0] == 0).sum()) < 64
    assert drop_path(x, 0.0) is x


def test_drop_path_only_in_training_and_never_on_identity():
    torch.manual_seed(0)
    net = EvalNetwork(published_genotype("DARTS_V2"), 4, 3, 3, drop_path_prob=0.5)
    x = torch.randn(4, 3, 16, 16)
    net.eval()
    assert torch.equal(net(x)[0], net(x)[0])
    net.train()
    # two training-mode calls on the same batch differ only by their drop-path masks
    a, b = net(x)[0], net(x)[0]
    assert not torch.equal(a, b)
    net.drop_path_prob = 0.0
    assert torch.equal(net(x)[0], net(x)[0])

    # a cell of identity skip connections only: nothing to drop
    design = CellDesign(nodes=[[("skip_connect", 0), ("skip_connect", 1)], [("skip_connect", 2)]], concat=[2, 3])
    cell = EvalCell(design, 4, 4, 4, reduction=False, reduction_prev=False).train()
    assert all(isinstance(op, Identity) for op in cell.ops)
    s0, s1 = torch.randn(8, 4, 5, 5), torch.randn(8, 4, 5, 5)
    assert torch.equal(cell(s0, s1, 0.9), cell(s0, s1, 0.0))
    # a stride-2 skip connection is a factorized reduce: it is dropped
    rcell = EvalCell(design, 4, 4, 4, reduction=True, reduction_prev=False).train()
    assert not isinstance(rcell.ops[0], Identity)
    torch.manual_seed(1)
    assert not torch.equal(rcell(s0, s1, 0.9), rcell(s0, s1, 0.0))


# -------------------------------------------------------------------------------------------------
# Checkpoint arguments and validation
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["darts", "per_position", "imagenet"])
def test_net_args_round_trip_loads_the_state_dict_strictly(kind):
    torch.manual_seed(0)
    if kind == "darts":
        net = EvalNetwork(published_genotype("NASNet"), 4, 10, 5, auxiliary=True)
    elif kind == "per_position":
        net = EvalNetwork(per_position_genotype(), 4, 10, 4, auxiliary=True, in_channels=1, stem_multiplier=2)
    else:
        net = EvalNetwork(published_genotype("AmoebaNet"), 6, 10, 3, auxiliary=True, stem="imagenet")
    args = net.net_args()
    args = json.loads(json.dumps(args))  # plain types only
    rebuilt = EvalNetwork.from_args(args)
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    assert rebuilt.net_args() == net.net_args()
    assert rebuilt.genotype == net.genotype
    x = torch.randn(2, net.in_channels, 32, 32)
    net.eval(), rebuilt.eval()
    assert torch.equal(net(x)[0], rebuilt(x)[0])


def test_from_args_refuses_incomplete_or_unknown_args():
    args = EvalNetwork(published_genotype("DARTS_V2"), 4, 10, 3).net_args()
    with pytest.raises(ConfigError, match="lack"):
        EvalNetwork.from_args({k: v for k, v in args.items() if k != "layers"})
    with pytest.raises(ConfigError, match="unknown network arguments"):
        EvalNetwork.from_args({**args, "dropout": 0.1})


def test_unknown_op_is_an_error_naming_known_ops():
    cell = CellDesign(nodes=[[("sep_conv_3x3", 0), ("warp_conv_9x9", 1)]], concat=[2])
    g = Genotype(normal=cell, reduce=cell)
    with pytest.raises(DartsNASError, match="warp_conv_9x9") as info:
        EvalNetwork(g, 4, 10, 3)
    assert "sep_conv_3x3" in str(info.value) and isinstance(info.value, GenotypeError)


@pytest.mark.parametrize("kwargs", [
    {"C": 0}, {"C": -3}, {"C": 2.5}, {"layers": 0}, {"layers": True}, {"num_classes": 0},
    {"stem": "mnist"}, {"in_channels": 0}, {"stem": "imagenet", "C": 5},
])
def test_bad_sizes_raise_config_error(kwargs):
    args = {"C": 4, "num_classes": 10, "layers": 3, **kwargs}
    C, num_classes, layers = args.pop("C"), args.pop("num_classes"), args.pop("layers")
    with pytest.raises(ConfigError):
        EvalNetwork(published_genotype("DARTS_V2"), C, num_classes, layers, **args)


def test_auxiliary_without_reduction_cells_is_refused():
    normal = CellDesign(nodes=[[("skip_connect", 0), ("skip_connect", 1)]], concat=[2])
    g = Genotype(cells=(normal, normal))
    EvalNetwork(g, 4, 10, 2)  # fine without the head
    with pytest.raises(ConfigError, match="auxiliary"):
        EvalNetwork(g, 4, 10, 2, auxiliary=True)


def test_auxiliary_head_on_too_small_images_says_so():
    net = EvalNetwork(published_genotype("DARTS_V2"), 4, 10, 3, auxiliary=True, in_channels=1)
    with pytest.raises(ConfigError, match="auxiliary"):
        net(torch.randn(2, 1, 8, 8))


# -------------------------------------------------------------------------------------------------
# profile helpers
# -------------------------------------------------------------------------------------------------


def test_counts_restore_training_mode_and_exclude_only_the_auxiliary_head():
    net = EvalNetwork(published_genotype("DARTS_V2"), 4, 10, 3, auxiliary=True).train()
    net.cells[0].eval()  # a mixed state is restored as it was
    count_macs(net, (3, 32, 32))
    assert net.training and not net.cells[0].training and net.cells[1].training
    aux = sum(p.numel() for p in net.auxiliary_head.parameters())
    assert count_parameters(net, exclude_auxiliary=False) - count_parameters(net) == aux > 0
    with pytest.raises(ConfigError):
        count_macs(net, (32, 32))


def test_macs_of_a_linear_model_are_its_weights():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.ReLU(), torch.nn.BatchNorm1d(5))
    assert count_macs(model, (3, 2, 2)) == 60


def test_measure_throughput_returns_images_per_second():
    net = EvalNetwork(published_genotype("DARTS_V2"), 4, 10, 3, in_channels=1).train()
    ips = measure_throughput(net, (1, 16, 16), batch_size=4, iters=2, warmup=1)
    assert ips > 0 and net.training
