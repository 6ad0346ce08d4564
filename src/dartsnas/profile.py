"""Parameter and multiply-add counts, and inference throughput.

Counting follows the original DARTS code's convention: parameters exclude the auxiliary head (module attribute
``auxiliary_head``); multiply-adds are those of convolutions and linear layers for one image in eval mode, i.e.
``torch.utils.flop_counter`` total / 2 (it counts conv, mm/addmm/bmm and attention, not BN, pooling or
activations).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .errors import ConfigError

__all__ = ["count_macs", "count_parameters", "measure_throughput", "op_costs"]

AUXILIARY_PREFIX = "auxiliary_head"


def count_parameters(model: nn.Module, *, exclude_auxiliary: bool = True) -> int:
    """Number of parameter elements; with ``exclude_auxiliary`` those under ``auxiliary_head`` are left out."""
    total = 0
    for name, p in model.named_parameters():
        if exclude_auxiliary and (name == AUXILIARY_PREFIX or name.startswith(AUXILIARY_PREFIX + ".")):
            continue
        total += p.numel()
    return total


def _check_size(input_size: tuple[int, ...]) -> tuple[int, int, int]:
    size = tuple(input_size)
    if len(size) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
        raise ConfigError(f"input_size must be (channels, height, width) of positive integers, got {input_size!r}")
    return size  # type: ignore[return-value]


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.get_default_dtype()


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and no_grad for the duration; the previous training flags are restored after."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes.items():
            m.train(training)


def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-adds of conv and linear layers for one image of ``input_size`` (C, H, W), in eval mode."""
    size = _check_size(input_size)
    device, dtype = _model_device_dtype(model)
    x = torch.zeros((1, *size), device=device, dtype=dtype)
    with _eval_mode(model):
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    return int(counter.get_total_flops()) // 2


def measure_throughput(model: nn.Module, input_size: tuple[int, int, int], *, batch_size: int = 64,
                       device: torch.device | str | None = None, iters: int = 10, warmup: int = 3) -> float:
    """Images per second of inference (eval mode, no_grad) on random inputs of ``batch_size`` images.

    ``device`` defaults to where the model's parameters are; the model is moved there if needed (and stays).
    A rough figure for reports, not a benchmark: it times ``iters`` batches after ``warmup`` untimed ones.
    """
    size = _check_size(input_size)
    for name, value, minimum in (("batch_size", batch_size, 1), ("iters", iters, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    model_device, dtype = _model_device_dtype(model)
    dev = torch.device(device) if device is not None else model_device
    if dev != model_device:
        model.to(dev)
    x = torch.randn((batch_size, *size), device=dev, dtype=dtype)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    with _eval_mode(model):
        for _ in range(warmup):
            model(x)
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        sync()
        elapsed = time.perf_counter() - start
    return batch_size * iters / max(elapsed, 1e-12)


def op_costs(channels: int = 16, size: int = 32) -> list[dict[str, Any]]:
    """Every registered op built at ``channels`` channels, stride 1: its parameters, its multiply-adds on a
    ``size`` x ``size`` input and its one-line description, sorted by name (what ``dartsnas ops`` lists)."""
    from .ops import OPS, build_op, describe_op

    if channels < 1 or size < 1:
        raise ConfigError("--channels and --size must be >= 1")
    rows = []
    for name in sorted(OPS.names()):
        op = build_op(name, channels, 1, True)
        params = count_parameters(op)
        rows.append({"op": name, "params": params, "macs": count_macs(op, (channels, size, size)) if params else 0,
                     "description": describe_op(name)})
    return rows
