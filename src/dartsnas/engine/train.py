"""Training of the discrete network built from a genotype (Section 3.3 of the DARTS paper).

Each epoch (counted from 1) trains with the auxiliary loss and drop path, then measures the test set (and the
held-out validation split when there is one), writes a metrics row and the latest checkpoint; a validation
split also keeps the best checkpoint. The figure to report is the final epoch's test accuracy, as the paper does.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Subset

from ..config import TrainConfig
from ..data import dataset_info, load_split, make_loader, search_split, shard
from ..errors import ConfigError
from ..genotype import Genotype
from ..network import EvalNetwork, default_layers
from ..process import RANK_SEED_STRIDE
from ..profile import count_macs, count_parameters
from ..runs import RunDir
from .common import autocast, progress, resolve_device
from .distributed import Dist
from .hooks import Hook
from .loop import EpochLoop, StepOutput

logger = logging.getLogger(__name__)

RESUME_LOCKED = ("ops_module", "approx_table", "genotype", "from_run", "epoch", "dataset", "layers", "init_channels",
                 "stem", "auxiliary",
                 "batch_size", "lr", "lr_min", "scheduler", "lr_gamma", "momentum", "weight_decay", "seed",
                 "val_portion", "cutout", "autoaugment", "drop_path_prob", "auxiliary_weight", "label_smoothing", "amp",
                 "channels_last")


@dataclass
class TrainResult:
    run_dir: RunDir
    final: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)


class Trainer(EpochLoop):
    """Builds data, network and optimizer from a config and a genotype, then ``run(run_dir)`` trains. Building
    it changes nothing outside it: the initial weights come from ``cfg.seed`` on a forked generator;
    ``dartsnas.setup_process`` seeds the process's generators (augmentation, drop path) for the run itself."""

    kind, noun = "train", "training"
    remedies = "a lower --lr, a gradient clip (--grad-clip 5) or full precision (--amp off)"

    def __init__(self, cfg: TrainConfig, genotype: Genotype, *, show_progress: bool | None = None,
                 hooks: Sequence[Hook] = (), dist: Dist | None = None, device: str | None = None):
        cfg.validate()
        from ..plugins import load_ops_modules

        load_ops_modules(cfg.ops_module)
        if cfg.layers is None:  # the recipe sets ImageNet's depth; here a per-cell genotype's own, else 20
            cfg.layers = default_layers(genotype)
        self.cfg, self.genotype = cfg, genotype
        self._init_loop(dist=dist, hooks=hooks, show_progress=show_progress)
        self.device = resolve_device(device or cfg.device)
        info = dataset_info(cfg.dataset, cfg.data)
        cutout = info.cutout_length if cfg.cutout is None else cfg.cutout
        transform = "autoaugment" if cfg.autoaugment else "train"
        train_set, info = load_split(cfg.dataset, cfg.data, "train", transform=transform, download=cfg.download,
                                     cutout=cutout)
        test_set, _ = load_split(cfg.dataset, cfg.data, "test", transform="test", download=False)
        self.info = info
        self.val_loader = None
        if cfg.val_portion > 0:
            train_idx, val_idx = search_split(len(train_set), 1.0 - cfg.val_portion, cfg.seed)
            val_set, _ = load_split(cfg.dataset, cfg.data, "train", transform="test", download=False)
            self.val_loader = make_loader(self._shard(Subset(val_set, val_idx), evaluation=True),
                                          batch_size=cfg.batch_size, shuffle=False, workers=cfg.workers)
            train_set = Subset(train_set, train_idx)
        pin = self.device.type == "cuda"
        seed = cfg.seed if not self.dist.enabled else cfg.seed + RANK_SEED_STRIDE * self.dist.rank
        self.train_loader = make_loader(self._shard(train_set), batch_size=cfg.batch_size, shuffle=True,
                                        seed=seed, workers=cfg.workers, pin_memory=pin)
        self.test_loader = make_loader(self._shard(test_set, evaluation=True), batch_size=cfg.batch_size,
                                       shuffle=False, workers=cfg.workers, pin_memory=pin)
        stem = cfg.stem if cfg.stem != "auto" else ("imagenet" if info.image_size >= 224 else "cifar")
        auxiliary = info.auxiliary if cfg.auxiliary is None else cfg.auxiliary
        if auxiliary and info.image_size < 32:
            raise ConfigError(f"the auxiliary head needs images of 32 px or more; {info.name} has "
                              f"{info.image_size} px: pass --no-auxiliary")
        from ..ops.approx import table_options

        with torch.random.fork_rng(devices=[]):  # the same initial weights on every process, from cfg.seed
            torch.manual_seed(cfg.seed)
            self.network = EvalNetwork(genotype, cfg.init_channels, info.num_classes, cfg.layers, auxiliary,
                                       stem=stem, in_channels=info.channels,
                                       op_options=table_options(cfg.approx_table))
            self.input_size = (info.channels, info.image_size, info.image_size)
            self.params = count_parameters(self.network)
            self.params_with_aux = count_parameters(self.network, exclude_auxiliary=False)
            self.macs = _safe_macs(self.network, self.input_size, cfg)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.network.to(self.device, memory_format=self.memory_format)
        if self.dist.enabled:  # the same start everywhere
            self.dist.broadcast_params_(self.network)
        self.optimizer = torch.optim.SGD(self.network.parameters(), cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        if cfg.scheduler == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, float(cfg.epochs),
                                                                        eta_min=cfg.lr_min)
        else:
            self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, 1, gamma=cfg.lr_gamma)
        self.amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        self.best_val: float | None = None
        self.final: dict[str, Any] = {}

    def _shard(self, dataset, evaluation: bool = False):
        """This rank's part of a data set under torchrun: every image once for evaluation, equal parts (the
        remainder dropped) for training so that all ranks take the same number of steps."""
        if not self.dist.enabled:
            return dataset
        n, world, rank = len(dataset), self.dist.world_size, self.dist.rank
        indices = shard(range(n), rank, world, equal=not evaluation)
        if not indices:
            raise ConfigError(f"{n} images cannot be shared by {world} processes; use fewer processes")
        return Subset(dataset, indices)

    # -- checkpoints -----------------------------------------------------------------------------------------
    def model_state(self) -> dict[str, Any]:
        return {"net_args": self.network.net_args(),
                "dataset": {"name": self.info.name, "num_classes": self.info.num_classes,
                            "image_size": self.info.image_size, "channels": self.info.channels},
                "model": self.network.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "best_val": self.best_val}

    def load_model_state(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def after_load(self, state: dict[str, Any]) -> None:
        self.best_val = state.get("best_val")

    # -- the loop's parts ------------------------------------------------------------------------------------
    def loader_states(self) -> torch.Tensor:
        return self.train_loader.generator.get_state()

    def set_loader_states(self, state: torch.Tensor) -> None:
        self.train_loader.generator.set_state(state)

    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    def data_loaders(self) -> list[Any]:
        return [loader for loader in (self.train_loader, self.val_loader, self.test_loader) if loader is not None]

    def current_lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def batches(self):
        return iter(self.train_loader)

    def begin_epoch(self, epoch: int, resume: dict[str, Any] | None) -> None:
        # drop path rises linearly from 0 (as in the paper's code: p * (epoch - 1) / epochs)
        self.network.drop_path_prob = self.cfg.drop_path_prob * (epoch - 1) / self.cfg.epochs
        self.network.train()

    def run_step(self, batch, epoch: int) -> StepOutput:
        net, cfg = self.network, self.cfg
        x, y = batch
        x = x.to(self.device, non_blocking=True, memory_format=self.memory_format)
        y = y.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp_dtype):
            logits, logits_aux = net(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            total = loss
            if logits_aux is not None:
                total = total + cfg.auxiliary_weight * F.cross_entropy(logits_aux, y,
                                                                      label_smoothing=cfg.label_smoothing)
        self.scaler.scale(total).backward()
        self.dist.average_grads_(net.parameters())
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.dist.broadcast_buffers_(net)
        loss = loss.detach().float()
        return StepOutput(loss, logits.detach().float(), y, {"training loss": float(loss)})

    def end_epoch(self, epoch: int, train: dict[str, Any], lr: float, start: float) -> dict[str, Any]:
        row = {"epoch": epoch, "train_loss": train["loss"], "train_acc": train["acc"]}
        if self.val_loader is not None:
            val = self._evaluate(self.val_loader)
            row.update({"val_loss": val["loss"], "val_acc": val["acc"]})
        test = self._evaluate(self.test_loader)
        row.update({"test_loss": test["loss"], "test_acc": test["acc"], "test_top5": test["top5"],
                    "lr": lr, "drop_path_prob": self.network.drop_path_prob,
                    "seconds": time.perf_counter() - start})
        self.is_best_epoch = self.val_loader is not None and (self.best_val is None or row["val_acc"] > self.best_val)
        if self.is_best_epoch:
            self.best_val = row["val_acc"]
        return row

    def _evaluate(self, loader) -> dict[str, float]:
        return evaluate_loader(self.network, loader, self.device, memory_format=self.memory_format,
                               amp_dtype=self.amp_dtype, dist=self.dist)

    def describe(self, row: dict[str, Any]) -> str:
        return (f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.2f}%  test loss {row['test_loss']:.4f} "
                f"acc {row['test_acc']:.2f}%  lr {row['lr']:.5f}  {row['seconds']:.1f}s")

    def default_hooks(self) -> list[Hook]:
        return [FinalResult()]

    def result(self) -> TrainResult:
        return TrainResult(self.run_dir, self.final, list(self.metrics))


class FinalResult(Hook):
    """RUN/final.json at the end of training: the last epoch's test figures, size and genotype."""

    def after_run(self, loop: Trainer) -> None:
        last = loop.metrics[-1] if loop.metrics else {}
        loop.final = {"genotype": loop.genotype.to_dict(), "dataset": loop.cfg.dataset, "epochs": loop.epoch,
                      "test_acc": last.get("test_acc"), "test_top5": last.get("test_top5"),
                      "test_loss": last.get("test_loss"), "params": loop.params,
                      "params_with_auxiliary": loop.params_with_aux, "macs": loop.macs,
                      "best_val_acc": loop.best_val}
        loop.run_dir.write_json(loop.run_dir.final_path, loop.final)


def _safe_macs(network: nn.Module, input_size: tuple[int, int, int], cfg: TrainConfig) -> int:
    try:
        return count_macs(network, input_size)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"the network cannot run on {input_size[1]}x{input_size[2]} images with "
                          f"layers={cfg.layers}, init_channels={cfg.init_channels}: {first}") from None


@torch.no_grad()
def evaluate_loader(network: nn.Module, loader, device: torch.device, *,
                    memory_format: torch.memory_format = torch.contiguous_format,
                    amp_dtype: torch.dtype | None = None, show_progress: bool = False,
                    dist: Dist | None = None) -> dict[str, float]:
    """Top-1, top-5 and loss of ``network`` (which returns ``(logits, aux)``) over ``loader`` in eval mode."""
    was_training = network.training
    network.eval()
    loss_sum, top1, top5, n = 0.0, 0, 0, 0
    for x, y in progress(loader, total=len(loader), desc="evaluate", enabled=show_progress):
        x = x.to(device, non_blocking=True, memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            out = network(x)
        logits = (out[0] if isinstance(out, tuple) else out).float()
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        k = min(5, logits.shape[1])
        pred = logits.topk(k, dim=1).indices
        hit = pred.eq(y.unsqueeze(1))
        top1 += int(hit[:, 0].sum())
        top5 += int(hit.any(dim=1).sum())
        n += y.shape[0]
    network.train(was_training)
    if dist is not None and dist.enabled:  # each rank read its own part
        loss_sum, top1, top5, n = dist.sum([loss_sum, top1, top5, n])
    n = max(n, 1)
    return {"loss": loss_sum / n, "acc": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "images": int(n)}
