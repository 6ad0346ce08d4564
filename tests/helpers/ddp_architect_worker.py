"""Run under torchrun by tests/test_distributed.py: each rank computes the hypergradient on its half of a batch
with averaged gradients; rank 0 compares it with one process on the whole batch and writes the differences."""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_architect import SmoothMixture, _rel, _take_weight_steps  # noqa: E402

from dartsnas import Architect  # noqa: E402
from dartsnas.engine import distributed  # noqa: E402


def main() -> None:
    dist, _ = distributed.setup("cpu")
    torch.manual_seed(0)
    net = SmoothMixture().double()
    data = [(torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))) for _ in range(4)]
    opt = torch.optim.SGD(net.weights(), lr=0.1, momentum=0.9, weight_decay=3e-3)
    _take_weight_steps(net, opt, data[2:])
    train, val = data[0], data[1]
    half = slice(8 * dist.rank, 8 * (dist.rank + 1))
    mine = (train[0][half], train[1][half]), (val[0][half], val[1][half])
    out = {}
    for order, hessian in ((1, "finite-difference"), (2, "finite-difference"), (2, "exact")):
        shared = Architect(net, order=order, hessian=hessian, grad_reducer=dist.mean,
                           graph_reducer=dist.mean_differentiable).hypergradient(*mine, opt)
        whole = Architect(net, order=order, hessian=hessian).hypergradient(train, val, opt)
        out[f"{order}-{hessian}"] = _rel(shared, whole)
    everyone = dist.gather_objects(out)
    if dist.is_main:
        Path(sys.argv[1]).write_text(json.dumps(everyone))
    distributed.teardown()


if __name__ == "__main__":
    main()
