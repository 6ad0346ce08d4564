"""The discrete network of the DARTS paper, built from a genotype and trained from scratch.

Layout follows the original code's ``NetworkCIFAR`` and ``NetworkImageNet``: a stem, ``layers`` cells with
reductions (stride 2, channels doubled) at 1/3 and 2/3 of the depth, an optional auxiliary head after the last
reduction cell, global average pooling and a linear classifier. Every BN is affine; pooling ops have no BN of
their own (unlike the search network). Drop path (per-sample, as in the original code) applies to every op output
except identity skip connections, in training mode only.

Per-position genotypes (one design per cell, D-DARTS) keep their own reduction positions at their own depth;
at another depth :func:`per_cell_layout` maps their cells onto the DARTS reduction positions. A node may sum
any number of pairs, several on one edge (threshold derivation).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from .errors import ConfigError, GenotypeError
from .genotype import CellDesign, Genotype, load_genotype
from .ops import OPS, FactorizedReduce, Identity, ReLUConvBN, build_op
from .ops.layout import cat_channels, global_avg_pool

__all__ = ["AuxiliaryHead", "EvalCell", "EvalNetwork", "default_layers", "drop_path", "per_cell_layout"]

STEMS = ("cifar", "imagenet")


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob`` and scale the kept ones by ``1 / (1 - drop_prob)``."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class EvalCell(nn.Module):
    """A cell of the trained network: two preprocessed inputs, then per node the sum of its ``(op, input)`` pairs.

    Ops reading the cell inputs (states 0 and 1) carry the stride in a reduction cell. The output concatenates
    the states named by the design's ``concat`` (``len(concat) * C`` channels). In a sparse cell a node without
    pairs is not computed and a pair reading it is skipped; unlike FairDARTS' and D-DARTS' ``DCOCell``, which
    build such a pair's op and never run it, no op is built for it (no unused weights, which DDP refuses).
    """

    def __init__(self, design: CellDesign, C_prev_prev: int, C_prev: int, C: int, reduction: bool,
                 reduction_prev: bool, op_options: Mapping[str, Any] | None = None):
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(C_prev_prev, C, affine=True)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=True)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=True)
        self.ops = nn.ModuleList()
        # per node, the (index into self.ops, input state) of each incoming pair; a node without pairs does not
        # exist and a pair reading one is skipped (sparse cells), so neither builds an op
        self.wiring: list[list[tuple[int, int]]] = []
        for i in range(len(design.nodes)):
            pairs = []
            for name, src in design.live_pairs(i):
                stride = 2 if reduction and src < 2 else 1
                pairs.append((len(self.ops), src))
                self.ops.append(build_op(name, C, stride, True, op_options))
            self.wiring.append(pairs)
        self.concat = tuple(design.concat)
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states: list[torch.Tensor | None] = [self.preprocess0(s0), self.preprocess1(s1)]
        dropping = self.training and drop_prob > 0.0
        for pairs in self.wiring:
            node = None
            for k, src in pairs:
                op = self.ops[k]
                h = op(states[src])
                if dropping and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                node = h if node is None else node + h
            states.append(node)
        return cat_channels([states[i] for i in self.concat])


class AuxiliaryHead(nn.Module):
    """The auxiliary classifier of the original code, on 8x8 (CIFAR) or 7x7 (ImageNet, 224 px) feature maps.

    CIFAR: ReLU, 5x5 average pool at stride 3, 1x1 conv to 128, BN, ReLU, 2x2 conv to 768, BN, ReLU, linear.
    ImageNet: the same with stride 2 and without the BN after the 2x2 conv (left out in the paper's experiments).
    """

    def __init__(self, C: int, num_classes: int, *, imagenet: bool = False):
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=2 if imagenet else 3, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
        ]
        if not imagenet:
            layers.append(nn.BatchNorm2d(768))
        layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(768, num_classes)
        self.stride = 2 if imagenet else 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the 5x5 pool and the 2x2 conv must leave 1x1: pooled size (H - 5) // stride + 1 == 2
        if any(s < 5 or (s - 5) // self.stride + 1 != 2 for s in x.shape[-2:]):
            raise ConfigError(
                f"the auxiliary head needs {5 + self.stride}x{5 + self.stride} to {4 + 2 * self.stride}x"
                f"{4 + 2 * self.stride} feature maps after the last reduction (32 px CIFAR, 224 px ImageNet "
                f"images), got {x.shape[-2]}x{x.shape[-1]}: disable auxiliary for this image size"
            )
        return self.classifier(self.features(x).flatten(1))


def default_layers(genotype: Genotype, *, imagenet: bool = False) -> int:
    """The depth a genotype is trained at unless told: a per-cell genotype's own cells (as D-DARTS trains its
    files), else the paper's 20 cells (14 on ImageNet)."""
    if genotype.cells is not None:
        return len(genotype.cells)
    return 14 if imagenet else 20


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def per_cell_layout(cells: Sequence[CellDesign], layers: int) -> tuple[list[CellDesign], set[int]]:
    """The design at each of ``layers`` positions, and the reduction positions, from a per-cell genotype's cells.

    At the genotype's own depth (``layers == len(cells)``) every cell keeps its own design and position. At
    another depth (D-DARTS: an L-layer network from G searched cells):

    - The searched cells are split into stages by their reduction cells: stage 0 is the normal cells before
      the first reduction cell, stage 1 those between the first and the second, stage 2 those after the second.
    - The new network has its reduction cells at positions ``layers // 3`` and ``2 * layers // 3``, as a DARTS
      genotype does (one position, 0, when ``layers`` is 1); they take the searched reduction cells in order.
      With a single searched reduction cell, both use it.
    - The normal positions of each new stage take that searched stage's normal cells in order, repeated
      cyclically (a, b, a, b, ...). A searched stage without normal cells borrows those of the nearest stage
      that has some, the previous stage first.

    The searched reduction positions are not kept at another depth (the D-DARTS code keeps them, which leaves
    most of a deep network at the smallest resolution). Raises ConfigError for a genotype without reduction
    cells or with more than two, or with no normal cell when the new network has a normal position.
    """
    _check_int("layers", layers, 1)
    cells = list(cells)
    if layers == len(cells):
        return cells, {i for i, c in enumerate(cells) if c.reduction}
    where = f"a per-cell genotype of {len(cells)} cells rebuilt with layers={layers}"
    searched_reductions = [c for c in cells if c.reduction]
    if not searched_reductions:
        raise ConfigError(
            f"{where}: a per-cell genotype needs reduction cells to be rebuilt at another depth, and this one has "
            f"none; use layers={len(cells)}"
        )
    if len(searched_reductions) > 2:
        raise ConfigError(
            f"{where}: the genotype has {len(searched_reductions)} reduction cells and a rebuilt network has two; "
            f"use layers={len(cells)}"
        )
    stages: list[list[CellDesign]] = [[], [], []]
    stage = 0
    for c in cells:
        if c.reduction:
            stage += 1
        else:
            stages[stage].append(c)
    reductions = sorted({layers // 3, 2 * layers // 3})
    designs: list[CellDesign] = []
    stage = 0
    used = [0, 0, 0]  # normal positions filled so far in each new stage
    for i in range(layers):
        if i in reductions:
            designs.append(searched_reductions[min(stage, len(searched_reductions) - 1)])
            stage += 1
            continue
        # nearest searched stage with normal cells: this one, then previous before next at each distance
        donors = [s for d in range(3) for s in (stage - d, stage + d) if 0 <= s < 3 and stages[s]]
        if not donors:
            raise ConfigError(f"{where}: the genotype has no normal cell to fill normal position {i}")
        source = stages[donors[0]]
        designs.append(source[used[stage] % len(source)])
        used[stage] += 1
    return designs, set(reductions)


class EvalNetwork(nn.Module):
    """The network trained from a genotype: ``EvalNetwork(genotype, C, num_classes, layers, auxiliary)``.

    ``forward`` returns ``(logits, logits_aux)``; ``logits_aux`` is None unless training with ``auxiliary``.
    ``drop_path_prob`` is an attribute, set per epoch by the training loop. ``net_args()`` returns plain types
    that :meth:`from_args` turns back into the same network (for checkpoints).
    """

    def __init__(self, genotype: Genotype | str | Mapping[str, Any], C: int, num_classes: int, layers: int,
                 auxiliary: bool = False, *, stem: str = "cifar", in_channels: int = 3, drop_path_prob: float = 0.0,
                 stem_multiplier: int = 3, op_options: Mapping[str, Any] | None = None):
        super().__init__()
        if isinstance(genotype, Mapping):
            genotype = Genotype.from_dict(dict(genotype))
        elif isinstance(genotype, str):
            genotype = load_genotype(genotype)
        if not isinstance(genotype, Genotype):
            raise ConfigError(f"genotype must be a Genotype, a genotype name or path, got {type(genotype).__name__}")
        _check_int("C (init channels)", C, 1)
        _check_int("num_classes", num_classes, 1)
        _check_int("layers", layers, 1)
        _check_int("in_channels", in_channels, 1)
        _check_int("stem_multiplier", stem_multiplier, 1)
        if stem not in STEMS:
            raise ConfigError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
        if stem == "imagenet" and C % 2:
            raise ConfigError(f"the ImageNet stem needs an even C (it starts with C/2 channels), got C={C}")
        unknown = [op for op in genotype.ops() if op not in OPS]
        if unknown:
            raise GenotypeError(
                f"the genotype uses unregistered ops {unknown}; known ops: {', '.join(sorted(OPS.names()))} "
                "(load the module registering them: --ops-module MODULE, or import it before building the network)"
            )

        designs, reductions = self._layout(genotype, layers)
        self.genotype = genotype
        self.C = C
        self.num_classes = num_classes
        self.layers = layers
        self.auxiliary = bool(auxiliary)
        self.stem_kind = stem
        self.in_channels = in_channels
        self.stem_multiplier = stem_multiplier
        self.drop_path_prob = float(drop_path_prob)

        if stem == "cifar":
            C_stem = stem_multiplier * C
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False),
                nn.BatchNorm2d(C_stem),
            )
            C_prev_prev, C_prev = C_stem, C_stem
            reduction_prev = False
        else:
            # three stride-2 convolutions: 224 px -> 56 px (stem0, feeds cell 0's first input) -> 28 px (stem1)
            self.stem0 = nn.Sequential(
                nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C // 2),
                nn.ReLU(inplace=True),
                nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False),
                nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C),
            )
            C_prev_prev, C_prev = C, C
            reduction_prev = True

        self.auxiliary_index = max(reductions) if reductions else -1
        if self.auxiliary and self.auxiliary_index < 0:
            raise ConfigError("the auxiliary head sits after the last reduction cell, and this genotype has none; "
                              "disable auxiliary")
        self.cells = nn.ModuleList()
        C_curr = C
        C_aux = 0
        for i, design in enumerate(designs):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
            cell = EvalCell(design, C_prev_prev, C_prev, C_curr, reduction, reduction_prev, op_options)
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == self.auxiliary_index:
                C_aux = C_prev
        if self.auxiliary:
            self.auxiliary_head = AuxiliaryHead(C_aux, num_classes, imagenet=stem == "imagenet")
        self.classifier = nn.Linear(C_prev, num_classes)

    @staticmethod
    def _layout(genotype: Genotype, layers: int) -> tuple[list[CellDesign], set[int]]:
        """The design of each cell position and the set of reduction positions (per-cell: per_cell_layout)."""
        if genotype.cells is not None:
            return per_cell_layout(genotype.cells, layers)
        assert genotype.normal is not None and genotype.reduce is not None
        reductions = {layers // 3, 2 * layers // 3}
        return [genotype.reduce if i in reductions else genotype.normal for i in range(layers)], reductions

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits_aux = None
        if self.stem_kind == "cifar":
            s0 = s1 = self.stem(x)
        else:
            s0 = self.stem0(x)
            s1 = self.stem1(s0)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.auxiliary_index and self.auxiliary and self.training:
                logits_aux = self.auxiliary_head(s1)
        return self.classifier(global_avg_pool(s1)), logits_aux

    def net_args(self) -> dict[str, Any]:
        """The constructor arguments as plain types (the genotype as its JSON dict), for checkpoints."""
        return {
            "genotype": self.genotype.to_dict(),
            "C": self.C,
            "num_classes": self.num_classes,
            "layers": self.layers,
            "auxiliary": self.auxiliary,
            "stem": self.stem_kind,
            "in_channels": self.in_channels,
            "stem_multiplier": self.stem_multiplier,
        }

    @classmethod
    def from_args(cls, args: Mapping[str, Any], op_options: Mapping[str, Any] | None = None) -> EvalNetwork:
        """Rebuild the network that :meth:`net_args` describes (weights not included), its ops built with
        ``op_options`` (which are not plain types, so not part of the arguments)."""
        if not isinstance(args, Mapping):
            raise ConfigError(f"network arguments must be a dict, got {type(args).__name__}")
        required = ("genotype", "C", "num_classes", "layers")
        missing = [k for k in required if k not in args]
        if missing:
            raise ConfigError(f"network arguments lack {missing}; expected the dict EvalNetwork.net_args() writes")
        known = set(required) | {"auxiliary", "stem", "in_channels", "stem_multiplier", "drop_path_prob"}
        extra = sorted(set(args) - known)
        if extra:
            raise ConfigError(f"unknown network arguments {extra}; known: {sorted(known)}")
        kwargs = copy.deepcopy(dict(args))
        positional = [kwargs.pop(k) for k in required]
        return cls(*positional, **kwargs, op_options=op_options)

    def extra_repr(self) -> str:
        return (f"C={self.C}, num_classes={self.num_classes}, layers={self.layers}, auxiliary={self.auxiliary}, "
                f"stem={self.stem_kind!r}, drop_path_prob={self.drop_path_prob}")
