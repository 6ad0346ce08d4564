"""The weight-sharing supernet of DARTS: every edge of a cell mixes all candidate ops with softmax(alpha) weights.

Layout follows the paper's search network: a 3x3 stem with ``stem_multiplier * C`` channels, ``layers`` cells with
reductions (stride 2, channels doubled) at 1/3 and 2/3 of the depth, global average pooling and a linear
classifier. BN layers inside cells have no affine parameters during search. Alphas are shared per cell type
(one matrix for normal cells, one for reduction cells), each ``[edges, ops]`` and initialised to ``1e-3 * randn``.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError
from .genotype import Genotype, derive_genotype, softmax
from .ops import FactorizedReduce, ReLUConvBN, build_op
from .space import SearchSpace


class MixedOp(nn.Module):
    """One edge: ``sum_k w_k * op_k(x)`` over the candidate ops (Eq. 2 of the paper).

    The `none` op is not computed: its output is zero, so it adds nothing to the sum, and its alpha still gets
    its gradient through the softmax normalisation.
    """

    def __init__(self, primitives: Sequence[str], C: int, stride: int):
        super().__init__()
        self.indices: list[int] = []
        self.ops = nn.ModuleList()
        for k, name in enumerate(primitives):
            if name == "none":
                continue
            op = build_op(name, C, stride, False)
            if "pool" in name:  # pooling has no BN of its own; the search network adds a non-affine one
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self.indices.append(k)
            self.ops.append(op)
        self.stride = stride

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = None
        for k, op in zip(self.indices, self.ops):
            term = weights[k] * op(x)
            out = term if out is None else out + term
        return out


class SearchCell(nn.Module):
    """A cell of the supernet: two preprocessed inputs, ``nodes`` intermediate nodes, each the sum of mixed ops
    over all earlier states; the output concatenates the last ``multiplier`` nodes."""

    def __init__(self, space: SearchSpace, C_prev_prev: int, C_prev: int, C: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.nodes = space.nodes
        self.multiplier = space.multiplier
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList()
        for i in range(self.nodes):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(MixedOp(space.primitives, C, stride))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.nodes):
            node = None
            for j, h in enumerate(states):
                term = self.edges[offset + j](h, weights[offset + j])
                node = term if node is None else node + term
            offset += len(states)
            states.append(node)
        return torch.cat(states[-self.multiplier:], dim=1)


def reduction_positions(layers: int) -> tuple[int, ...]:
    """Cells that reduce: at 1/3 and 2/3 of the depth, as in the paper (one position when they coincide)."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


class SearchNetwork(nn.Module):
    """The DARTS supernet. ``weights()`` and ``alphas()`` are separate parameter sets with separate optimizers."""

    def __init__(self, space: SearchSpace, C: int = 16, num_classes: int = 10, layers: int = 8, *,
                 in_channels: int = 3, stem_multiplier: int = 3):
        super().__init__()
        for name, value, low in (("init_channels", C, 1), ("num_classes", num_classes, 1), ("layers", layers, 1),
                                 ("in_channels", in_channels, 1), ("stem_multiplier", stem_multiplier, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")
        self.space = space
        self.C, self.num_classes, self.layers = C, num_classes, layers
        self.in_channels, self.stem_multiplier = in_channels, stem_multiplier

        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.reductions = reduction_positions(layers)
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in self.reductions
            if reduction:
                C_curr *= 2
            self.cells.append(SearchCell(space, C_prev_prev, C_prev, C_curr, reduction, reduction_prev))
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, space.multiplier * C_curr
        self.classifier = nn.Linear(C_prev, num_classes)

        shape = (space.num_edges, space.num_ops)
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(shape))

    # -- parameter sets --------------------------------------------------------------------------------------
    def alpha_names(self) -> list[str]:
        return ["alpha_normal", "alpha_reduce"]

    def alphas(self) -> list[nn.Parameter]:
        """The architecture parameters, in the order of ``alpha_names()``."""
        return [self.alpha_normal, self.alpha_reduce]

    def named_weights(self) -> Iterator[tuple[str, nn.Parameter]]:
        alpha_names = set(self.alpha_names())
        for name, p in self.named_parameters():
            if name not in alpha_names:
                yield name, p

    def weights(self) -> list[nn.Parameter]:
        """The network weights (everything but the alphas)."""
        return [p for _, p in self.named_weights()]

    def num_weights(self) -> int:
        return sum(p.numel() for p in self.weights())

    def num_alphas(self) -> int:
        return sum(a.numel() for a in self.alphas())

    # -- forward ---------------------------------------------------------------------------------------------
    def gates(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The softmax weights of the normal and reduction cells' edges (``[edges, ops]`` each)."""
        return F.softmax(self.alpha_normal, dim=-1), F.softmax(self.alpha_reduce, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_normal, w_reduce = self.gates()
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        out = F.adaptive_avg_pool2d(s1, 1).flatten(1)
        return self.classifier(out)

    # -- derivation ------------------------------------------------------------------------------------------
    def genotype(self) -> Genotype:
        """The discrete architecture: per node the two strongest non-`none` edges, each with its best op."""
        with torch.no_grad():
            raw = [a.detach().float().cpu().numpy() for a in self.alphas()]
        return derive_genotype(softmax(raw[0]), softmax(raw[1]), self.space.primitives, self.space.nodes,
                               self.space.multiplier)

    def arch_state(self) -> dict[str, torch.Tensor]:
        """The raw alphas by name, detached copies on the CPU (what the alpha history stores)."""
        return {n: a.detach().cpu().clone() for n, a in zip(self.alpha_names(), self.alphas())}
