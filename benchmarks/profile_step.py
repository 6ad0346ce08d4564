"""Where a search iteration's time goes: torch.profiler over the alpha step and the weight step apart.

    python benchmarks/profile_step.py --batch 64 --order 1 --iters 2 --top 15
    python benchmarks/profile_step.py --quick                # tiny shapes, seconds

Builds the supernet as the library builds it by default (lean ops, channels-last, C kernels on the CPU), with
``tune_malloc`` as ``dartsnas search`` does, runs warm-up iterations, then profiles ``--iters`` iterations and
prints, for the alpha step and the weight step, the share of self time of the top operators (aten ops, and the
lean autograd functions and C kernels under their own names) as a Markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--order", type=int, default=1, choices=[1, 2])
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="C=4, 3 layers, batch 8")
    args = p.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from dartsnas import Architect, SearchNetwork, SearchSpace
    from dartsnas.engine.search import weight_backward
    from dartsnas.ops import native
    from dartsnas.process import tune_malloc

    torch.set_num_threads(args.threads)
    tune_malloc()
    C, layers, batch = (4, 3, 8) if args.quick else (16, 8, args.batch)
    torch.manual_seed(0)
    net = SearchNetwork(SearchSpace(), C, 10, layers)
    w_opt = torch.optim.SGD(net.weights(), 0.025, momentum=0.9, weight_decay=3e-4)
    arch = Architect(net, order=args.order, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    gen = torch.Generator().manual_seed(1)

    def batch_pair():
        return [(torch.randn(batch, 3, 32, 32, generator=gen), torch.randint(0, 10, (batch,), generator=gen))
                for _ in range(2)]

    def alpha_step(data):
        arch.step(data[0], data[1], w_opt)

    def weight_step(data):
        x, y = data[0]
        w_opt.zero_grad(set_to_none=True)
        weight_backward(net, x, y, torch.device("cpu"))
        torch.nn.utils.clip_grad_norm_(net.weights(), 5.0)
        w_opt.step()

    for _ in range(args.warmup):
        data = batch_pair()
        alpha_step(data)
        weight_step(data)
    print(f"{native.status()}; batch {batch}, order {args.order}, C={C}, {layers} layers, {args.threads} threads",
          file=sys.stderr)
    out = []
    for name, step in (("alpha step", alpha_step), ("weight step", weight_step)):
        data_sets = [batch_pair() for _ in range(args.iters)]
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for data in data_sets:
                step(data)
        wall = (time.perf_counter() - t0) / args.iters
        events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)
        events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
        out += [f"**{name}** ({wall:.2f} s per iteration under the profiler, {len(events)} operators)", "",
                "| operator | calls per iteration | self time per iteration (ms) | share |",
                "| --- | ---: | ---: | ---: |"]
        for e in events[:args.top]:
            out.append(f"| `{e.key}` | {e.count // args.iters} | {e.self_cpu_time_total / 1e3 / args.iters:.0f} | "
                       f"{100 * e.self_cpu_time_total / total:.1f}% |")
        out.append("")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
