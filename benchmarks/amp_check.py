"""bf16 autocast against float32, correctness first: a few search steps and a few training steps from the same
start on the same batches, once in float32 and once under bf16 autocast, both channels-last.

What is compared, as ``dartsnas search --amp bf16`` and ``dartsnas train --amp bf16`` run:

- search: the alpha step (first order under autocast; second order stays float32 as the search engine keeps
  it, its finite difference being below bf16's resolution) and the weight step under autocast. Reported: the
  alpha gradient of the first step from the same start (cosine similarity of the two precisions' gradients,
  per alpha tensor), the loss of each step in both precisions, how the alphas moved in each (cosine similarity
  of the two movements; Adam's first steps move each alpha by about lr * sign(gradient), so the small
  gradients whose sign bf16 rounding flips weigh as much as the large ones: a noisy measure over few steps)
  and whether the derived genotypes agree (after a few steps the alphas are still nearly uniform, so they
  often do not: reported, not checked);
- training: the DARTS_V2 network with auxiliary head and drop path, its loss per step in both precisions.

Each run's median step time is reported too, so on a GPU the one command gives the fp32 and bf16 figures.
A check passes when every first-step alpha gradient has a cosine similarity above ``--min-cosine`` (0.9)
between the precisions, the losses are finite, and the mean loss of the last half of the steps differs by at
most ``--max-loss-rel`` (5%).

    python benchmarks/amp_check.py --device cuda --out amp.json --markdown amp.md
    python benchmarks/amp_check.py --quick            # a tiny CPU run (seconds)

The exit status is 0 when every check passes, 1 when one fails, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto", help="default: cuda when available")
    p.add_argument("--order", type=int, choices=(1, 2), default=1, help="alpha step order (default 1)")
    p.add_argument("--steps", type=int, default=None, help="search steps (default 20; --quick: 4)")
    p.add_argument("--batch", type=int, default=None, help="search batch (default 64; --quick: 16)")
    p.add_argument("--init-channels", type=int, default=None, help="supernet C (default 16; --quick: 4)")
    p.add_argument("--layers", type=int, default=None, help="supernet cells (default 8; --quick: 3)")
    p.add_argument("--train-steps", type=int, default=None, help="training steps (default 20; --quick: 4; 0: none)")
    p.add_argument("--train-batch", type=int, default=None, help="training batch (default 96; --quick: 8)")
    p.add_argument("--min-cosine", type=float, default=0.9)
    p.add_argument("--max-loss-rel", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads on the CPU (0: leave it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny networks and few steps")
    p.add_argument("--out", type=Path, help="write the JSON report here")
    p.add_argument("--markdown", type=Path, help="write a Markdown table here")
    args = p.parse_args(argv)
    defaults = dict(steps=(4, 20), batch=(16, 64), init_channels=(4, 16), layers=(3, 8), train_steps=(4, 20),
                    train_batch=(8, 96))
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    for name in ("steps", "batch", "init_channels", "layers", "train_batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.train_steps < 0:
        p.error("--train-steps must be 0 or more")
    return args


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(n: int, batch: int, device, seed: int):
    import torch

    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, 32, 32, generator=gen).to(device, memory_format=torch.channels_last),
             torch.randint(0, 10, (batch,), generator=gen).to(device)) for _ in range(n)]


def search_run(args: argparse.Namespace, device, bf16: bool) -> dict:
    """``steps`` search iterations (alpha step, then weight step) as the search engine runs them."""
    import torch

    from dartsnas import Architect, SearchNetwork, SearchSpace
    from dartsnas.engine.common import autocast
    from dartsnas.engine.search import weight_backward

    amp = torch.bfloat16 if bf16 else None
    torch.manual_seed(args.seed)
    net = SearchNetwork(SearchSpace(), C=args.init_channels, num_classes=10, layers=args.layers, recompute="ops")
    net.to(device, memory_format=torch.channels_last).train()
    w_opt = torch.optim.SGD(net.weights(), 0.025, momentum=0.9, weight_decay=3e-4)
    arch = Architect(net, order=args.order, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    start = [a.detach().clone() for a in net.alphas()]
    train = _batches(args.steps, args.batch, device, args.seed + 1)
    val = _batches(args.steps, args.batch, device, args.seed + 2)
    with autocast(device, amp if args.order == 1 else None):  # changes nothing: BN statistics are copies
        first_grad = [g.detach().float().cpu() for g in arch.hypergradient(train[0], val[0], w_opt)]
    losses, arch_losses, times = [], [], []
    for (x, y), (xv, yv) in zip(train, val):
        _sync(device)
        t0 = time.perf_counter()
        with autocast(device, amp if args.order == 1 else None):
            arch_losses.append(arch.step((x, y), (xv, yv), w_opt)["arch_loss"])
        w_opt.zero_grad(set_to_none=True)
        loss, _ = weight_backward(net, x, y, device, amp)  # as the search engine's weight step
        torch.nn.utils.clip_grad_norm_(net.weights(), 5.0)
        w_opt.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
        losses.append(float(loss))
    moved = [(a.detach() - s).float().cpu() for a, s in zip(net.alphas(), start)]
    return {"losses": losses, "arch_losses": arch_losses, "times_s": times, "moved": moved,
            "first_grad": first_grad, "genotype": str(net.genotype())}


def train_run(args: argparse.Namespace, device, bf16: bool) -> dict:
    """``train_steps`` steps of the DARTS_V2 network as ``dartsnas train`` runs them."""
    import torch
    import torch.nn.functional as F

    from dartsnas.engine.common import autocast
    from dartsnas.genotype import load_genotype
    from dartsnas.network import EvalNetwork

    C, layers = (8, 5) if args.quick else (36, 20)
    torch.manual_seed(args.seed)
    net = EvalNetwork(load_genotype("DARTS_V2"), C, 10, layers, True)
    net.to(device, memory_format=torch.channels_last).train()
    net.drop_path_prob = 0.2
    opt = torch.optim.SGD(net.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    batches = _batches(args.train_steps, args.train_batch, device, args.seed + 3)
    losses, times = [], []
    for i, (x, y) in enumerate(batches):
        torch.manual_seed(args.seed + 100 + i)  # the same drop-path masks in both precisions
        _sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast(device, torch.bfloat16 if bf16 else None):
            logits, aux = net(x)
        loss = F.cross_entropy(logits.float(), y) + 0.4 * F.cross_entropy(aux.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    return {"losses": losses, "times_s": times}


def _late_mean(values: list[float]) -> float:
    tail = values[len(values) // 2:] or values
    return sum(tail) / len(tail)


def _median_after_first(times: list[float]) -> float:
    return statistics.median(times[1:] if len(times) > 1 else times)  # the first step warms up


def compare(args: argparse.Namespace, search32: dict, search16: dict, train32: dict | None,
            train16: dict | None) -> dict:
    import torch

    def cosines(key):
        return [float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))
                for a, b in zip(search32[key], search16[key])]

    grad_cos, moved_cos = cosines("first_grad"), cosines("moved")
    loss32, loss16 = _late_mean(search32["losses"]), _late_mean(search16["losses"])
    search_rel = abs(loss16 - loss32) / max(abs(loss32), 1e-12)
    report = {
        "search": {
            "order": args.order, "steps": args.steps, "batch": args.batch,
            "loss_fp32": search32["losses"], "loss_bf16": search16["losses"],
            "arch_loss_fp32": search32["arch_losses"], "arch_loss_bf16": search16["arch_losses"],
            "late_loss_rel_diff": search_rel, "first_alpha_grad_cosine": grad_cos,
            "alpha_movement_cosine": moved_cos,
            "genotype_fp32": search32["genotype"], "genotype_bf16": search16["genotype"],
            "same_genotype": search32["genotype"] == search16["genotype"],
            "step_s_fp32": _median_after_first(search32["times_s"]),
            "step_s_bf16": _median_after_first(search16["times_s"]),
            "ok": all(c > args.min_cosine for c in grad_cos) and search_rel <= args.max_loss_rel
            and all(math.isfinite(v) for v in search16["losses"]),
        },
    }
    if train32 is not None:
        t32, t16 = _late_mean(train32["losses"]), _late_mean(train16["losses"])
        rel = abs(t16 - t32) / max(abs(t32), 1e-12)
        s32, s16 = _median_after_first(train32["times_s"]), _median_after_first(train16["times_s"])
        report["train"] = {
            "steps": args.train_steps, "batch": args.train_batch,
            "loss_fp32": train32["losses"], "loss_bf16": train16["losses"], "late_loss_rel_diff": rel,
            "step_s_fp32": s32, "step_s_bf16": s16,
            "images_per_s_fp32": args.train_batch / s32, "images_per_s_bf16": args.train_batch / s16,
            "ok": rel <= args.max_loss_rel and all(math.isfinite(v) for v in train16["losses"]),
        }
    report["ok"] = all(part["ok"] for part in report.values() if isinstance(part, dict))
    return report


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"Device: {m['device']}; torch {m['torch']}; channels-last; "
             f"{'quick (tiny networks)' if m['quick'] else 'C=16, 8 cells (search), C=36, 20 layers (training)'}.",
             "", "| part | steps | batch | late loss fp32 | late loss bf16 | rel. diff | first alpha gradient cosine "
             "(min) | alpha movement cosine (min) | same genotype | s/step fp32 | s/step bf16 | check |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    s = report["search"]
    lines.append(f"| search (order {s['order']}) | {s['steps']} | {s['batch']} | {_late_mean(s['loss_fp32']):.4f} | "
                 f"{_late_mean(s['loss_bf16']):.4f} | {s['late_loss_rel_diff']:.2%} | "
                 f"{min(s['first_alpha_grad_cosine']):.4f} | {min(s['alpha_movement_cosine']):.3f} | "
                 f"{'yes' if s['same_genotype'] else 'no'} | "
                 f"{s['step_s_fp32']:.3f} | {s['step_s_bf16']:.3f} | {'pass' if s['ok'] else 'FAIL'} |")
    t = report.get("train")
    if t is not None:
        lines.append(f"| training DARTS_V2 | {t['steps']} | {t['batch']} | {_late_mean(t['loss_fp32']):.4f} | "
                     f"{_late_mean(t['loss_bf16']):.4f} | {t['late_loss_rel_diff']:.2%} | - | - | - | "
                     f"{t['step_s_fp32']:.3f} ({t['images_per_s_fp32']:.1f} img/s) | "
                     f"{t['step_s_bf16']:.3f} ({t['images_per_s_bf16']:.1f} img/s) | "
                     f"{'pass' if t['ok'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("amp_check: --device cuda asked for but CUDA is not available here; use --device cpu or auto",
              file=sys.stderr)
        return 2
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = {}
    for bf16 in (False, True):
        name = "bf16" if bf16 else "fp32"
        print(f"[amp_check] search {name} ...", file=sys.stderr, flush=True)
        runs[f"search_{name}"] = search_run(args, device, bf16)
        if args.train_steps:
            print(f"[amp_check] training {name} ...", file=sys.stderr, flush=True)
            runs[f"train_{name}"] = train_run(args, device, bf16)
    report = compare(args, runs["search_fp32"], runs["search_bf16"], runs.get("train_fp32"), runs.get("train_bf16"))
    report["machine"] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
                         f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
                         "torch": torch.__version__, "quick": args.quick}
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    table = markdown(report)
    if args.markdown:
        args.markdown.write_text(table)
    print(table)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
