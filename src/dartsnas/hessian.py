"""The dominant eigenvalue of the Hessian of the validation loss with respect to the alphas.

Zela et al. (*Understanding and Robustifying Differentiable Architecture Search*, ICLR 2020) showed that this
eigenvalue grows before a DARTS search collapses into parameter-free ops, and stop the search on it (DARTS-ES).
Here it is computed by Lanczos iteration with full reorthogonalisation on Hessian-vector products, each a
double backward through the supernet (so the network runs under ``plain_autograd``: the lean ops are
differentiable once). The weights, their gradients and the BatchNorm statistics are left as they were.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

Batch = tuple[torch.Tensor, torch.Tensor]


def _hessian_vector_product(network: torch.nn.Module, batches: Sequence[Batch], vector: torch.Tensor
                            ) -> torch.Tensor:
    """``H v`` for the Hessian ``H`` of the mean cross-entropy over ``batches`` (weighted by their sizes) with
    respect to the flattened alphas."""
    alphas = list(network.alphas())
    pieces = list(torch.split(vector, [a.numel() for a in alphas]))
    total = sum(len(y) for _, y in batches)
    out = torch.zeros_like(vector)
    for x, y in batches:
        loss = F.cross_entropy(network(x).float(), y) * (len(y) / total)
        # allow_unused: an alpha tensor no cell reads (a network too shallow for a normal cell) has a zero row
        grads = torch.autograd.grad(loss, alphas, create_graph=True, allow_unused=True)
        directional = sum((g * p.view_as(g).to(g.dtype)).sum() for g, p in zip(grads, pieces) if g is not None)
        if not torch.is_tensor(directional) or not directional.requires_grad:
            continue  # the loss is linear in the alphas on this batch
        hv = torch.autograd.grad(directional, alphas, allow_unused=True)
        out += torch.cat([(h if h is not None else torch.zeros_like(a)).reshape(-1)
                          for h, a in zip(hv, alphas)]).to(out.dtype)
    return out


def _largest_ritz_value(diag: list[float], off: list[float]) -> float:
    k = len(diag)
    t = torch.zeros(k, k, dtype=torch.float64)
    for i in range(k):
        t[i, i] = diag[i]
        if i + 1 < k:
            t[i, i + 1] = t[i + 1, i] = off[i]
    return float(torch.linalg.eigvalsh(t)[-1])


def alpha_hessian_eigenvalue(network: torch.nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                             *, batches: Sequence[Batch] | None = None, tol: float = 1e-2, max_iter: int = 20,
                             seed: int = 0) -> float:
    """The largest eigenvalue of the Hessian of ``cross_entropy(network(x), y)`` (or of the mean over
    ``batches``) with respect to all of the network's alphas, with its current weights and mode.

    Lanczos iteration from a start vector drawn from ``seed`` (so repeated calls agree), stopped when the
    largest Ritz value moves by at most ``tol`` times its size between iterations, after ``max_iter``
    iterations, or when the Krylov space is exhausted (then it is exact). ``network`` needs ``alphas()`` and a
    forward that returns logits."""
    from .ops.lean import plain_autograd

    if batches is None:
        if x is None or y is None:
            raise ValueError("give x and y, or batches")
        batches = [(x, y)]
    if not batches:
        raise ValueError("no batches to compute the eigenvalue on")
    alphas = list(network.alphas())
    n = sum(a.numel() for a in alphas)
    dtype = torch.float64 if alphas[0].dtype == torch.float64 else torch.float32
    start = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q = (start / start.norm()).to(alphas[0].device, dtype)
    buffers = {k: b.clone() for k, b in network.named_buffers()}  # train-mode BN would update its statistics
    basis: list[torch.Tensor] = []
    diag: list[float] = []
    off: list[float] = []
    value = prev = None
    try:
        with plain_autograd():
            for _ in range(min(max_iter, n)):
                basis.append(q)
                w = _hessian_vector_product(network, batches, q)
                a = float(torch.dot(w, q))
                w = w - a * q - (off[-1] * basis[-2] if off else 0.0)
                for _ in range(2):  # full reorthogonalisation, twice: the Ritz values stay clean in float32
                    w = w - torch.stack(basis).T @ (torch.stack(basis) @ w)
                diag.append(a)
                value = _largest_ritz_value(diag, off)
                b = float(w.norm())
                if b <= 1e-10 * max(1.0, abs(value)):  # an invariant subspace: the Ritz values are exact
                    break
                if prev is not None and abs(value - prev) <= tol * max(abs(value), 1e-12):
                    break
                prev = value
                off.append(b)
                q = w / b
    finally:
        with torch.no_grad():
            named = dict(network.named_buffers())
            for k, b in buffers.items():
                named[k].copy_(b)
    return float(value)


__all__ = ["alpha_hessian_eigenvalue"]
