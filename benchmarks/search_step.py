"""Time one DARTS search iteration (architecture step + weight step) and its peak memory.

    python benchmarks/search_step.py                       # the paper's supernet, orders 1 and 2, batch 64 and 32
    python benchmarks/search_step.py --orders 2 --batch-sizes 32 --out bench.json
    python benchmarks/search_step.py --quick --impl ours   # tiny shapes, a few seconds

Prints JSON on stdout and a short table on stderr. Every (implementation, order, batch size) runs in its own
process, so that its peak memory (``ru_maxrss``, or ``torch.cuda.max_memory_allocated`` on a GPU) is its own.

When ``../shared/yardstick`` exists beside the repository, the original-style DARTS step in it is timed side by
side (reference then ours for each configuration, as its README asks) and every configuration gets a speed-up
(yardstick time / our time) and a memory ratio (our peak / yardstick peak, growth over the process baseline).
The yardstick is loaded from there at run time only; nothing of it lives in this repository.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
YARDSTICK_DIR = Path(__file__).resolve().parents[2] / "shared" / "yardstick"
# Our modes: the default (channels-last, shared ReLU, no `none` work, no network copy), activation recompute
# of cells or of mixed ops (the memory-saving modes), and PC-DARTS partial channels (K=4).
OURS = {"ours": {"recompute": "ops"}, "ours-off": {"recompute": "off"}, "ours-cells": {"recompute": "cells"},
        "ours-edges": {"recompute": "edges"}, "ours-all": {"recompute": "all"},
        "ours-pc4": {"recompute": "ops", "partial_channels": 4},
        # bf16 autocast as `dartsnas search --amp bf16` runs it (weight step and first-order alpha step; the
        # second-order alpha step stays float32): meant for GPUs, runs on the CPU too
        "ours-bf16": {"recompute": "ops", "amp": "bf16"},
        # second order with the exact hypergradient (double backward) instead of the finite difference
        "ours-exact": {"hessian": "exact"}, "ours-edges-exact": {"recompute": "edges", "hessian": "exact"},
        # the library as a script gets it: SearchNetwork(space, C, 10, layers) and Architect(net, order), nothing
        # else (no memory format, no allocator tuning, NCHW inputs)
        "ours-default": {"library_default": True}}
SECOND_ORDER_ONLY = {name for name, mode in OURS.items() if "hessian" in mode}
IMPLS = (*OURS, "yardstick")
# original: the 2018 code's training network (benchmarks/original_eval.py, written from its description)
TRAIN_IMPLS = ("original", "contiguous", "channels-last", "channels-last-bf16")

# Full-size defaults (the paper's search network) and the tiny --quick ones; explicit options win over both.
DEFAULTS = dict(batch_sizes="64,32", warmup=2, iters=5, init_channels=16, layers=8, nodes=4, train_batch=96)
QUICK = dict(batch_sizes="8", warmup=1, iters=2, init_channels=4, layers=3, nodes=4, train_batch=8)


# -- options ---------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", default=None, help="comma-separated (default 64,32; --quick: 8)")
    p.add_argument("--orders", default="1,2", help="comma-separated architecture-step orders (default 1,2)")
    p.add_argument("--impl", default=None,
                   help=f"comma-separated from {','.join(IMPLS)} (default: ours, plus yardstick when "
                        f"{YARDSTICK_DIR} exists)")
    p.add_argument("--train", action="store_true",
                   help="also time training of the DARTS_V2 network (C=36, 20 layers, auxiliary head, drop "
                        "path; --quick: C=8, 5 layers), channels-last and not")
    p.add_argument("--train-batch", type=int, default=None, help="training batch size (default 96; --quick: 8)")
    p.add_argument("--train-impls", default="original,contiguous,channels-last",
                   help=f"comma-separated from {','.join(TRAIN_IMPLS)} (default original,contiguous,channels-last)")
    p.add_argument("--markdown", type=Path, default=None, help="also write a Markdown table to this file")
    p.add_argument("--mode", default="search", help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations first (default 2; --quick: 1)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations (default 5; --quick: 2)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in each worker (default 2)")
    p.add_argument("--init-channels", type=int, default=None, help="C of the supernet (default 16; --quick: 4)")
    p.add_argument("--layers", type=int, default=None, help="cells (default 8; --quick: 3)")
    p.add_argument("--nodes", type=int, default=None, help="intermediate nodes per cell (default 4)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                   help="cpu (default), cuda, or auto (cuda when available)")
    p.add_argument("--include-weight-step", action="store_true",
                   help="also time a weight step alone (after the search iterations)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every (order, batch) group this many times, the implementations interleaved "
                        "(yardstick, ours, yardstick, ours, ...); times and ratios are medians over the rounds, "
                        "each ratio taken within one round (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=0,
                   help="seconds per worker before it is killed and reported as an error (default 0: none)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    p.add_argument("--quick", action="store_true",
                   help="tiny run for tests: C=4, 3 layers, batch 8, 1 warm-up, 2 timed iterations")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",") if b.strip()]
        args.orders = [int(o) for o in str(args.orders).split(",") if o.strip()]
    except ValueError:
        p.error("--batch-sizes and --orders take comma-separated whole numbers, e.g. --batch-sizes 64,32")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        p.error("--batch-sizes needs at least one size >= 1")
    if not args.orders or any(o not in (1, 2) for o in args.orders):
        p.error("--orders takes 1 and/or 2, e.g. --orders 1,2")
    for name in ("warmup", "threads", "init_channels", "layers", "nodes"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            p.error(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
    if args.iters < 1:
        p.error("--iters must be >= 1")
    if args.rounds < 1:
        p.error("--rounds must be >= 1")

    if args.impl is None:
        args.impl = ["ours"] + (["yardstick"] if YARDSTICK_DIR.is_dir() else [])
    else:
        args.impl = [i.strip() for i in args.impl.split(",") if i.strip()]
        unknown = [i for i in args.impl if i not in IMPLS]
        if args.worker and args.mode == "train":
            unknown = [i for i in args.impl if i not in TRAIN_IMPLS]
        if unknown or not args.impl:
            p.error(f"--impl: unknown {', '.join(unknown) or '(empty)'}; known: {', '.join(IMPLS)}")
        if "yardstick" in args.impl and not YARDSTICK_DIR.is_dir():
            p.error(f"--impl yardstick needs {YARDSTICK_DIR}, which is not there")
    args.train_impls = [i.strip() for i in args.train_impls.split(",") if i.strip()]
    if not args.train_impls or any(i not in TRAIN_IMPLS for i in args.train_impls):
        p.error(f"--train-impls takes {', '.join(TRAIN_IMPLS)}, comma-separated")
    # The reference first in each group, as the yardstick README asks.
    if not (args.worker and args.mode == "train"):
        args.impl = [i for i in ("yardstick", *OURS) if i in args.impl]
    return args


# -- the worker: one implementation, one order, one batch size ----------------------------------------------------
def _maxrss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def _warm_torch() -> None:
    """Run torch's lazily loaded machinery once before the memory baseline: the first optimizer step imports
    ``torch._dynamo`` (about 150 MiB of RSS on torch 2.14), which either implementation would pay and which has
    nothing to do with the configuration being measured."""
    import torch

    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.ones(4)
    torch.optim.SGD([p], 0.1, momentum=0.9, weight_decay=1e-4).step()
    torch.optim.Adam([p], 1e-3, betas=(0.5, 0.999), weight_decay=1e-3).step()
    torch.nn.utils.clip_grad_norm_([p], 5.0)


def _import_impl(impl: str):
    if impl == "yardstick":
        if str(YARDSTICK_DIR) not in sys.path:
            sys.path.insert(0, str(YARDSTICK_DIR))
        import refdarts

        return refdarts
    import dartsnas

    return dartsnas


def _build(impl: str, args: argparse.Namespace, order: int, device):
    """(network, weight optimizer, search_step, weight_step) for one implementation."""
    import torch

    if impl == "yardstick":
        refdarts = _import_impl("yardstick")
        net = refdarts.Network(args.init_channels, 10, args.layers, args.nodes, args.nodes).to(device)
        w_opt = torch.optim.SGD(net.weights(), 0.025, momentum=0.9, weight_decay=3e-4)
        arch = refdarts.Architect(net, order=order)

        def arch_step(xt, yt, xv, yv):
            arch.step(xt, yt, xv, yv, 0.025, w_opt)

        def weight_step(x, y):  # as the 2018 code does it (the alpha gradients are computed too)
            w_opt.zero_grad()
            net.loss(x, y).backward()
            torch.nn.utils.clip_grad_norm_(net.weights(), 5.0)
            w_opt.step()
    else:
        from dartsnas import Architect, SearchNetwork, SearchSpace
        from dartsnas.engine.common import autocast
        from dartsnas.engine.search import weight_backward
        from dartsnas.process import tune_malloc

        mode = dict(OURS[impl])
        library_default = mode.pop("library_default", False)
        if device.type == "cpu" and not library_default:
            tune_malloc()  # as dartsnas search does on the CPU

        space = SearchSpace(nodes=args.nodes, multiplier=args.nodes)
        hessian = mode.pop("hessian", "finite-difference")
        amp = torch.bfloat16 if mode.pop("amp", None) == "bf16" else None
        net = SearchNetwork(space, C=args.init_channels, num_classes=10, layers=args.layers, **mode).to(device)
        w_opt = torch.optim.SGD(net.weights(), 0.025, momentum=0.9, weight_decay=3e-4)
        if library_default:
            arch = Architect(net, order=order)
        else:
            arch = Architect(net, order=order, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3, hessian=hessian)

        def arch_step(xt, yt, xv, yv):
            with autocast(device, amp if order == 1 else None):
                arch.step((xt, yt), (xv, yv), w_opt)

        def weight_step(x, y):  # as dartsnas.engine.search does it: no alpha gradient in the weight step
            w_opt.zero_grad(set_to_none=True)
            weight_backward(net, x, y, device, amp)
            torch.nn.utils.clip_grad_norm_(net.weights(), 5.0)
            w_opt.step()

    net.train()
    n_weights = sum(p.numel() for p in net.weights())
    return net, n_weights, arch_step, weight_step


def run_worker(args: argparse.Namespace) -> dict:
    import torch

    impl, order, batch = args.impl[0], args.orders[0], args.batch_sizes[0]
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    # The same inputs for every implementation: a fresh random batch per iteration (one batch repeated over-fits
    # and drifts into denormals), all made before timing so that the RNG is not timed.
    gen = torch.Generator().manual_seed(args.seed)
    n_batches = args.warmup + args.iters

    fmt = torch.contiguous_format if impl in ("yardstick", "ours-default") else torch.channels_last

    def make_batch():
        return (torch.randn(batch, 3, 32, 32, generator=gen).to(device, memory_format=fmt),
                torch.randint(0, 10, (batch,), generator=gen).to(device))

    batches = [(make_batch(), make_batch()) for _ in range(n_batches)]
    _warm_torch()
    _import_impl(impl)  # module imports are not part of the configuration's memory either
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats(device)
        cuda_base = torch.cuda.memory_allocated(device)
    rss_base = _maxrss_mib()

    torch.manual_seed(args.seed)
    net, n_weights, arch_step, weight_step = _build(impl, args, order, device)

    times, arch_times = [], []
    for i, ((xt, yt), (xv, yv)) in enumerate(batches):
        sync()
        t0 = time.perf_counter()
        arch_step(xt, yt, xv, yv)
        sync()
        t1 = time.perf_counter()
        weight_step(xt, yt)
        sync()
        t2 = time.perf_counter()
        if i >= args.warmup:
            times.append(t2 - t0)
            arch_times.append(t1 - t0)

    median = statistics.median(times)
    result = {
        "impl": impl, "order": order, "batch": batch,
        "median_s": median, "min_s": min(times), "times_s": times,
        "arch_step_median_s": statistics.median(arch_times),
        "images_per_s": batch / median,
        "peak_rss_mib": _maxrss_mib(), "peak_rss_delta_mib": _maxrss_mib() - rss_base,
        "weights": n_weights,
    }
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        result.update(peak_cuda_mib=peak, peak_cuda_delta_mib=peak - cuda_base / 2**20)

    if args.include_weight_step:  # after the peak above was read: it is the search iteration's alone
        w_times = []
        for i in range(n_batches):
            (xt, yt), _ = batches[i % len(batches)]
            sync()
            t0 = time.perf_counter()
            weight_step(xt, yt)
            sync()
            if i >= args.warmup:
                w_times.append(time.perf_counter() - t0)
        result.update(weight_step_median_s=statistics.median(w_times), weight_step_min_s=min(w_times),
                      weight_step_times_s=w_times)
    return result


def run_train_worker(args: argparse.Namespace) -> dict:
    """Training throughput of the DARTS_V2 network as ``dartsnas train`` runs it (SGD, auxiliary head 0.4,
    drop path 0.2, clip 5), channels-last or not, in float32 or under bf16 autocast
    (``--impl contiguous|channels-last|channels-last-bf16``)."""
    import torch
    import torch.nn.functional as F

    from dartsnas.engine.common import autocast
    from dartsnas.genotype import load_genotype
    from dartsnas.network import EvalNetwork
    from dartsnas.process import tune_malloc

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    original = args.impl[0] == "original"
    if device.type == "cpu" and not original:
        tune_malloc()  # as dartsnas train does on the CPU
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fmt = torch.channels_last if args.impl[0].startswith("channels-last") else torch.contiguous_format
    amp = torch.bfloat16 if args.impl[0].endswith("-bf16") else None
    C, layers = (8, 5) if args.quick else (36, 20)
    batch = args.train_batch
    gen = torch.Generator().manual_seed(args.seed)
    batches = [(torch.randn(batch, 3, 32, 32, generator=gen).to(device, memory_format=fmt),
                torch.randint(0, 10, (batch,), generator=gen).to(device)) for _ in range(args.warmup + args.iters)]
    _warm_torch()
    rss_base = _maxrss_mib()
    torch.manual_seed(args.seed)
    if original:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from original_eval import NetworkCIFAR

        net = NetworkCIFAR(load_genotype("DARTS_V2"), C, 10, layers, True).to(device).train()
    else:
        net = EvalNetwork(load_genotype("DARTS_V2"), C, 10, layers, True).to(device, memory_format=fmt).train()
    net.drop_path_prob = 0.2
    opt = torch.optim.SGD(net.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    times = []
    for i, (x, y) in enumerate(batches):
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast(device, amp):
            logits, aux = net(x)
        loss = F.cross_entropy(logits.float(), y) + 0.4 * F.cross_entropy(aux.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"impl": args.impl[0], "mode": "train", "batch": batch, "init_channels": C, "layers": layers,
            "median_s": median, "min_s": min(times), "times_s": times, "images_per_s": batch / median,
            "peak_rss_mib": _maxrss_mib(), "peak_rss_delta_mib": _maxrss_mib() - rss_base}


def worker_main(args: argparse.Namespace) -> int:
    try:
        result = run_train_worker(args) if args.mode == "train" else run_worker(args)
        code = 0
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result = {"error": f"{type(exc).__name__}: {message}"[:500]}
        code = 1
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return code


# -- the parent: one subprocess per configuration, then ratios -----------------------------------------------------
def _worker_command(args: argparse.Namespace, impl: str, order: int, batch: int, device: str) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker",
           "--impl", impl, "--orders", str(order), "--batch-sizes", str(batch),
           "--warmup", str(args.warmup), "--iters", str(args.iters), "--threads", str(args.threads),
           "--init-channels", str(args.init_channels), "--layers", str(args.layers), "--nodes", str(args.nodes),
           "--device", device, "--seed", str(args.seed)]
    if args.include_weight_step:
        cmd.append("--include-weight-step")
    if args.quick:
        cmd.append("--quick")
    return cmd


def run_config(args: argparse.Namespace, impl: str, order: int, batch: int, device: str,
               mode: str = "search") -> dict:
    entry = {"impl": impl, "order": order, "batch": batch} if mode == "search" else {"impl": impl, "mode": mode}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    cmd = _worker_command(args, impl, order, batch, device)
    if mode == "train":
        cmd += ["--mode", "train", "--train-batch", str(args.train_batch)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env,
                              timeout=args.timeout or None)
    except subprocess.TimeoutExpired:
        return {**entry, "error": f"timed out after {args.timeout:g} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        result = None
    if isinstance(result, dict) and (proc.returncode == 0 or "error" in result):
        return {**entry, **result}
    if proc.returncode < 0:
        why = f"killed by signal {-proc.returncode}" + (" (out of memory?)" if proc.returncode == -9 else "")
    else:
        err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        why = f"exit code {proc.returncode}: " + (err[-1].strip() if err else "no output")
    return {**entry, "error": why[:500]}


def _ratios(results: list[dict], orders: list[int], batches: list[int], cuda: bool) -> list[dict]:
    """Each of our modes against the yardstick at the same order and batch size: each ratio taken within one
    round (the two runs side by side), then the median over the rounds."""
    by_key = {(r["impl"], r["order"], r["batch"], r.get("round", 0)): r
              for r in results if "error" not in r and "order" in r}
    rounds = sorted({k[3] for k in by_key})
    mem_key = "peak_cuda_delta_mib" if cuda else "peak_rss_delta_mib"
    out = []
    for order in orders:
        for batch in batches:
            for impl in OURS:
                pairs = [(by_key[("yardstick", order, batch, n)], by_key[(impl, order, batch, n)]) for n in rounds
                         if ("yardstick", order, batch, n) in by_key and (impl, order, batch, n) in by_key]
                if not pairs:
                    continue
                speed = [ref["median_s"] / ours["median_s"] for ref, ours in pairs]
                memory = [ours[mem_key] / ref[mem_key] for ref, ours in pairs if ref[mem_key] > 0]
                row = {"impl": impl, "order": order, "batch": batch, "rounds": len(pairs),
                       "speedup_vs_yardstick": statistics.median(speed), "speedup_per_round": speed,
                       "memory_ratio_vs_yardstick": statistics.median(memory) if memory else None,
                       "memory_metric": mem_key,
                       "peak_rss_ratio_vs_yardstick": statistics.median(
                           [ours["peak_rss_mib"] / ref["peak_rss_mib"] for ref, ours in pairs])}
                weight = [ref["weight_step_median_s"] / ours["weight_step_median_s"] for ref, ours in pairs
                          if "weight_step_median_s" in ref and "weight_step_median_s" in ours]
                if weight:
                    row["weight_step_speedup_vs_yardstick"] = statistics.median(weight)
                out.append(row)
    return out


def _train_ratios(results: list[dict]) -> list[dict]:
    """Each training mode against the original-style network: images per second and peak RSS, each ratio taken
    within one round, then the median over the rounds."""
    by_key = {(r["impl"], r.get("round", 0)): r for r in results if r.get("mode") == "train" and "error" not in r}
    out = []
    for impl in TRAIN_IMPLS[1:]:
        pairs = [(by_key[("original", n)], by_key[(impl, n)]) for (i, n) in by_key
                 if i == impl and ("original", n) in by_key]
        if pairs:
            out.append({"impl": impl, "rounds": len(pairs),
                        "speedup_vs_original": statistics.median(o["images_per_s"] / ref["images_per_s"]
                                                                 for ref, o in pairs),
                        "peak_rss_ratio_vs_original": statistics.median(o["peak_rss_mib"] / ref["peak_rss_mib"]
                                                                        for ref, o in pairs)})
    return out


def summarize(results: list[dict]) -> list[dict]:
    """One entry per (implementation, order, batch): the median over rounds of each round's median time (and
    weight-step time), the highest peak memory, the median memory growth; errors as they came."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        if "order" in r:
            groups.setdefault((r["impl"], r["order"], r["batch"]), []).append(r)
    out = []
    for (impl, order, batch), runs in groups.items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            out.append({"impl": impl, "order": order, "batch": batch, "error": runs[0]["error"]})
            continue
        entry = {"impl": impl, "order": order, "batch": batch, "rounds": len(ok),
                 "median_s": statistics.median(r["median_s"] for r in ok),
                 "peak_rss_mib": max(r["peak_rss_mib"] for r in ok),
                 "peak_rss_delta_mib": statistics.median(r["peak_rss_delta_mib"] for r in ok)}
        if all("weight_step_median_s" in r for r in ok):
            entry["weight_step_median_s"] = statistics.median(r["weight_step_median_s"] for r in ok)
        if all("peak_cuda_mib" in r for r in ok):
            entry["peak_cuda_mib"] = max(r["peak_cuda_mib"] for r in ok)
            entry["peak_cuda_delta_mib"] = statistics.median(r["peak_cuda_delta_mib"] for r in ok)
        out.append(entry)
    return out


def markdown(report: dict) -> str:
    """The report as Markdown tables (search against the yardstick, then training throughput)."""
    m = report["machine"]
    cuda = m["device"].startswith("cuda")
    rounds = report["config"].get("rounds", 1)
    over = (f"; the median of {rounds} interleaved rounds, each ratio taken within a round" if rounds > 1 else "")
    lines = [f"Machine: {m.get('device_name', m['processor'])}, {m['cpu_count']} CPUs, {m['threads']} threads, "
             f"torch {m['torch']}, {m['device']}. Median of {report['config']['iters']} iterations after "
             f"{report['config']['warmup']} warm-up(s){over}; C={report['config']['init_channels']}, "
             f"{report['config']['layers']} layers, {report['config']['nodes']} nodes, 3x32x32 inputs."
             + (f" C kernels: {'on' if 'off' not in m['native_kernels'] else m['native_kernels']}."
                if "native_kernels" in m else ""), "",
             "| mode | order | batch | s / iteration | speed-up | weight step alone (s) | peak memory (MiB) "
             "| memory growth ratio |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    ratios = {(q["impl"], q["order"], q["batch"]): q for q in report["ratios"]}
    for r in report.get("summary") or summarize(report["results"]):
        if "error" in r:
            lines.append(f"| {r['impl']} | {r['order']} | {r['batch']} | error: {r['error']} | | | | |")
            continue
        q = ratios.get((r["impl"], r["order"], r["batch"]), {})
        peak = r["peak_cuda_mib"] if cuda else r["peak_rss_mib"]
        speed = "1 (reference)" if r["impl"] == "yardstick" else _fmt(q.get("speedup_vs_yardstick"), ".2f")
        memr = "1 (reference)" if r["impl"] == "yardstick" else _fmt(q.get("memory_ratio_vs_yardstick"), ".2f")
        weight = _fmt(r.get("weight_step_median_s"), ".2f")
        lines.append(f"| {r['impl']} | {r['order']} | {r['batch']} | {r['median_s']:.2f} | {speed} | {weight} "
                     f"| {peak:.0f} | {memr} |")
    train = [r for r in report["results"] if r.get("mode") == "train"]
    if train:
        tr = {q["impl"]: q for q in report.get("train_ratios", [])}
        lines += ["", "| training (DARTS_V2) | round | batch | s / step | images / s | peak memory (MiB) "
                  "| speed-up vs original (median) | peak memory vs original (median) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in train:
            if "error" in r:
                lines.append(f"| {r['impl']} | {r.get('round', 0)} | | error: {r['error']} | | | | |")
                continue
            q = tr.get(r["impl"], {})
            ref = r["impl"] == "original"
            lines.append(f"| {r['impl']}, C={r['init_channels']}, {r['layers']} layers | {r.get('round', 0)} | "
                         f"{r['batch']} | {r['median_s']:.2f} | {r['images_per_s']:.1f} | {r['peak_rss_mib']:.0f} | "
                         f"{'1 (reference)' if ref else _fmt(q.get('speedup_vs_original'), '.2f')} | "
                         f"{'1 (reference)' if ref else _fmt(q.get('peak_rss_ratio_vs_original'), '.2f')} |")
    return "\n".join(lines) + "\n"


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(report: dict, file=sys.stderr) -> None:
    cuda = report["machine"]["device"].startswith("cuda")
    mem = "cuda MiB" if cuda else "RSS MiB"
    print(f"{'impl':<10} {'order':>5} {'batch':>5} {'median s':>9} {'min s':>8} {'img/s':>7} "
          f"{'peak ' + mem:>14} {'growth':>8}", file=file)
    for r in report["results"]:
        if r.get("mode") == "train":
            continue
        head = f"{r['impl']:<10} {r['order']:>5} {r['batch']:>5}"
        if "error" in r:
            print(f"{head}  error: {r['error']}", file=file)
            continue
        peak = r["peak_cuda_mib"] if cuda else r["peak_rss_mib"]
        growth = r["peak_cuda_delta_mib"] if cuda else r["peak_rss_delta_mib"]
        print(f"{head} {r['median_s']:>9.3f} {r['min_s']:>8.3f} {r['images_per_s']:>7.1f} {peak:>14.0f} "
              f"{growth:>8.0f}", file=file)
    for q in report["ratios"]:
        print(f"{q['impl']} order {q['order']} batch {q['batch']}: {_fmt(q['speedup_vs_yardstick'], '.2f')}x "
              f"faster than the yardstick, memory growth {_fmt(q['memory_ratio_vs_yardstick'], '.2f')}x of its",
              file=file)
    for r in report["results"]:
        if r.get("mode") == "train" and "error" not in r:
            print(f"train {r['impl']}: {r['images_per_s']:.1f} images/s, {r['median_s']:.2f} s/step", file=file)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)

    import torch

    if args.device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available here; use --device cpu or auto", file=sys.stderr)
        return 2
    else:
        device = args.device
    machine = {"platform": platform.platform(), "python": platform.python_version(),
               "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
               "torch": torch.__version__, "threads": args.threads, "device": device}
    if device == "cuda":
        machine["device_name"] = torch.cuda.get_device_name(0)
    else:
        from dartsnas.ops import native  # the C kernels the CPU search step uses, or why not

        machine["native_kernels"] = native.status()
    config = {"impls": args.impl, "orders": args.orders, "batch_sizes": args.batch_sizes,
              "warmup": args.warmup, "iters": args.iters, "init_channels": args.init_channels,
              "layers": args.layers, "nodes": args.nodes, "num_classes": 10, "input": [3, 32, 32],
              "include_weight_step": args.include_weight_step, "seed": args.seed, "quick": args.quick,
              "rounds": args.rounds,
              "train": args.train, "train_batch": args.train_batch, "train_impls": args.train_impls,
              "yardstick": str(YARDSTICK_DIR) if "yardstick" in args.impl else None,
              "timed": "architecture step + weight step (median over iterations, each on a fresh random batch)",
              "images_per_s": "training images per second of search (each iteration also uses one validation batch)"}

    results = []

    def save_partial():  # after every configuration: a run cut short (a time limit) keeps what it measured
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            partial = {"machine": machine, "config": config, "results": results, "partial": True}
            args.out.write_text(json.dumps(partial, indent=2) + "\n")

    for order in args.orders:
        for batch in args.batch_sizes:
            for rnd in range(args.rounds):
                for impl in args.impl:  # yardstick first, then ours: a noisy minute hurts both sides of a pair
                    if order == 1 and impl in SECOND_ORDER_ONLY:
                        continue
                    tag = f" (round {rnd + 1}/{args.rounds})" if args.rounds > 1 else ""
                    print(f"[bench] {impl} order {order} batch {batch}{tag} ...", file=sys.stderr, flush=True)
                    r = {**run_config(args, impl, order, batch, device), "round": rnd}
                    results.append(r)
                    save_partial()
                    print("[bench]   " + (f"error: {r['error']}" if "error" in r else
                                           f"median {r['median_s']:.3f} s, peak RSS {r['peak_rss_mib']:.0f} MiB"),
                          file=sys.stderr, flush=True)

    if args.train:  # interleaved as the search: original, ours, original, ours
        for rnd, impl in ((rnd, impl) for rnd in range(args.rounds) for impl in args.train_impls):
            print(f"[bench] train {impl} batch {args.train_batch} ...", file=sys.stderr, flush=True)
            r = {**run_config(args, impl, 1, args.train_batch, device, mode="train"), "round": rnd}
            results.append(r)
            save_partial()
            print("[bench]   " + (f"error: {r['error']}" if "error" in r else f"{r['images_per_s']:.1f} images/s"),
                  file=sys.stderr, flush=True)

    report = {"machine": machine, "config": config, "results": results, "summary": summarize(results),
              "ratios": _ratios(results, args.orders, args.batch_sizes, device == "cuda"),
              "train_ratios": _train_ratios(results)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(report))
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
