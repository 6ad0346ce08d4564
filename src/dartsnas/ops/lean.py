"""Lean autograd for the DARTS ops in the supernet (``--recompute ops``): the same numbers, a third of the memory.

Plain autograd keeps every intermediate tensor of every candidate op on every edge: a separable convolution
alone keeps six activations (the input of each convolution and of each BN, the ReLU output). Here the ops of
the search network run as small autograd functions that keep only

- the input of each depthwise-separable block (shared: every conv op of an edge starts from one ``relu(x)``)
  and its BN output, which is also what the mixed op's weighted sum keeps for the alpha gradient;
- for the pooling ops, their BN statistics alone (the pooling input is the edge input, kept anyway; the pooling
  and its normalisation run again in the backward pass);
- for a factorized reduce (a reduction cell's skip op, the preprocessing after a reduction) and a cell's 1x1
  ReLU-conv-BN preprocessing, their input (shared: a cell output feeds two cells) and BN output, never the
  ReLU, the pixel subsamplings or the convolutions' outputs.

In the backward pass they recompute what is cheap to recompute: the depthwise convolution (a fraction of the
block's time), a ReLU, pooling and its max indices, pixel subsamplings. BN's backward is taken from its output
(with affine-free BN, ``x_hat`` *is* the output), so the pointwise convolution's output is never kept. Running
statistics are updated exactly as ``nn.BatchNorm2d`` does.

Two more savings ride on these functions. The mixed op's weighted sum is accumulated by them in place
(``gates[k] * out`` added into the edge's sum), and since BN's backward is linear in the output gradient the
gate enters it as part of the affine weight: one kernel gives the op's input gradient already scaled by its
gate and, as BN's "weight gradient", the per-channel dot products whose sum is the gate's gradient (no product
tensor and no separate dot per op).

The functions are differentiable once. The Architect's exact second order (a double backward) runs the
forward under ``plain_autograd()``, which falls back to the modules' own autograd.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as _module

from . import native
from .darts import DilConv, FactorizedReduce, ReLUConvBN, SepConv
from .depthwise import DepthwiseConv2d
from .depthwise import depthwise_backward as _dw_backward
from .depthwise import depthwise_forward as _dw_forward

_state = threading.local()


@contextlib.contextmanager
def plain_autograd() -> Iterator[None]:
    """Within this block the supernet uses the modules' own autograd (differentiable twice)."""
    depth = getattr(_state, "plain", 0)
    _state.plain = depth + 1
    try:
        yield
    finally:
        _state.plain = depth


def _once(backward):
    """A backward that is not itself differentiable: a double backward through it (``create_graph=True``) is
    an error that says what to do, never a silently wrong second derivative."""

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        if torch.is_grad_enabled():
            raise RuntimeError("the lean DARTS ops (--recompute ops) are differentiable once; run the forward "
                               "inside dartsnas.ops.lean.plain_autograd() to differentiate twice")
        return backward(ctx, *grads)

    return wrapper


def in_plain_autograd() -> bool:
    """Whether this thread is inside ``plain_autograd()`` (a recomputation carries it into autograd's threads)."""
    return bool(getattr(_state, "plain", 0))


def lean_allowed(x: torch.Tensor) -> bool:
    """Lean functions apply: gradients recorded, not under ``plain_autograd``, autocast or module hooks."""
    return (torch.is_grad_enabled() and not in_plain_autograd() and not torch.is_autocast_enabled(x.device.type)
            and not _module._global_forward_hooks and not _module._global_forward_pre_hooks)


# -- BatchNorm without affine parameters, from its output ------------------------------------------------------
def _bn_plain(bn: nn.BatchNorm2d) -> bool:
    return (type(bn) is nn.BatchNorm2d and not bn.affine and bn.track_running_stats and bn.training
            and bn.running_mean is not None)


def _bn_args(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Running buffers, momentum and eps exactly as ``nn.BatchNorm2d.forward`` uses them (counter included)."""
    bn.num_batches_tracked.add_(1)
    factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return bn.running_mean, bn.running_var, factor, bn.eps


def _bn_train(z: torch.Tensor, rm, rv, factor: float, eps: float, acc: torch.Tensor | None = None,
              gate: float = 1.0, relu: bool = False, keep_output: bool = True
              ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, bool]:
    """(output, mean, invstd, whether ``acc += gate * output`` was done) of an affine-free training BN (with
    ``relu``, the output is ``relu(BN(z))``): the C kernel (ops/native.py: statistics, normalisation, the ReLU or
    the gated sum in two passes) where it applies. Without ``keep_output`` a kernel that did the sum writes no
    output (None)."""
    F._verify_batch_size(z.size())  # one value per channel: the error nn.BatchNorm2d gives
    if acc is not None and not relu:  # (with relu, the caller adds the output itself)
        fused = native.batch_norm_train(z, rm, rv, factor, eps, acc, gate, keep_output=keep_output)
        if fused is not None:
            return (*fused, True)
    fused = native.batch_norm_train(z, rm, rv, factor, eps, relu=relu)  # the sum, if any, left to the caller
    if fused is not None:
        return (*fused, False)
    out, mean, invstd = torch.native_batch_norm(z, None, None, rm, rv, True, factor, eps)
    return (F.relu(out) if relu else out), mean, invstd, False


def _bn_gated(ctx, acc, gates, k: int, z: torch.Tensor, rm, rv, factor: float, eps: float, keep_output: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """``_gate_output`` of the BN output: (what the function returns, the BN output, its mean, its invstd); the
    gated sum into ``acc`` is done by the kernel that normalises, where it can (and then, without
    ``keep_output``, the BN output is not written: None)."""
    fusable = (gates is not None and acc is not None and z.device.type == "cpu" and acc.shape == z.shape
               and acc.dtype == z.dtype)  # (and no host sync for the gate's value elsewhere)
    out, mean, invstd, done = _bn_train(z, rm, rv, factor, eps, acc if fusable else None,
                                        float(gates[k]) if fusable else 1.0, keep_output=keep_output)
    if done:
        ctx.k, ctx.has_acc = k, True
        ctx.mark_dirty(acc)
        return acc, out, mean, invstd
    return _gate_output(ctx, acc, gates, k, out), out, mean, invstd


def _bn_backward(grad: torch.Tensor, out: torch.Tensor, weight: torch.Tensor, eps: float, need_input: bool = True,
                 need_weight: bool = False, relu: bool = False,
                 centre: tuple[torch.Tensor, torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of an affine-free training BN, from its output, scaled by ``weight / invstd``: the input's,
    ``weight * (g - mean g - y mean(g y))``, and the per-channel ``sum(g * y)``. One fused kernel: the output
    stands for the input with mean 0 and invstd 1, and ``weight`` (the real invstd, times a gate if any) enters
    as the affine weight, whose "weight gradient" is that sum. With ``relu``: of ``relu(BN(z))``, the ReLU's
    backward (a mask from the BN output) in the same kernel. With ``centre=(mean, invstd)``, ``out`` is BN's
    input, normalised on the way (no normalised copy written and read)."""
    fused = native.batch_norm_backward(grad, out, weight, need_input, need_weight, relu, centre)
    if fused is not None:
        return fused
    if centre is not None:
        out = _normalise(out, *centre)
    if relu:
        grad = torch.ops.aten.threshold_backward(grad, out, 0)
    zeros, ones = torch.zeros_like(weight), torch.ones_like(weight)
    g_in, g_w, _ = torch.ops.aten.native_batch_norm_backward(grad, out, weight, None, None, zeros, ones, True, eps,
                                                             [need_input, need_weight, False])
    return g_in, g_w


def _normalise(z: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """``(z - mean) * invstd`` per channel (its ReLU with ``relu``): a BN output made again as the forward made
    it, from BN's input and the forward's statistics."""
    out = native.batch_norm_apply(z, mean, invstd, relu)
    if out is None:
        out = (z - mean[:, None, None]).mul_(invstd[:, None, None])
        if relu:
            out = F.relu(out)
    return out


def _gate_output(ctx, acc, gates, k: int, out: torch.Tensor) -> torch.Tensor:
    """The op's output ``out`` (no gate), ``gates[k] * out``, or ``acc += gates[k] * out`` in place (the mixed
    op's weighted sum, accumulated op by op)."""
    ctx.k, ctx.has_acc = k, acc is not None
    if gates is None:
        if acc is not None:
            raise ValueError("lean_forward: a sum to add into needs the gates (gate=(gates, k, acc))")
        return out
    if acc is None:
        return torch.mul(out, gates[k])
    if acc.shape != out.shape or acc.dtype != out.dtype:
        raise RuntimeError(f"the ops of an edge must give outputs of one shape and dtype, got {tuple(acc.shape)} "
                           f"{acc.dtype} and {tuple(out.shape)} {out.dtype}")
    acc.addcmul_(out, gates[k])
    ctx.mark_dirty(acc)
    return acc


def _gated_bn_backward(ctx, grad, out, invstd, eps, gates, need_input: bool, mean: torch.Tensor | None = None):
    """``(d loss / d BN input, d loss / d gates)`` of ``gates[k] * BN(input)`` (or of ``BN(input)``); with the
    forward's ``mean``, ``out`` is BN's input instead of its output.

    One kernel gives both: BN's backward is linear in the output gradient, so the gate enters with the
    inverse std as the affine weight, and its "weight gradient" ``sum(grad * out)`` per channel is the gate's
    gradient summed over channels (the mixed op's dot product, without a pass of its own)."""
    need_gate = gates is not None and ctx.needs_input_grad[1]
    if not (need_input or need_gate):
        return None, None
    weight = invstd if gates is None else invstd * gates[ctx.k]
    g_in, g_w = _bn_backward(grad.contiguous(memory_format=_format(out)), out, weight, eps, need_input, need_gate,
                             centre=None if mean is None else (mean, invstd))
    g_gates = None
    if need_gate:
        g_gates = torch.zeros_like(gates)
        g_gates[ctx.k] = g_w.sum(dtype=gates.dtype)
    return g_in, g_gates


def _pw_backward(grad: torch.Tensor, a: torch.Tensor | None, w: torch.Tensor, need_a: bool, need_w: bool):
    """Gradients of a 1x1 convolution ``conv2d(a, w)``; ``a`` (its input) is needed only for ``w``'s."""
    if not need_w:  # the input gradient alone is the convolution with the transposed weight
        return (F.conv2d(grad, w.transpose(0, 1)) if need_a else None), None
    ga, gw, _ = torch.ops.aten.convolution_backward(grad, a, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                                                    [need_a, True, False])
    return ga, gw


class _Block(torch.autograd.Function):
    """``BN(pointwise(depthwise(relu?(x))))``, affine-free training BN; keeps ``x`` and the output. Without a
    depthwise weight (``w_dw=None``) it is ``BN(conv1x1(relu?(x)))``, a cell's preprocessing: the ReLU is
    recomputed in the backward pass, so a cell output that feeds two cells is kept once, and never as its
    ReLU or its convolution's output."""

    @staticmethod
    def forward(ctx, acc, gates, x, w_dw, w_pw, rm, rv, relu_first: bool, geom, factor: float, eps: float,
                k: int):
        h = F.relu(x) if relu_first else x
        a = _dw_forward(h, w_dw, geom) if w_dw is not None else h
        result, out, _, invstd = _bn_gated(ctx, acc, gates, k, F.conv2d(a, w_pw), rm, rv, factor, eps)
        ctx.save_for_backward(x, w_dw, w_pw, out, invstd, gates)
        ctx.relu_first, ctx.geom, ctx.eps = relu_first, geom, eps
        return result

    @staticmethod
    @_once
    def backward(ctx, grad):
        x, w_dw, w_pw, out, invstd, gates = ctx.saved_tensors
        need_x, need_dw, need_pw = ctx.needs_input_grad[2:5]
        # recomputed, and only when a weight gradient needs them (an alpha-only backward does not)
        h = F.relu(x) if ctx.relu_first and (need_dw or need_pw) else x
        a = None
        if need_pw:
            a = _dw_forward(h, w_dw, ctx.geom) if w_dw is not None else h
        gz, g_gates = _gated_bn_backward(ctx, grad, out, invstd, ctx.eps, gates, need_x or need_dw or need_pw)
        gx = g_dw = g_pw = None
        if gz is not None:
            ga, g_pw = _pw_backward(gz, a, w_pw, need_x or need_dw, need_pw)
            del a, gz
            if w_dw is None:
                gx = ga
            elif need_x or need_dw:
                gx, g_dw = _dw_backward(ga, h, w_dw, ctx.geom, need_x, need_dw)
            if need_x and ctx.relu_first:
                gx = torch.ops.aten.threshold_backward(gx, x, 0)
        return (grad if ctx.has_acc else None), g_gates, gx, g_dw, g_pw, *(None,) * 7


class _SepConv(torch.autograd.Function):
    """Two blocks, ``block2(block1(x))``, the second with a leading ReLU (the DARTS separable convolution).
    Keeps ``x``, the output and block 1's BN statistics: block 1's output is recomputed in the backward pass
    (a depthwise and a pointwise convolution, then the normalisation with the kept statistics)."""

    @staticmethod
    def forward(ctx, acc, gates, x, dw1, pw1, dw2, pw2, rm1, rv1, rm2, rv2, geom1, geom2, f1: float, f2: float,
                eps1: float, eps2: float, k: int):
        z1 = F.conv2d(_dw_forward(x, dw1, geom1), pw1)
        d1, mean1, invstd1, _ = _bn_train(z1, rm1, rv1, f1, eps1, relu=True)  # relu(block 1), in one kernel
        del z1
        z2 = F.conv2d(_dw_forward(d1, dw2, geom2), pw2)
        result, out, _, invstd2 = _bn_gated(ctx, acc, gates, k, z2, rm2, rv2, f2, eps2)
        del z2
        ctx.save_for_backward(x, dw1, pw1, dw2, pw2, mean1, invstd1, out, invstd2, gates)
        ctx.geoms, ctx.eps = (geom1, geom2), (eps1, eps2)
        return result

    @staticmethod
    @_once
    def backward(ctx, grad):
        x, dw1, pw1, dw2, pw2, mean1, invstd1, out, invstd2, gates = ctx.saved_tensors
        (geom1, geom2), (eps1, eps2) = ctx.geoms, ctx.eps
        need = ctx.needs_input_grad[2:7]
        gz2, g_gates = _gated_bn_backward(ctx, grad, out, invstd2, eps2, gates, any(need))
        grad_acc = grad if ctx.has_acc else None
        if gz2 is None:
            return (grad_acc, g_gates) + (None,) * 17
        a1 = _dw_forward(x, dw1, geom1)
        z1 = F.conv2d(a1, pw1)  # block 1 again, up to its BN
        # block 1's output, the second depthwise input, only when a weight gradient needs it (and then its
        # output too)
        d1 = _normalise(z1, mean1, invstd1, relu=True) if need[3] or need[4] else None
        a2 = _dw_forward(d1, dw2, geom2) if need[4] else None
        ga2, g_pw2 = _pw_backward(gz2, a2, pw2, True, need[4])
        del a2, gz2
        gd1, g_dw2 = _dw_backward(ga2, z1 if d1 is None else d1, dw2, geom2, True, need[3])
        del ga2, d1
        # the ReLU's backward and the normalisation inside BN's backward kernel
        gz1 = _bn_backward(gd1, z1, invstd1, eps1, relu=True, centre=(mean1, invstd1))[0]
        del gd1, z1
        ga1, g_pw1 = _pw_backward(gz1, a1, pw1, need[0] or need[1], need[2])
        del a1, gz1
        gx = g_dw1 = None
        if need[0] or need[1]:
            gx, g_dw1 = _dw_backward(ga1, x, dw1, geom1, need[0], need[1])
        return (grad_acc, g_gates, gx, g_dw1, g_pw1, g_dw2, g_pw2) + (None,) * 11


class _PoolBN(torch.autograd.Function):
    """``BN(pool3x3(x))`` (max, or average not counting padding), affine-free training BN. Keeps the BN
    statistics only: the input is kept anyway (it is the edge's input), and the pooling and its normalisation are
    recomputed in the backward pass, a fraction of the time of the convolutions around them (a pooling op's output
    was a quarter of the tensors a lean search pass keeps)."""

    @staticmethod
    def forward(ctx, acc, gates, x, rm, rv, is_max: bool, stride: int, factor: float, eps: float, k: int):
        result, _, mean, invstd = _bn_gated(ctx, acc, gates, k, _pool3(x, is_max, stride), rm, rv, factor, eps,
                                            keep_output=False)  # the statistics are all it keeps
        ctx.save_for_backward(x, mean, invstd, gates)
        ctx.is_max, ctx.stride, ctx.eps = is_max, stride, eps
        return result

    @staticmethod
    @_once
    def backward(ctx, grad):
        x, mean, invstd, gates = ctx.saved_tensors
        s = ctx.stride
        # the pooling again; BN's backward normalises it on the way as the forward did
        z = _pool3(x, ctx.is_max, s)
        gp, g_gates = _gated_bn_backward(ctx, grad, z, invstd, ctx.eps, gates, ctx.needs_input_grad[2], mean)
        del z
        head = ((grad if ctx.has_acc else None), g_gates)
        if gp is None:
            return head + (None,) * 8
        if ctx.is_max:
            gx = native.max_pool3_backward(gp, x, s)  # the C kernel finds the maxima again: no indices kept
            if gx is None:
                _, idx = F.max_pool2d_with_indices(x, 3, s, 1)  # recomputed: int64 indices would cost 2 activations
                gx = torch.ops.aten.max_pool2d_with_indices_backward(gp, x, [3, 3], [s, s], [1, 1], [1, 1], False,
                                                                     idx)
        else:
            gx = native.avg_pool3_backward(gp, x.shape, s)
            if gx is None:
                gx = torch.ops.aten.avg_pool2d_backward(gp, x, [3, 3], [s, s], [1, 1], False, False, None)
        return head + (gx,) + (None,) * 7


class _FactorizedReduce(torch.autograd.Function):
    """``BN(cat(conv1(relu(x)[even pixels]), conv2(relu(x)[odd pixels])))``, the DARTS FactorizedReduce with an
    affine-free training BN (a reduction cell's skip op, and the preprocessing after a reduction). Keeps ``x``
    (an edge or cell input, kept anyway) and the output: the ReLU, the two pixel subsamplings and their 1x1
    convolutions' outputs are recomputed or never kept."""

    @staticmethod
    def forward(ctx, acc, gates, x, w1, w2, rm, rv, factor: float, eps: float, k: int):
        even, odd = _even_odd(F.relu(x))
        a, b = F.conv2d(even, w1), F.conv2d(odd, w2)
        if b.shape != a.shape:  # odd sizes: the shifted branch is one pixel short, padded with zeros
            b = F.pad(b, (0, a.shape[-1] - b.shape[-1], 0, a.shape[-2] - b.shape[-2]))
        z = torch.cat([a, b], dim=1).contiguous(memory_format=_format(a))
        del a, b, even, odd
        result, out, _, invstd = _bn_gated(ctx, acc, gates, k, z, rm, rv, factor, eps)
        ctx.save_for_backward(x, w1, w2, out, invstd, gates)
        ctx.eps = eps
        return result

    @staticmethod
    @_once
    def backward(ctx, grad):
        x, w1, w2, out, invstd, gates = ctx.saved_tensors
        need_x, need_w1, need_w2 = ctx.needs_input_grad[2:5]
        gz, g_gates = _gated_bn_backward(ctx, grad, out, invstd, ctx.eps, gates, need_x or need_w1 or need_w2)
        head = ((grad if ctx.has_acc else None), g_gates)
        if gz is None:
            return head + (None,) * 8
        even, odd = _even_odd(F.relu(x)) if need_w1 or need_w2 else (None, None)
        fmt, half = _format(gz), w1.shape[0]
        ho, wo = x.shape[-2] // 2, x.shape[-1] // 2  # the shifted branch's size before padding
        if min(x.shape[-2], x.shape[-1]) == 1:  # a 1-pixel side: nothing to shift, both branches read x itself
            ho, wo = gz.shape[-2], gz.shape[-1]
        ge, g_w1 = _pw_backward(gz[:, :half].contiguous(memory_format=fmt), even, w1, need_x, need_w1)
        go, g_w2 = _pw_backward(gz[:, half:, :ho, :wo].contiguous(memory_format=fmt), odd, w2, need_x, need_w2)
        del gz, even, odd
        gx = None
        if need_x:
            gx = torch.zeros_like(x)
            gx[:, :, ::2, ::2] = ge
            if min(x.shape[-2], x.shape[-1]) == 1:
                gx[:, :, ::2, ::2] += go
            else:
                gx[:, :, 1::2, 1::2] = go
            gx = torch.ops.aten.threshold_backward(gx, x, 0)
        return head + (gx, g_w1, g_w2) + (None,) * 5


def _even_odd(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The even pixels of ``h`` and those of ``h`` shifted by one pixel down and right (the even ones again when
    a side is one pixel), dense in ``h``'s memory format."""
    fmt = _format(h)
    even = h[:, :, ::2, ::2].contiguous(memory_format=fmt)
    if min(h.shape[-2], h.shape[-1]) == 1:
        return even, even
    return even, h[:, :, 1::2, 1::2].contiguous(memory_format=fmt)


def _pool3(x: torch.Tensor, is_max: bool, stride: int) -> torch.Tensor:
    """3x3 padding-1 max or average pooling (padding not counted): the C kernel for float32 channels-last."""
    p = (native.max_pool3 if is_max else native.avg_pool3)(x, stride)
    if p is None:
        p = F.max_pool2d(x, 3, stride, 1) if is_max else F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    return p


def _format(t: torch.Tensor) -> torch.memory_format:
    return (torch.channels_last if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
            and not t.is_contiguous() else torch.contiguous_format)


# -- matching the modules ----------------------------------------------------------------------------------------
def _block_parts(seq: nn.Module):
    """(relu_first, depthwise, pointwise, bn) of a ReLU-depthwise-pointwise-BN block (DilConv), else None."""
    if not isinstance(seq, nn.Sequential) or len(seq) != 4:
        return None
    first, dw, pw, bn = seq
    if type(first) not in (nn.ReLU, nn.Identity) or type(dw) is not DepthwiseConv2d or dw.bias is not None:
        return None
    if not (_pointwise(pw) and _bn_plain(bn)):
        return None
    return isinstance(first, nn.ReLU), dw, pw, bn


def _pointwise(conv: nn.Module, stride: int = 1) -> bool:
    """A plain 1x1 convolution of the given stride: no padding, no groups, no bias."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (1, 1) and conv.stride == (stride, stride)
            and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1 and conv.bias is None)


def lean_plan(op: nn.Module):
    """How ``lean_run`` runs ``op`` through the lean functions: ``(kind, parts)``, or None when it is not one of
    the DARTS search ops they cover (separable or dilated conv, pooling followed by BN, a factorized reduce, a 1x1
    ReLU-conv-BN as a cell's preprocessing) or has hooks (the module then runs itself)."""
    if _hooked(op):
        return None  # hooks may change what a module computes: the module runs itself
    if type(op) is DilConv:
        parts = _block_parts(op)
        return None if parts is None else ("block", parts)
    if type(op) is FactorizedReduce:
        if not (type(op.relu) is nn.ReLU and _bn_plain(op.bn) and all(
                _pointwise(c, stride=2) for c in (op.conv_1, op.conv_2))):
            return None
        return "fr", (op.conv_1, op.conv_2, op.bn)
    if type(op) is ReLUConvBN and len(op) == 3:
        first, pw, bn = op
        if type(first) not in (nn.ReLU, nn.Identity) or not (_pointwise(pw) and _bn_plain(bn)):
            return None
        return "block", (isinstance(first, nn.ReLU), None, pw, bn)
    if type(op) is SepConv and len(op) == 2:
        first, second = _block_parts(op[0]), _block_parts(op[1])
        if first is None or second is None or not second[0]:
            return None
        return "sep", (first, second)
    if type(op) is nn.Sequential and len(op) == 2 and type(op[0]) in (nn.MaxPool2d, nn.AvgPool2d):
        pool, bn = op
        if not _bn_plain(bn) or not _standard_pool(pool):
            return None
        return "pool", (pool, bn)
    return None


def _hooked(m: nn.Module) -> bool:
    """Whether ``m`` or a submodule has forward (pre-)hooks (a plain recursion: ``modules()`` costs more)."""
    return bool(m._forward_hooks or m._forward_pre_hooks) or any(_hooked(c) for c in m._modules.values()
                                                                   if c is not None)


def lean_forward(op: nn.Module, x: torch.Tensor, gate: tuple[torch.Tensor, int, torch.Tensor | None] | None = None
                 ) -> torch.Tensor | None:
    """``op(x)`` through the lean functions when ``op`` is one of the DARTS search ops they cover, else None.

    ``gate=(gates, k, acc)``: ``gates[k] * op(x)`` instead, added in place into ``acc`` when it is not None
    (the mixed op's weighted sum, one op at a time; the gate's gradient comes out of BN's backward)."""
    plan = lean_plan(op)
    return None if plan is None else lean_run(plan, x, gate)


def lean_run(plan, x: torch.Tensor, gate: tuple[torch.Tensor, int, torch.Tensor | None] | None = None
             ) -> torch.Tensor:
    """``lean_forward`` with the ``lean_plan`` of the op already made."""
    gates, k, acc = gate if gate is not None else (None, 0, None)
    kind, parts = plan
    if kind == "block":
        relu_first, dw, pw, bn = parts
        rm, rv, factor, eps = _bn_args(bn)
        w_dw, geom = (None, None) if dw is None else (dw.weight, dw.geometry())
        return _Block.apply(acc, gates, x, w_dw, pw.weight, rm, rv, relu_first, geom, factor, eps, k)
    if kind == "sep":
        first, second = parts
        if first[0]:  # a leading ReLU the caller has not applied (the supernet strips it)
            x = F.relu(x)
        rm1, rv1, f1, eps1 = _bn_args(first[3])
        rm2, rv2, f2, eps2 = _bn_args(second[3])
        return _SepConv.apply(acc, gates, x, first[1].weight, first[2].weight, second[1].weight, second[2].weight,
                              rm1, rv1, rm2, rv2, first[1].geometry(), second[1].geometry(), f1, f2, eps1, eps2, k)
    if kind == "fr":
        conv_1, conv_2, bn = parts
        rm, rv, factor, eps = _bn_args(bn)
        return _FactorizedReduce.apply(acc, gates, x, conv_1.weight, conv_2.weight, rm, rv, factor, eps, k)
    pool, bn = parts
    rm, rv, factor, eps = _bn_args(bn)
    return _PoolBN.apply(acc, gates, x, rm, rv, type(pool) is nn.MaxPool2d, _pair(pool.stride)[0], factor, eps, k)


def _pair(v) -> tuple:
    return (v, v) if isinstance(v, int) else tuple(v)


def _standard_pool(pool: nn.Module) -> bool:
    """A 3x3, padding-1, square-stride pooling as the DARTS ops build it (average: padding not counted)."""
    stride = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
    if (_pair(pool.kernel_size) != (3, 3) or _pair(pool.padding) != (1, 1) or stride[0] != stride[1]
            or pool.ceil_mode):
        return False
    if type(pool) is nn.MaxPool2d:
        return _pair(pool.dilation) == (1, 1) and not pool.return_indices
    return not pool.count_include_pad and pool.divisor_override is None
