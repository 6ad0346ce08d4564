"""The weight-sharing supernet of DARTS: every edge of a cell mixes all candidate ops with softmax(alpha) weights.

Layout follows the paper's search network: a 3x3 stem with ``stem_multiplier * C`` channels, ``layers`` cells with
reductions (stride 2, channels doubled) at 1/3 and 2/3 of the depth, global average pooling and a linear
classifier. BN layers inside cells have no affine parameters during search. Alphas are shared per cell type
(one matrix for normal cells, one for reduction cells), each ``[edges, ops]`` and initialised to ``1e-3 * randn``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

from .baselines import layout_alphas
from .errors import ConfigError
from .genotype import GATES, Genotype
from .network import drop_path
from .ops import FactorizedReduce, ReLUConvBN, build_op
from .ops.layout import cat_channels, global_avg_pool
from .ops.lean import in_plain_autograd, lean_allowed, lean_plan, lean_run, plain_autograd
from .space import SearchSpace

RECOMPUTE_MODES = ("off", "ops", "cells", "edges", "all")
ALPHA_MODES = ("shared", "per-cell")


def _strip_leading_relu(module: nn.Module) -> bool:
    """If ``module`` is a Sequential whose first step (looking into nested Sequentials) is a ReLU, replace that
    ReLU by an identity and return True: the caller then feeds it ``relu(x)`` computed once for all such ops."""
    if isinstance(module, nn.Sequential) and len(module) > 0:
        if isinstance(module[0], nn.ReLU):
            module[0] = nn.Identity()
            return True
        return _strip_leading_relu(module[0])
    return False


def recomputed(module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """``module(*inputs)`` under activation checkpointing: nothing inside is kept for the backward pass, which
    runs the forward again. The recomputation uses the parameters the forward saw (so it is right inside
    ``torch.func.functional_call``, as in the Architect's virtual step) and copies of the buffers (so BatchNorm
    running statistics are updated once, not twice)."""
    params = dict(module.named_parameters())
    calls = {"n": 0}
    plain = in_plain_autograd()  # the recomputation may run on another thread (autograd's device threads)

    def run(*args):
        calls["n"] += 1
        if calls["n"] == 1:
            return module(*args)
        buffers = {n: b.clone() for n, b in module.named_buffers()}
        with plain_autograd() if plain else contextlib.nullcontext():
            return functional_call(module, {**params, **buffers}, args)

    return checkpoint(run, *inputs, use_reentrant=False, preserve_rng_state=False)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` groups of channels (ShuffleNet), keeping the memory format of ``x``."""
    b, c, h, w = x.shape
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.contiguous_format
    out = x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)
    return out.contiguous(memory_format=fmt)


def _flat(t: torch.Tensor) -> torch.Tensor | None:
    """A flat view of ``t`` in its memory order (contiguous or channels-last), or None."""
    if t.is_contiguous():
        return t.view(-1)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).reshape(-1)  # a view: channels-last is NHWC in memory
    return None


def _dot(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(a * b).sum()`` without the product tensor when both share a memory order (as a ``dtype`` scalar)."""
    if a.dtype == b.dtype == dtype and a.device.type == "cpu":
        fa, fb = _flat(a), _flat(b)
        if fa is not None and fb is not None and a.stride() == b.stride():
            return torch.dot(fa, fb)
    return (a * b).sum(dtype=dtype)


class _WeightedSum(torch.autograd.Function):
    """``sum_k weights[indices[k]] * outs[k]``, in place into one buffer (one pass per term instead of a product
    and a sum), with the gradient of each weight a dot product. Differentiable twice (the exact hypergradient)."""

    @staticmethod
    def forward(ctx, weights: torch.Tensor, indices: tuple[int, ...], *outs: torch.Tensor) -> torch.Tensor:
        ctx.indices = indices
        ctx.save_for_backward(weights, *outs)
        out = torch.mul(outs[0], weights[indices[0]])
        for k, o in zip(indices[1:], outs[1:]):
            out.addcmul_(o, weights[k])
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weights, *outs = ctx.saved_tensors
        grad_w = None
        if ctx.needs_input_grad[0]:
            dots = torch.stack([_dot(grad, o, weights.dtype) for o in outs])
            grad_w = torch.zeros_like(weights).index_put((torch.tensor(ctx.indices, device=weights.device),),
                                                         dots)
        grad_outs = [grad * weights[k] if ctx.needs_input_grad[2 + i] else None
                     for i, k in enumerate(ctx.indices)]
        return (grad_w, None, *grad_outs)


def weighted_sum(weights: torch.Tensor, indices: Sequence[int], outs: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum_k weights[indices[k]] * outs[k]`` (the mixed op's Eq. 2), fused; plain tensor maths when a term
    broadcasts or the terms differ in dtype."""
    shape, dtype = outs[0].shape, outs[0].dtype
    if all(o.shape == shape and o.dtype == dtype for o in outs):
        return _WeightedSum.apply(weights, tuple(indices), *outs)
    out = None
    for k, o in zip(indices, outs):
        term = weights[k] * o
        out = term if out is None else out + term
    return out


class MixedOp(nn.Module):
    """One edge: ``sum_k w_k * op_k(x)`` over the candidate ops (Eq. 2 of the paper).

    The `none` op is not computed: its output is zero, so it adds nothing to the sum, and its alpha still gets
    its gradient through the softmax normalisation. Ops that begin with a ReLU (the separable and dilated
    convolutions) share one ``relu(x)``: the same maths with less work and memory.
    """

    def __init__(self, primitives: Sequence[str], C: int, stride: int, partial: int = 1,
                 options: Mapping[str, Any] | None = None):
        super().__init__()
        if partial < 1 or C % partial:
            raise ConfigError(f"partial channels K={partial} must divide the edge's {C} channels")
        self.partial = partial
        C = C // partial
        self.indices: list[int] = []
        self.relu_fed: list[bool] = []
        self.ops = nn.ModuleList()
        for k, name in enumerate(primitives):
            if name == "none":
                continue
            op = build_op(name, C, stride, False, options)
            if "pool" in name:  # pooling has no BN of its own; the search network adds a non-affine one
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self.indices.append(k)
            self.relu_fed.append(_strip_leading_relu(op))
            self.ops.append(op)
        self.stride = stride
        self.lean = False  # --recompute ops: the lean autograd functions of ops/lean.py

    def forward(self, x: torch.Tensor, weights: torch.Tensor, relu_x: torch.Tensor | None = None) -> torch.Tensor:
        """``relu_x``: ``relu(x)`` when the caller already has it (a cell shares it between a state's edges)."""
        if self.partial == 1:
            return self._mix(x, weights, relu_x)
        # PC-DARTS: 1/K of the channels through the ops, the rest bypass (pooled when reducing), then a
        # channel shuffle so that other channels take part at the next edge
        C = x.shape[1] // self.partial
        mixed = self._mix(x[:, :C], weights)
        rest = x[:, C:]
        if self.stride == 2:
            rest = F.max_pool2d(rest, 2, 2, ceil_mode=True)  # ceil: odd sizes match the ops
        return channel_shuffle(torch.cat([mixed, rest], dim=1), self.partial)

    def _mix(self, x: torch.Tensor, weights: torch.Tensor, relu_x: torch.Tensor | None = None) -> torch.Tensor:
        if relu_x is None and any(self.relu_fed):
            relu_x = F.relu(x)
        lean = self.lean and lean_allowed(x)
        indices, outs, lean_ops = [], [], []
        for k, op, fed in zip(self.indices, self.ops, self.relu_fed):
            inp = relu_x if fed else x
            plan = lean_plan(op) if lean else None
            if plan is not None:
                lean_ops.append((k, plan, inp))
            else:
                indices.append(k)
                outs.append(op(inp))
        acc = weighted_sum(weights, indices, outs) if outs else None
        for k, plan, inp in lean_ops:  # each adds its gated output into the sum in place
            acc = lean_run(plan, inp, (weights, k, acc))
        return acc


class SearchCell(nn.Module):
    """A cell of the supernet: two preprocessed inputs, ``nodes`` intermediate nodes, each the sum of mixed ops
    over all earlier states; the output concatenates the last ``multiplier`` nodes."""

    def __init__(self, space: SearchSpace, C_prev_prev: int, C_prev: int, C: int, reduction: bool,
                 reduction_prev: bool, partial: int = 1):
        super().__init__()
        self.reduction = reduction
        self.C = C
        self.nodes = space.nodes
        self.multiplier = space.multiplier
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self.recompute_edges = False
        self.aux_skips: nn.ModuleList | None = None  # DARTS-: add_auxiliary_skips
        self.aux_weight = 0.0  # DARTS-'s beta, set each epoch
        self.drop_prob = 0.0  # a regularised search's drop path on the edges (weight step only)
        self.edges = nn.ModuleList()
        for i in range(self.nodes):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(MixedOp(space.primitives, C, stride, partial, space.op_options))

    def add_auxiliary_skips(self) -> None:
        """DARTS- (Chu et al., ICLR 2021): an extra skip connection on every edge, weighted by ``aux_weight``
        (an identity, or a factorized reduce on a reduction cell's input edges)."""
        self.aux_skips = nn.ModuleList(FactorizedReduce(self.C, self.C, affine=False) if edge.stride == 2
                                       else nn.Identity() for edge in self.edges)

    def _preprocess(self, module: nn.Module, s: torch.Tensor) -> torch.Tensor:
        """``module(s)``; in lean mode through the lean functions where they cover it (a 1x1 ReLU-conv-BN keeps
        only ``s``, which the cell after shares, instead of ``relu(s)`` and the convolution's output)."""
        if self.edges[0].lean and lean_allowed(s):
            plan = lean_plan(module)
            if plan is not None:
                return lean_run(plan, s)
        return module(s)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        """``weights``: softmax gates ``[edges, ops]``; ``edge_weights`` (PC-DARTS): one factor per edge."""
        states = [self._preprocess(self.preprocess0, s0), self._preprocess(self.preprocess1, s1)]
        # lean mode: one relu(h) per state, shared by all its edges (plain autograd would keep one per edge)
        share_relu = self.edges[0].lean and self.edges[0].partial == 1 and any(self.edges[0].relu_fed)
        relus: list[torch.Tensor] = []
        # each edge's term is then its own fresh sum, which no backward keeps: a node's sum is added into it
        fresh = share_relu and not self.recompute_edges and edge_weights is None and not (
            self.drop_prob > 0 and self.training) and not (self.aux_skips is not None and self.aux_weight > 0)
        offset = 0
        for _ in range(self.nodes):
            node = None
            for j, h in enumerate(states):
                edge = self.edges[offset + j]
                if self.recompute_edges and torch.is_grad_enabled():
                    term = recomputed(edge, h, weights[offset + j])
                elif share_relu:
                    if j == len(relus):
                        relus.append(F.relu(h))
                    term = edge(h, weights[offset + j], relus[j])
                else:
                    term = edge(h, weights[offset + j])
                if edge_weights is not None:
                    term = edge_weights[offset + j] * term
                if self.drop_prob > 0 and self.training:
                    term = drop_path(term, self.drop_prob)
                if self.aux_skips is not None and self.aux_weight > 0:
                    term = term + self.aux_weight * self.aux_skips[offset + j](h)
                if node is None:
                    node = term
                elif fresh:
                    node = node.add_(term)
                else:
                    node = node + term
            offset += len(states)
            states.append(node)
        return cat_channels(states[-self.multiplier:])


def reduction_positions(layers: int) -> tuple[int, ...]:
    """Cells that reduce: at 1/3 and 2/3 of the depth, as in the paper (one position when they coincide)."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


class SearchNetwork(nn.Module):
    """The DARTS supernet. ``weights()`` and ``alphas()`` are separate parameter sets with separate optimizers.

    Built with no options it runs the fast path that ``dartsnas search`` runs: the lean autograd of the DARTS ops
    (``recompute="ops"``), channels-last activations (inputs are converted in ``forward``) with layout-keeping
    gradients, and on the CPU the C kernels where they apply (built on first use; ``DARTSNAS_NATIVE=0`` or no C
    compiler: PyTorch's kernels). The lean functions are differentiable once: a double backward runs the forward
    inside ``dartsnas.ops.lean.plain_autograd()``, as the Architect's exact mode does by itself, and anything else
    is a clear error, never a wrong second derivative.
    """

    def __init__(self, space: SearchSpace, C: int = 16, num_classes: int = 10, layers: int = 8, *,
                 in_channels: int = 3, stem_multiplier: int = 3, recompute: str = "ops", partial_channels: int = 1,
                 alphas: str = "shared", gates: str = "softmax", rule: str = "top-k",
                 threshold: float | None = None, channels_last: bool = True, max_skip: int | None = None,
                 auxiliary_skip: bool = False):
        super().__init__()
        if alphas not in ALPHA_MODES:
            raise ConfigError(f"alphas must be one of {', '.join(ALPHA_MODES)}, got {alphas!r}")
        if gates not in GATES:
            raise ConfigError(f"gates must be one of {', '.join(GATES)}, got {gates!r}")
        self.alpha_mode, self.gate_mode = alphas, gates
        self.rule, self.threshold, self.max_skip = rule, threshold, max_skip
        self._gate_noise: list[torch.Tensor] | None = None  # inside perturbed_gates
        for name, value, low in (("init_channels", C, 1), ("num_classes", num_classes, 1), ("layers", layers, 1),
                                 ("in_channels", in_channels, 1), ("stem_multiplier", stem_multiplier, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")
        self.space = space
        self.C, self.num_classes, self.layers = C, num_classes, layers
        self.in_channels, self.stem_multiplier = in_channels, stem_multiplier
        if not isinstance(partial_channels, int) or partial_channels < 1 or C % partial_channels:
            raise ConfigError(f"partial_channels must be a whole number >= 1 dividing C={C}, got {partial_channels!r}")
        self.partial_channels = partial_channels

        layout = space.layout  # a whole handcrafted network (D-DARTS' DARTOpti): its cells and reductions
        if layout is not None and (layers != len(layout.seq) or alphas != "per-cell"):
            raise ConfigError(f"a {layout.name} layout has {len(layout.seq)} cells with per-cell alphas, got "
                              f"layers={layers}, alphas={alphas!r}")
        self.seq = tuple(layout.seq) if layout is not None else None
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.reductions = tuple(layout.reductions) if layout is not None else reduction_positions(layers)
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in self.reductions
            if reduction:
                C_curr *= 2
            self.cells.append(SearchCell(space, C_prev_prev, C_prev, C_curr, reduction, reduction_prev,
                                         partial_channels))
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, space.multiplier * C_curr
        self.classifier = nn.Linear(C_prev, num_classes)
        if auxiliary_skip:
            for cell in self.cells:
                cell.add_auxiliary_skips()

        self.set_recompute(recompute)
        shape = (space.num_edges, space.num_ops)
        # shared: one alpha tensor per cell type (DARTS); per-cell: one per cell position (D-DARTS), or with a
        # layout one per design, shared by the cells of that design (DARTOpti), starting on the design
        groups = len(layout.genes) if layout is not None else layers
        self._alpha_names = (["alpha_normal", "alpha_reduce"] if alphas == "shared"
                             else [f"alpha_cell_{i:02d}" for i in range(groups)])
        for i, name in enumerate(self._alpha_names):
            if layout is not None:
                init = torch.from_numpy(layout_alphas(layout.genes[i], space.primitives, space.nodes))
            else:
                init = 1e-3 * torch.randn(shape)
            self.register_parameter(name, nn.Parameter(init))
        if partial_channels > 1:  # PC-DARTS edge normalisation: one beta per edge, softmax over a node's edges
            for name in self._alpha_names:
                self.register_parameter(name.replace("alpha_", "beta_"),
                                        nn.Parameter(1e-3 * torch.randn(space.num_edges)))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def init_from_genotype(self, genotype: Genotype, strength: float = 4.0) -> SearchNetwork:
        """Start the alphas on ``genotype``'s cells (a search around a handcrafted network): on each edge its op,
        or ``none`` where it has no edge, ``strength`` above the other ops (plus the usual tiny noise)."""
        from .baselines import baseline_alphas

        with torch.no_grad():
            for i, name in enumerate(self._alpha_names):
                if self.alpha_mode == "per-cell":
                    reduction = self.cells[i].reduction
                else:
                    reduction = name == "alpha_reduce"
                design = (genotype.cells[i] if genotype.cells is not None
                          else genotype.reduce if reduction else genotype.normal)
                init = torch.from_numpy(baseline_alphas(design, self.space.primitives, strength))
                if self.gate_mode == "sigmoid":  # independent gates: the chosen ops near 1, the others near 0
                    init = 2 * init - strength
                getattr(self, name).add_(init.to(getattr(self, name)))
        return self

    def set_recompute(self, mode: str) -> SearchNetwork:
        """Memory saving: ``off`` keeps every activation (plain autograd); ``ops`` runs the DARTS ops through the
        lean autograd functions of ``ops/lean.py`` (each op keeps its output and the input of each separable block,
        and recomputes depthwise convolutions, ReLUs and max-pool indices). Activation checkpointing on top of
        ``ops``: ``cells`` keeps only each cell's inputs and recomputes one cell at a time in the backward pass;
        ``edges`` keeps each mixed op's input and output and recomputes its inside; ``all`` does both (least
        memory: the ops run three times). The gradients are the same."""
        if mode not in RECOMPUTE_MODES:
            raise ConfigError(f"recompute must be one of {', '.join(RECOMPUTE_MODES)}, got {mode!r}")
        self.recompute = mode
        for cell in self.cells:
            cell.recompute_edges = mode in ("edges", "all")
            for edge in cell.edges:
                edge.lean = mode != "off"  # checkpointed modes recompute through the lean functions too
        return self

    # -- parameter sets --------------------------------------------------------------------------------------
    def alpha_names(self) -> list[str]:
        """``alpha_normal``, ``alpha_reduce`` (shared) or ``alpha_cell_00``, ... (per cell); PC-DARTS adds the
        matching ``beta_*`` edge parameters after them."""
        names = list(self._alpha_names)
        return names + [n.replace("alpha_", "beta_") for n in names] if self.partial_channels > 1 else names

    def alphas(self) -> list[nn.Parameter]:
        """The architecture parameters, in the order of ``alpha_names()`` (PC-DARTS adds the edge betas)."""
        return [getattr(self, n) for n in self.alpha_names()]

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
    def gate(self, alpha: torch.Tensor) -> torch.Tensor:
        """Op weights of one alpha tensor: softmax over each edge's ops (DARTS) or an independent sigmoid per
        op (FairDARTS, D-DARTS)."""
        return F.softmax(alpha, dim=-1) if self.gate_mode == "softmax" else torch.sigmoid(alpha)

    def gates(self) -> list[torch.Tensor]:
        """The op weights ``[edges, ops]`` of each alpha tensor, in the order of the alpha names (shared: the
        normal and the reduction cells); inside ``perturbed_gates``, with its noise."""
        gates = [self.gate(getattr(self, n)) for n in self._alpha_names]
        if self._gate_noise is not None:
            gates = [g + noise.to(g.dtype) for g, noise in zip(gates, self._gate_noise)]
        return gates

    def set_auxiliary_skip_weight(self, beta: float) -> None:
        """DARTS-'s beta: the weight of the auxiliary skip on every edge (built with ``auxiliary_skip=True``)."""
        for cell in self.cells:
            cell.aux_weight = float(beta)

    @contextlib.contextmanager
    def dropped_paths(self, prob: float) -> Iterator[None]:
        """Within the block, in train mode, each edge's output is dropped per sample with probability ``prob``
        (and the kept ones scaled up): the scheduled drop path Zela et al. add to the search."""
        for cell in self.cells:
            cell.drop_prob = float(prob)
        try:
            yield
        finally:
            for cell in self.cells:
                cell.drop_prob = 0.0

    @contextlib.contextmanager
    def perturbed_gates(self, epsilon: float) -> Iterator[None]:
        """SDARTS-RS (Chen & Hsieh, ICML 2020): within the block the op weights carry uniform noise in
        ``[-epsilon, epsilon]``, drawn once on entry from torch's generator (the weight step's smoothing of the
        loss landscape in the alphas). ``epsilon <= 0``: no noise."""
        if epsilon <= 0:
            yield
            return
        self._gate_noise = [torch.empty_like(getattr(self, n)).uniform_(-epsilon, epsilon) for n in self._alpha_names]
        try:
            yield
        finally:
            self._gate_noise = None

    def edge_gates(self) -> list[torch.Tensor | None]:
        """PC-DARTS: per edge, the softmax of the betas over the edges entering the same node (else Nones)."""
        if self.partial_channels == 1:
            return [None] * len(self._alpha_names)
        out = []
        for name in self._alpha_names:
            beta = getattr(self, name.replace("alpha_", "beta_"))
            parts, start = [], 0
            for i in range(self.space.nodes):
                parts.append(F.softmax(beta[start:start + 2 + i], dim=-1))
                start += 2 + i
            out.append(torch.cat(parts))
        return out

    def _cell_gate_index(self, i: int, cell: SearchCell) -> int:
        if self.seq is not None:
            return self.seq[i]
        if self.alpha_mode == "per-cell":
            return i
        return 1 if cell.reduction else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ws, es = self.gates(), self.edge_gates()
        if x.dim() == 4:  # the network's memory format, whatever the caller's (a no-op when they agree)
            x = x.contiguous(memory_format=self.memory_format)
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            k = self._cell_gate_index(i, cell)
            w, e = ws[k], es[k]
            args = (s0, s1, w) if e is None else (s0, s1, w, e)
            if self.recompute in ("cells", "all") and torch.is_grad_enabled():
                s0, s1 = s1, recomputed(cell, *args)
            else:
                s0, s1 = s1, cell(*args)
        return self.classifier(global_avg_pool(s1))

    # -- derivation ------------------------------------------------------------------------------------------
    def genotype(self, rule: str | None = None, threshold: float | None = None, *,
                 raw: dict[str, Any] | None = None, per_design: bool = False) -> Genotype:
        """The discrete architecture by the derivation ``rule`` (default: the network's, ``top-k``: per node the
        two strongest non-`none` edges, each with its best op), of the current alphas or of ``raw`` ones
        (``{name: array}``, as ``arch_state()`` gives them). With a layout, ``per_design`` gives one cell per
        design instead of one per position."""
        from .genotype import derive_from_gates

        if raw is None:
            raw = {n: a.detach().float().cpu().numpy() for n, a in self.arch_state().items()}
        per_design = per_design and self.seq is not None
        return derive_from_gates(raw, self.gate_mode, self.space.primitives, self.space.nodes,
                                 self.space.multiplier, reductions=() if per_design else self.reductions,
                                 seq=None if per_design else self.seq, rule=rule or self.rule,
                                 threshold=threshold if threshold is not None else self.threshold,
                                 max_skip=self.max_skip)

    def arch_state(self) -> dict[str, torch.Tensor]:
        """The raw alphas by name, detached copies on the CPU (what the alpha history stores)."""
        return {n: a.detach().cpu().clone() for n, a in zip(self.alpha_names(), self.alphas())}
