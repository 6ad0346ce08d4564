"""Run under torchrun by tests/test_distributed.py: for each mode ORDER:HESSIAN given, a tiny search whose every
step records a digest of the weights, BN statistics and alphas of this rank; rank 0 writes all ranks' digests to
OUT/ORDER-HESSIAN/ranks.json. One launch runs every mode, so torchrun's start is paid once."""
import hashlib
import json
import sys

import torch

from dartsnas.config import SearchConfig
from dartsnas.engine import distributed
from dartsnas.engine.search import Search
from dartsnas.process import setup_process
from dartsnas.runs import RunDir


def digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def search_once(dist, device, out: str, order: int, hessian: str) -> None:
    cfg = SearchConfig(dataset="digits", layers=3, init_channels=4, nodes=2, multiplier=2, batch_size=32,
                       workers=0, epochs=1, seed=5, order=order, hessian=hessian, checkpoint_every=0,
                       limit_batches=4)
    setup_process(cfg.seed, rank=dist.rank)
    search = Search(cfg, dist=dist, device=device, show_progress=False)
    digests = [digest(search.network)]
    weight_step = search.weight_step

    def recorded(x, y):
        result = weight_step(x, y)
        digests.append(digest(search.network))
        return result

    search.weight_step = recorded
    run = RunDir(f"{out}/{order}-{hessian}")
    if dist.is_main:
        run.path.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    result = search.run(run)
    everyone = dist.gather_objects({"digests": digests, "genotype": str(result.genotype),
                                    "alphas": [a.tolist() for a in search.network.alphas()]})
    if dist.is_main:
        with open(run.path / "ranks.json", "w") as f:
            json.dump(everyone, f)


def main() -> None:
    out, modes = sys.argv[1], sys.argv[2:]
    dist, device = distributed.setup("cpu")
    for mode in modes:
        order, hessian = mode.split(":")
        search_once(dist, device, out, int(order), hessian)
    distributed.teardown()


if __name__ == "__main__":
    main()
