"""The architecture step of the bilevel problem (Section 2.3 of the DARTS paper).

First order: the alpha gradient is ``grad_a L_val(w, a)``.

Second order: the gradient of the unrolled objective ``L_val(w', a)`` with
``w' = w - xi * (mu * m + grad_w L_train(w, a) + lambda * w)`` (one virtual SGD step with the weight optimizer's
learning rate xi, momentum mu, momentum buffer m and weight decay lambda):

    grad_a L_val(w', a) - xi * grad2_{a,w} L_train(w, a) . v,     v = grad_w' L_val(w', a)      (Eq. 7)

The Hessian-vector product is the paper's central difference (Eq. 8),
``(grad_a L_train(w + R v, a) - grad_a L_train(w - R v, a)) / (2 R)`` with ``R = 0.01 / ||v||``, or, with
``hessian="exact"``, autograd through the virtual step (double backward).

No copy of the network is made: the virtual weights are put in place of the network's own for one forward
(``TensorSwap``, what ``torch.func.functional_call`` does, at a fiftieth of its cost for the supernet's
4,000 tensors). Every forward here runs on copies of the network's buffers, so ``hypergradient`` leaves
weights, alphas, BN statistics and both optimizers untouched.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ops.lean import plain_autograd

Batch = tuple[torch.Tensor, torch.Tensor]
HESSIAN_MODES = ("finite-difference", "exact")


class Architect:
    """Updates the alphas of ``network`` (anything with ``weights()``, ``alphas()`` and a forward giving logits)."""

    def __init__(self, network: nn.Module, *, order: int = 1, lr: float = 3e-4,
                 betas: tuple[float, float] = (0.5, 0.999), weight_decay: float = 1e-3,
                 hessian: str = "finite-difference", fd_radius: float = 0.01,
                 criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 grad_reducer: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None,
                 graph_reducer: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None,
                 regularizer: Callable[[list[torch.Tensor]], torch.Tensor] | None = None):
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order!r}")
        if hessian not in HESSIAN_MODES:
            raise ValueError(f"hessian must be one of {', '.join(HESSIAN_MODES)}, got {hessian!r}")
        if fd_radius <= 0:
            raise ValueError(f"fd_radius must be > 0, got {fd_radius!r}")
        self.network = network
        self.order = order
        self.hessian = hessian
        self.fd_radius = fd_radius
        self.criterion = criterion or F.cross_entropy
        # Averages a list of gradients over processes (identity in one process); applied to every piece
        # that feeds an update, as DESIGN.md asks.
        self.grad_reducer = grad_reducer or (lambda grads: grads)
        # The same average, differentiable: the exact mode differentiates through the averaged weight gradient.
        self.graph_reducer = graph_reducer or (lambda grads: grads)
        # A loss term of the alphas alone (e.g. FairDARTS' zero-one loss), added to the validation loss: its
        # gradient is the same in every mode and on every process, so it is added after the reductions.
        self.regularizer = regularizer
        self.optimizer = torch.optim.Adam(list(network.alphas()), lr=lr, betas=betas, weight_decay=weight_decay)
        self._swap = TensorSwap(network)

    # -- helpers ---------------------------------------------------------------------------------------------
    def _weight_names(self, weights: Sequence[torch.Tensor]) -> list[str]:
        names = {id(p): n for n, p in self.network.named_parameters()}
        return [names[id(w)] for w in weights]

    def _loss(self, batch: Batch, params: dict[str, torch.Tensor],
              buffers: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Loss of the network with some parameters replaced, on copies of its buffers (BN stats untouched):
        ``buffers`` (from ``_buffer_copies``, shared by the forwards of one hypergradient), or fresh ones."""
        x, y = batch
        state = dict(self._buffer_copies() if buffers is None else buffers)
        state.update(params)
        with self._swap.swapped(state):
            return self.criterion(self.network(x), y)

    def _buffer_copies(self) -> dict[str, torch.Tensor]:
        """Copies of the network's buffers. The forwards of one hypergradient may share them: a training forward
        writes running statistics but reads none (BatchNorm in training uses the batch's), and an evaluation
        forward reads them without writing, so every forward sees the values it would see on fresh copies."""
        return {n: b.clone() for n, b in self.network.named_buffers()}

    @staticmethod
    def _sgd_hyper(weight_optimizer: torch.optim.Optimizer | None, weights: Sequence[torch.Tensor]):
        """Per-weight (xi, mu, lambda, momentum buffer or None) read from the weight optimizer."""
        if weight_optimizer is None:
            raise ValueError("second-order architecture steps need the weight optimizer (its lr, momentum, wd)")
        group_of = {}
        for group in weight_optimizer.param_groups:
            for p in group["params"]:
                group_of[id(p)] = group
        out = []
        for w in weights:
            group = group_of.get(id(w))
            if group is None:
                raise ValueError("a network weight is not in the weight optimizer; pass network.weights() to it")
            buf = weight_optimizer.state.get(w, {}).get("momentum_buffer")
            out.append((float(group["lr"]), float(group.get("momentum", 0.0)),
                        float(group.get("weight_decay", 0.0)), buf))
        if len({h[0] for h in out}) > 1:
            raise ValueError("second-order steps need one learning rate for all weights (the paper's xi)")
        return out

    # -- the hypergradient -----------------------------------------------------------------------------------
    def hypergradient(self, train_batch: Batch, val_batch: Batch,
                      weight_optimizer: torch.optim.Optimizer | None = None) -> list[torch.Tensor]:
        """The alpha gradients (one per ``network.alphas()`` tensor); changes nothing."""
        return self._hypergradient(train_batch, val_batch, weight_optimizer)[0]

    def _hypergradient(self, train_batch, val_batch, weight_optimizer):
        grads, loss = self._data_hypergradient(train_batch, val_batch, weight_optimizer)
        if self.regularizer is None:
            return grads, loss
        alphas = list(self.network.alphas())
        with torch.enable_grad():
            extra = self.regularizer(alphas)
            reg = torch.autograd.grad(extra, alphas, allow_unused=True)
        grads = [g if r is None else g + r.detach().to(g.dtype) for g, r in zip(grads, reg)]
        return grads, loss  # the reported loss stays the validation loss

    def _data_hypergradient(self, train_batch, val_batch, weight_optimizer):
        net = self.network
        alphas = list(net.alphas())
        if self.order == 1:
            # the weights enter detached: only the alpha gradient is wanted, and autograd functions that decide
            # by requires_grad (the lean ops) would otherwise compute the weight gradients as well
            weights = list(net.weights())
            loss = self._loss(val_batch, {n: w.detach() for n, w in zip(self._weight_names(weights), weights)})
            grads = torch.autograd.grad(loss, alphas, allow_unused=True)  # a net of only reduction cells
            grads = [torch.zeros_like(a) if g is None else g.detach() for a, g in zip(alphas, grads)]
            return self.grad_reducer(grads), loss.detach()
        weights = list(net.weights())
        weight_names = self._weight_names(weights)
        hyper = self._sgd_hyper(weight_optimizer, weights)
        if self.hessian == "exact":
            return self._exact(train_batch, val_batch, weights, weight_names, alphas, hyper)
        return self._finite_difference(train_batch, val_batch, weights, weight_names, alphas, hyper)

    @staticmethod
    def _virtual_weights(weights, grads, hyper):
        """w' = w - xi * (mu * m + g + lambda * w): one SGD step with momentum and weight decay (no copy of w), as
        ``torch._foreach_*`` calls per group of equal (xi, mu, lambda): a few calls instead of some 5,000 small
        operations for the default supernet, differentiable when the grads carry a graph (the exact mode)."""
        groups: dict[tuple[float, float, float], list[int]] = {}
        for i, (xi, mu, lam, buf) in enumerate(hyper):
            groups.setdefault((xi, mu if buf is not None else 0.0, lam), []).append(i)
        out: list[torch.Tensor | None] = [None] * len(weights)
        for (xi, mu, lam), idx in groups.items():
            w = [weights[i] for i in idx]
            d = torch._foreach_add([grads[i] for i in idx], w, alpha=lam) if lam else [grads[i] for i in idx]
            if mu:
                d = torch._foreach_add(d, [hyper[i][3] for i in idx], alpha=mu)
            for i, t in zip(idx, torch._foreach_sub(w, d, alpha=xi), strict=True):
                out[i] = t
        return out

    def _finite_difference(self, train_batch, val_batch, weights, weight_names, alphas, hyper):
        # grad_w L_train(w, a) for the virtual step; the alphas enter detached, so that no alpha gradient is
        # computed on the way (the mixed ops' dot products)
        names = {id(p): n for n, p in self.network.named_parameters()}
        frozen = {names[id(a)]: a.detach() for a in alphas if id(a) in names}  # alphas held outside: as they are
        buffers = self._buffer_copies()  # one set for the four forwards
        g_train = torch.autograd.grad(self._loss(train_batch, frozen, buffers), weights, allow_unused=True)
        g_train = self.grad_reducer([torch.zeros_like(w) if g is None else g for w, g in zip(weights, g_train)])
        with torch.no_grad():
            w_virtual = self._virtual_weights([w.detach() for w in weights], g_train, hyper)
        w_virtual = [w.requires_grad_(True) for w in w_virtual]
        # L_val(w', a): its gradient in a (first term of Eq. 7) and in w' (v)
        val_loss = self._loss(val_batch, dict(zip(weight_names, w_virtual)), buffers)
        grads = torch.autograd.grad(val_loss, alphas + w_virtual, allow_unused=True)
        # a graph that has been through backward still holds about a pass's worth of memory until it is dropped
        # (measured: +1 GB at batch 64): keep only the value before the next forward
        val_loss = val_loss.detach()
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(alphas + w_virtual, grads)]
        grads = self.grad_reducer(grads)
        d_alpha, v = grads[: len(alphas)], grads[len(alphas):]
        del w_virtual, grads
        # R = 0.01 / ||v||, the norm taken in float32 or wider
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.to(torch.promote_types(
            t.dtype, torch.float32))) for t in v]))
        if float(norm) == 0.0:  # the validation loss does not depend on w: no second-order term
            return d_alpha, val_loss.detach()
        radius = self.fd_radius / norm
        sides = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                w_side = torch._foreach_add([w.detach() for w in weights], v, alpha=sign * float(radius))
            loss = self._loss(train_batch, dict(zip(weight_names, w_side)), buffers)
            sides.append(torch.autograd.grad(loss, alphas, allow_unused=True))
            del loss, w_side  # dropped before the next forward (see above)
        plus, minus = ([torch.zeros_like(a) if g is None else g for a, g in zip(alphas, s)] for s in sides)
        diff = self.grad_reducer([p - m for p, m in zip(plus, minus)])
        scale = hyper[0][0] / (2.0 * radius)  # xi / (2R); xi is one number (checked in _sgd_hyper)
        result = [(da - scale.to(da.dtype) * dd).detach() for da, dd in zip(d_alpha, diff)]
        return result, val_loss.detach()

    def _exact(self, train_batch, val_batch, weights, weight_names, alphas, hyper):
        with plain_autograd():  # a double backward: the modules' own autograd, not the lean functions
            return self._exact_inner(train_batch, val_batch, weights, weight_names, alphas, hyper)

    def _exact_inner(self, train_batch, val_batch, weights, weight_names, alphas, hyper):
        # The graph of grad_w L_train is kept so that the alpha gradient flows through the virtual step.
        buffers = self._buffer_copies()  # one set for both forwards
        g_train = torch.autograd.grad(self._loss(train_batch, {}, buffers), weights, create_graph=True,
                                      allow_unused=True)
        g_train = self.graph_reducer([torch.zeros_like(w) if g is None else g for w, g in zip(weights, g_train)])
        w_virtual = self._virtual_weights(list(weights), g_train, hyper)
        val_loss = self._loss(val_batch, dict(zip(weight_names, w_virtual)), buffers)
        grads = torch.autograd.grad(val_loss, alphas, allow_unused=True)
        grads = [torch.zeros_like(a) if g is None else g.detach() for a, g in zip(alphas, grads)]
        return self.grad_reducer(grads), val_loss.detach()

    # -- the step --------------------------------------------------------------------------------------------
    def step(self, train_batch: Batch, val_batch: Batch,
             weight_optimizer: torch.optim.Optimizer | None = None) -> dict[str, float]:
        """Compute the hypergradient and apply it with Adam; returns the validation loss and gradient norm."""
        grads, val_loss = self._hypergradient(train_batch, val_batch, weight_optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        for a, g in zip(self.network.alphas(), grads):
            a.grad = g.to(a.dtype)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        return {"arch_loss": float(val_loss), "arch_grad_norm": float(norm)}

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])


class TensorSwap:
    """Puts other tensors in place of ``module``'s parameters and buffers for a while (``swapped``), as
    ``torch.func.functional_call`` does, at a fiftieth of its cost for the supernet's 4,000 tensors: where each
    tensor lives is found once, and a swap is a dictionary entry per name, without ``nn.Module.__setattr__``'s
    checks (the tensors need not be ``nn.Parameter``s: virtual weights with a graph). Tied tensors are swapped
    under every name; a module whose tensors were replaced since is looked at afresh."""

    def __init__(self, module: nn.Module):
        self.module = module
        self._slots: dict[str, tuple[torch.Tensor, list[tuple[dict, str]]]] = {}

    def _index(self) -> None:
        where: dict[int, list[tuple[dict, str]]] = {}
        for _, mod in self.module.named_modules(remove_duplicate=False):
            for store in (mod._parameters, mod._buffers):
                for leaf, t in store.items():
                    if t is not None:
                        where.setdefault(id(t), []).append((store, leaf))
        own = dict(self.module.named_parameters())
        own.update(self.module.named_buffers())
        self._slots = {name: (t, where[id(t)]) for name, t in own.items()}

    def _slot(self, name: str) -> list[tuple[dict, str]]:
        entry = self._slots.get(name)
        if entry is not None:
            tensor, places = entry
            store, leaf = places[0]
            if store.get(leaf) is tensor:
                return places
        self._index()  # unknown, or replaced since the index was made
        if name not in self._slots:
            raise KeyError(f"the module has no parameter or buffer {name!r}")
        return self._slots[name][1]

    @contextlib.contextmanager
    def swapped(self, tensors: dict[str, torch.Tensor]) -> Iterator[None]:
        """Within this block the parameters and buffers named in ``tensors`` (as ``named_parameters`` and
        ``named_buffers`` name them) are those tensors; restored afterwards, also on an error."""
        saved: list[tuple[dict, str, torch.Tensor]] = []
        try:
            for name, t in tensors.items():
                for store, leaf in self._slot(name):
                    saved.append((store, leaf, store[leaf]))
                    store[leaf] = t
            yield
        finally:
            for store, leaf, old in reversed(saved):
                store[leaf] = old


def zero_one_loss(weight: float) -> Callable[[list[torch.Tensor]], torch.Tensor]:
    """FairDARTS' zero-one loss on sigmoid gates, ``-weight * mean((sigmoid(a) - 0.5)^2)`` over every alpha:
    it is lowest when each gate is 0 or 1, which makes thresholding the gates afterwards faithful."""

    def loss(alphas: list[torch.Tensor]) -> torch.Tensor:
        gates = [torch.sigmoid(a) for a in alphas if a.dim() == 2]  # op gates (PC-DARTS betas are 1-D)
        total = sum(((g - 0.5) ** 2).sum() for g in gates)
        count = sum(g.numel() for g in gates)
        return -weight * total / count

    return loss
