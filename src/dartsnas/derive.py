"""From raw architecture parameters to a genotype: the gate function (softmax or sigmoid), PC-DARTS edge
normalisation, shared (normal/reduce) or per-cell alphas, and the derivation rule. Used by the supernet after
each epoch and by ``dartsnas derive`` on a run's alpha history, so both give the same genotype."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ConfigError
from .genotype import Genotype, derive_genotype, derive_per_cell_genotype, edge_normalized, softmax

GATES = ("softmax", "sigmoid")


def gate_values(raw: Any, gate: str) -> np.ndarray:
    """Op weights of raw alphas ``[..., ops]``: softmax over the ops, or an independent sigmoid per op."""
    a = np.asarray(raw, dtype=np.float64)
    if gate == "softmax":
        return softmax(a, axis=-1)
    if gate == "sigmoid":
        return 1.0 / (1.0 + np.exp(-a))
    raise ConfigError(f"gates must be one of {', '.join(GATES)}, got {gate!r}")


def per_cell_names(raw: Mapping[str, Any]) -> list[str]:
    return sorted((n for n in raw if n.startswith("alpha_cell_")), key=lambda n: int(n.rsplit("_", 1)[1]))


def derive_from_gates(raw: Mapping[str, Any], gate: str, primitives: Sequence[str], nodes: int, multiplier: int, *,
                      reductions: Sequence[int] = (), rule: str = "top-k",
                      threshold: float | None = None, seq: Sequence[int] | None = None) -> Genotype:
    """The genotype of raw alphas ``{name: array}`` (``alpha_normal``/``alpha_reduce``, or ``alpha_cell_NN``,
    with ``beta_*`` edge parameters for PC-DARTS). ``reductions``: the reducing positions of a per-cell
    search; ``seq``: with a whole-network layout (DARTOpti), the ``alpha_cell_NN`` set of each position."""
    extra = {} if rule == "top-k" else {"rule": rule, "threshold": threshold}

    def weights(name: str) -> np.ndarray:
        w = gate_values(raw[name], gate)
        beta = name.replace("alpha_", "beta_")
        if beta in raw:  # PC-DARTS ranks edges by op weight times edge weight
            w = edge_normalized(w, raw[beta], nodes)
        return w

    if "alpha_normal" in raw and "alpha_reduce" in raw:
        return derive_genotype(weights("alpha_normal"), weights("alpha_reduce"), primitives, nodes, multiplier,
                               **extra)
    names = per_cell_names(raw)
    if not names:
        raise ConfigError("no architecture parameters (alpha_normal/alpha_reduce or alpha_cell_NN) to derive from")
    cells = [weights(n) for n in names]
    if seq is not None:
        if any(not 0 <= g < len(cells) for g in seq):
            raise ConfigError(f"the layout's seq {list(seq)} names alpha sets the history lacks ({len(cells)})")
        cells = [cells[g] for g in seq]
    return derive_per_cell_genotype(cells, reductions, primitives, nodes, multiplier, **extra)


__all__ = ["GATES", "derive_from_gates", "gate_values", "per_cell_names"]
