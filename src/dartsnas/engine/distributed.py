"""Data-parallel runs under torchrun: the few collective operations the loops need.

The loops do not wrap the network in ``DistributedDataParallel``: the alphas live on the network but must stay
out of DDP's weight buckets, and the second-order Architect evaluates the network with substituted weights
(``functional_call``). Instead they average gradients explicitly, which is what DDP does too:

* weight gradients after each backward (one flat all-reduce), before clipping;
* every piece of the hypergradient (the Architect's ``grad_reducer``);
* BatchNorm running statistics are broadcast from rank 0 after each step, as DDP does at each forward.

All ranks then hold bitwise identical weights and alphas (an all-reduce gives every rank the same bits, and the
updates that follow are the same arithmetic). ``Dist()`` is the single-process case: every method is a no-op.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from ..errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)


class Dist:
    """Rank, world size and the collectives of one run (the identity in a single process)."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0,
                 device: torch.device | str = "cpu") -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device = torch.device(device)  # where small tensors for collectives live (CUDA under NCCL)

    def __repr__(self) -> str:
        return f"Dist(rank={self.rank}, world_size={self.world_size})"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- gradients -------------------------------------------------------------------------------------------
    def mean(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The element-wise average over ranks of each tensor (new tensors; one flat all-reduce)."""
        tensors = list(tensors)
        if not self.enabled or not tensors:
            return tensors
        import torch.distributed as dist

        dtypes = {t.dtype for t in tensors}
        dtype = dtypes.pop() if len(dtypes) == 1 else torch.float64
        flat = torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])
        dist.all_reduce(flat)
        flat.div_(self.world_size)
        out, offset = [], 0
        for t in tensors:
            out.append(flat[offset:offset + t.numel()].view_as(t).to(t.dtype))
            offset += t.numel()
        return out

    def mean_differentiable(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Like :meth:`mean`, but autograd flows through it (for the exact second-order hypergradient): the
        gradient of the ranks' summed objectives with respect to each rank's input is the average of the
        incoming gradients, one more flat all-reduce."""
        tensors = list(tensors)
        if not self.enabled:
            return tensors
        return list(_MeanOverRanks.apply(self, *tensors))

    def average_grads_(self, params: Sequence[nn.Parameter]) -> None:
        """Replace the ``.grad`` of every parameter by its average over ranks (missing grads count as zero)."""
        if not self.enabled:
            return
        params = list(params)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        for p, g in zip(params, self.mean(grads)):
            if p.grad is None:
                p.grad = g
            else:
                p.grad.copy_(g)

    def broadcast_buffers_(self, module: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) on every rank."""
        if not self.enabled:
            return
        import torch.distributed as dist

        for b in module.buffers():
            dist.broadcast(b, 0)

    def broadcast_params_(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (done once at the start)."""
        if not self.enabled:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, 0)

    # -- numbers and objects ---------------------------------------------------------------------------------
    def sum(self, values: Sequence[float], device: torch.device | str | None = None) -> list[float]:
        """The sum over ranks of each number (float64)."""
        if not self.enabled:
            return [float(v) for v in values]
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device or self.device)
        dist.all_reduce(t)
        return t.tolist()

    def any(self, flags: Sequence[bool], device: torch.device | str | None = None) -> list[bool]:
        """For each flag, whether it is set on any rank."""
        if not self.enabled:
            return [bool(f) for f in flags]
        return [v > 0 for v in self.sum([1.0 if f else 0.0 for f in flags], device)]

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable objects)."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


class _MeanOverRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dist: Dist, *tensors: torch.Tensor):  # type: ignore[override]
        ctx.dist = dist
        return tuple(dist.mean(tensors))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):  # type: ignore[override]
        return (None, *ctx.dist.mean(grads))


SINGLE = Dist()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_name: str = "auto", timeout_s: float = 1800.0) -> tuple[Dist, str]:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on the CPU); returns it and the device
    name this rank should use (``cuda:LOCAL_RANK`` on GPUs). Without torchrun: ``(Dist(), device_name)``."""
    if not launched_by_torchrun():
        return SINGLE, device_name
    import datetime

    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device_name!r} asked for but CUDA is not available here")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', '?')} processes on this "
                              f"machine but it has {torch.cuda.device_count()} GPU(s); lower --nproc_per_node")
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    elif device_name == "auto":
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    if rank != 0:  # one voice: only rank 0 logs below warnings
        logging.getLogger("dartsnas").setLevel(logging.ERROR)
    return Dist(rank, world, local_rank, device_name if cuda else "cpu"), device_name


def teardown(sync: bool = True) -> None:
    """Leave the process group; ``sync`` first waits for every rank (a rank leaving while another still talks
    to it aborts gloo). Pass ``sync=False`` after an error, when the others may never arrive."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if sync:
            dist.barrier()
        dist.destroy_process_group()


def per_rank_state(dist: Dist, state: dict[str, Any]) -> dict[str, Any]:
    """Add every rank's own RNG and data-order states, and its own position inside the epoch (its data order
    and running averages), to a checkpoint ``state`` (collective: all ranks call it).

    The top-level ``rng``/``loader_rng``/``partial`` stay rank 0's, so a single process can resume any
    checkpoint saved at an epoch end."""
    state["world_size"] = dist.world_size
    if dist.enabled:
        mine = {"rng": state["rng"], "loader_rng": state["loader_rng"], "partial": state.get("partial")}
        state["ranks"] = dist.gather_objects(mine)
    return state


def local_state(dist: Dist, state: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint as this rank saved it (its RNG and data order); a different number of processes can
    resume from an epoch end only."""
    saved = int(state.get("world_size", 1))
    if saved != dist.world_size:
        if state.get("partial") is not None:
            raise CheckpointError(
                f"the checkpoint was saved inside an epoch by {saved} process(es) and this run has "
                f"{dist.world_size}: resume it with the same number (torchrun --nproc_per_node={saved}) "
                "to continue exactly")
        logger.warning("resuming a run of %d process(es) with %d: the data order will differ from an "
                       "uninterrupted run", saved, dist.world_size)
        return state
    if dist.enabled and "ranks" in state:
        mine = state["ranks"][dist.rank]
        state = {**state, "rng": mine["rng"], "loader_rng": mine["loader_rng"]}
        if state.get("partial") is not None:  # this rank's running averages too, not rank 0's
            state["partial"] = mine["partial"]
    return state


class ReadOnlyRun:
    """A run directory seen from a rank other than 0: it can be read, and every write is skipped."""

    def __init__(self, run: Any) -> None:
        self._run = run

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("write_", "save_")):
            return lambda *args, **kwargs: None
        return getattr(self._run, name)
