"""``dartsnas hypergrad-check``: how far the paper's finite-difference hypergradient is from the exact one on a
user's own search space and data.

For each of a few real (training, validation) batch pairs it computes the second-order alpha gradient three
ways, on the same network and weight optimizer state: exactly (autograd through the virtual step), by the
paper's central difference at ``w +- R v`` for each radius asked, and to first order; and reports the relative
difference ``||g - g_exact|| / ||g_exact||`` of each, with the time each took.
"""
from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from ..architect import Architect
from ..config import SearchConfig
from ..errors import ConfigError

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _rel(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    num = sum(float((x.double() - y.double()).pow(2).sum()) for x, y in zip(a, b)) ** 0.5
    den = sum(float(y.double().pow(2).sum()) for y in b) ** 0.5
    return num / den if den > 0 else float("nan")


# the search config's fields the check reads (the network, the data, the weight optimizer, the process; lr_min
# only because the config checks it against lr); the alpha optimizer, derivation and run options do not apply
CHECK_FIELDS = frozenset({
    "device", "workers", "threads", "download", "deterministic", "dataset", "data", "batch_size", "layers",
    "init_channels", "nodes", "multiplier", "stem_multiplier", "space", "primitives", "ops_module", "approx_table",
    "alphas", "gates", "partial_channels", "recompute", "channels_last", "lr", "lr_min", "momentum", "weight_decay",
    "train_portion", "seed"})


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def hypergradient_check(cfg: SearchConfig, *, batches: int = 5, dtypes: Sequence[str] = ("float32", "float64"),
                        radii: Sequence[float] = (0.01,), weight_steps: int = 1,
                        show_progress: bool = False) -> dict[str, Any]:
    """Relative differences of the finite-difference (per radius) and first-order hypergradients from the
    exact one, over ``batches`` batch pairs, for each dtype. ``weight_steps`` SGD steps on training batches come
    first, so that the momentum buffer the virtual step reads is a real one."""
    from .search import Search

    if batches < 1:
        raise ConfigError(f"--batches must be >= 1, got {batches}")
    if weight_steps < 0:
        raise ConfigError(f"--weight-steps must be >= 0, got {weight_steps}")
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown or not dtypes:
        raise ConfigError(f"--dtypes: choose from {', '.join(DTYPES)}, got {','.join(dtypes)}")
    if not radii or any(r <= 0 for r in radii):
        raise ConfigError(f"--radii must be positive numbers, got {','.join(map(str, radii))}")
    search = Search(cfg, show_progress=show_progress)
    device = search.device
    pairs, train_iter, val_iter = [], iter(search.train_loader), iter(search.val_loader)
    warm = []
    try:
        for _ in range(weight_steps):
            warm.append(next(train_iter))
        for _ in range(batches):
            pairs.append((next(train_iter), next(val_iter)))
    except StopIteration:
        raise ConfigError(f"the data has too few batches of {cfg.batch_size} for {weight_steps} weight steps and "
                          f"{batches} batch pairs; lower --batch-size, --batches or --weight-steps") from None
    results: dict[str, Any] = {"config": {k: v for k, v in cfg.to_dict().items() if k != "out"},
                               "batches": batches, "weight_steps": weight_steps, "radii": list(radii), "runs": []}
    for name in dtypes:
        dtype = DTYPES[name]
        net = copy.deepcopy(search.network).to(dtype)
        net.train()
        opt = torch.optim.SGD(net.weights(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        for x, y in warm:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x.to(device, dtype)), y.to(device)).backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
        exact_arch = Architect(net, order=2, hessian="exact")
        first_arch = Architect(net, order=1)
        fd_archs = {r: Architect(net, order=2, fd_radius=r) for r in radii}
        rows = []
        for i, ((x, y), (xv, yv)) in enumerate(pairs):
            train = (x.to(device, dtype), y.to(device))
            val = (xv.to(device, dtype), yv.to(device))
            exact, t_exact = _timed(exact_arch.hypergradient, train, val, opt)
            row = {"batch": i, "exact_seconds": t_exact,
                   "exact_norm": sum(float(g.double().pow(2).sum()) for g in exact) ** 0.5}
            for r, arch in fd_archs.items():
                fd, t_fd = _timed(arch.hypergradient, train, val, opt)
                row[f"fd_{r:g}"] = _rel(fd, exact)
                row[f"fd_{r:g}_seconds"] = t_fd
            first, t_first = _timed(first_arch.hypergradient, train, val, opt)
            row["first_order"] = _rel(first, exact)
            row["first_order_seconds"] = t_first
            rows.append(row)
            logger.info("%s batch %d/%d: %s", name, i + 1, batches,
                        "  ".join(f"finite difference R={r:g}: {row[f'fd_{r:g}']:.3g}" for r in radii) +
                        f"  first order: {row['first_order']:.3g}")
        summary = {"dtype": name, "rows": rows, "exact_seconds": statistics.median(r["exact_seconds"] for r in rows),
                   "first_order": statistics.median(r["first_order"] for r in rows)}
        for r in radii:
            summary[f"fd_{r:g}"] = statistics.median(row[f"fd_{r:g}"] for row in rows)
            summary[f"fd_{r:g}_seconds"] = statistics.median(row[f"fd_{r:g}_seconds"] for row in rows)
        results["runs"].append(summary)
    return results


def format_check(results: dict[str, Any]) -> str:
    """A table: per dtype, the median relative difference from the exact hypergradient and the median time."""
    lines = ["hypergradient vs the exact one (autograd through the virtual step): median relative difference "
             f"||g - g_exact|| / ||g_exact|| over {results['batches']} batch pairs, median seconds per hypergradient",
             ""]
    head = ["dtype", "method", "rel. difference", "min", "max", "seconds"]
    table = []
    for run in results["runs"]:
        rows = run["rows"]
        table.append([run["dtype"], "exact", "0", "", "", f"{run['exact_seconds']:.2f}"])
        for r in results["radii"]:
            vals = [row[f"fd_{r:g}"] for row in rows]
            table.append([run["dtype"], "finite difference R=0.01/||v||" if r == 0.01 else
                          f"finite difference R={r:g}/||v||", f"{statistics.median(vals):.3g}", f"{min(vals):.3g}",
                          f"{max(vals):.3g}", f"{run[f'fd_{r:g}_seconds']:.2f}"])
        vals = [row["first_order"] for row in rows]
        table.append([run["dtype"], "first order", f"{statistics.median(vals):.3g}", f"{min(vals):.3g}",
                      f"{max(vals):.3g}", f"{statistics.median(row['first_order_seconds'] for row in rows):.2f}"])
    widths = [max(len(str(c)) for c in col) for col in zip(head, *table)]
    for row in (head, *table):
        lines.append("  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in
                               enumerate(zip(row, widths))).rstrip())
    return "\n".join(lines)
