"""The search loop: the bilevel optimisation of DARTS (Algorithm 1 of the paper).

Each iteration takes an alpha step on a batch of the alpha half of the training set, then a weight step on a
batch of the weight half; only the weight gradients are clipped. After each epoch (counted from 1) the loop
evaluates on the alpha half, derives the genotype, and writes the epoch's artifacts to the run directory.
The cosine schedule gives epoch e its learning rate and steps after the epoch.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..architect import Architect, zero_one_loss
from ..config import SearchConfig
from ..data import build_search_loaders
from ..errors import CheckpointError, ConfigError, DartsNASError, GenotypeError
from ..genotype import DEFAULT_THRESHOLD, Genotype, save_genotype
from ..ops import native
from ..ops.approx import table_options
from ..runs import RunDir
from ..space import SearchSpace, is_space_file, resolve_space
from ..supernet import SearchNetwork
from .common import Average, autocast, resolve_device
from .distributed import Dist
from .hooks import EpochEnd, Hook
from .loop import EpochLoop, StepOutput

logger = logging.getLogger(__name__)

# Keys whose change would make a resumed run a different experiment.
RESUME_LOCKED = ("dataset", "layers", "init_channels", "nodes", "multiplier", "stem_multiplier", "space",
                 "primitives", "ops_module", "approx_table", "alphas", "gates", "zero_one_weight", "derive_rule",
                 "threshold", "pretrain_epochs", "partial_channels", "order", "hessian", "batch_size",
                 "train_portion", "seed", "lr", "lr_min", "momentum", "weight_decay", "grad_clip", "arch_lr",
                 "arch_weight_decay", "arch_betas", "hessian_eigenvalue", "eigen_batches", "early_stop", "es_window",
                 "es_threshold", "max_skip", "random_smoothing", "auxiliary_skip", "drop_path_prob", "amp",
                 "recompute", "channels_last")


DEFAULT_LAYERS = 8  # the paper's supernet

# D-DARTS' stop on its architecture metric: no more than this change over this many epochs
METRIC_TOLERANCE = 0.001
METRIC_EPOCHS = 4


def weight_backward(network: SearchNetwork, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                    amp_dtype: torch.dtype | None = None,
                    scaler: torch.amp.GradScaler | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight step's forward and backward: the cross-entropy's gradients accumulate into the weights only
    (the alphas are frozen meanwhile, so no alpha gradient is computed), the forward under autocast to
    ``amp_dtype`` when given, the loss scaled by ``scaler`` (fp16) before the backward. Returns the loss and the
    logits, detached."""
    alphas = network.alphas()
    for a in alphas:
        a.requires_grad_(False)
    try:
        with autocast(device, amp_dtype):
            logits = network(x)
        loss = F.cross_entropy(logits.float(), y)
        (scaler.scale(loss) if scaler is not None else loss).backward()
    finally:
        for a in alphas:
            a.requires_grad_(True)
    return loss.detach(), logits.detach()


def build_space(cfg: SearchConfig) -> SearchSpace:
    """The config's space: its ops modules imported, then the named space or space file, with primitives,
    nodes and multiplier overridden where the config gives them."""
    from ..plugins import load_ops_modules

    load_ops_modules(cfg.ops_module)
    if is_space_file(cfg.space) and cfg.primitives and cfg.nodes and cfg.multiplier and \
            not Path(cfg.space).is_file():  # a saved config holds the resolved space: the file is not needed
        base = SearchSpace(primitives=tuple(cfg.primitives), nodes=cfg.nodes, multiplier=cfg.multiplier)
    else:
        base = resolve_space(cfg.space)
    primitives = tuple(cfg.primitives) if cfg.primitives else base.primitives
    nodes = cfg.nodes if cfg.nodes is not None else base.nodes
    multiplier = cfg.multiplier if cfg.multiplier is not None else (base.multiplier if cfg.nodes is None else nodes)
    if base.baseline is not None and nodes == base.nodes:
        missing = sorted(set(base.baseline.ops()) - set(primitives)) + ([] if "none" in primitives else ["none"])
        if missing:
            raise ConfigError(f"the {cfg.space} space starts from its baseline block, which needs the ops "
                              f"{', '.join(missing)}; keep them in --primitives")
    if base.layout is not None:
        if nodes != base.nodes:
            raise ConfigError(f"the {cfg.space} space lays out {base.layout.name}'s cells of {base.nodes} nodes; "
                              "leave out --nodes")
        missing = sorted({op for g in base.layout.genes for op in g.ops()} - set(primitives))
        if missing:
            raise ConfigError(f"the {cfg.space} space starts from {base.layout.name}, which needs the ops "
                              f"{', '.join(missing)}; keep them in --primitives")
    return SearchSpace(primitives=primitives, nodes=nodes, multiplier=multiplier,
                       baseline=base.baseline if base.baseline is not None and nodes == base.nodes else None,
                       rule=base.rule, threshold=base.threshold, layout=base.layout, gates=base.gates,
                       pretrain_epochs=base.pretrain_epochs, ops_modules=base.ops_modules,
                       op_options=table_options(cfg.approx_table))


def apply_space_defaults(cfg: SearchConfig, space: SearchSpace) -> None:
    """Fill the config's space-dependent settings left at None (cells, alpha sharing, gates, warm-up epochs)
    from ``space``; a whole-network layout fixes the cells and the alpha sharing."""
    layout = space.layout
    if layout is None:
        cfg.layers = DEFAULT_LAYERS if cfg.layers is None else cfg.layers
        cfg.alphas = cfg.alphas or "shared"
    else:
        if cfg.layers not in (None, len(layout.seq)):
            raise ConfigError(f"the {cfg.space} space has {len(layout.seq)} cells ({layout.name}'s); leave out "
                              "--layers")
        if cfg.alphas not in (None, "per-cell"):
            raise ConfigError(f"the {cfg.space} space shares alphas between the cells of one {layout.name} design; "
                              "leave out --alphas")
        cfg.layers, cfg.alphas = len(layout.seq), "per-cell"
    cfg.gates = cfg.gates or space.gates or "softmax"
    cfg.pretrain_epochs = cfg.pretrain_epochs if cfg.pretrain_epochs is not None else (space.pretrain_epochs or 0)
    cfg.validate()


def derivation(cfg: SearchConfig, space: SearchSpace) -> tuple[str, float | None]:
    """The derivation rule and threshold: the config's, else the space's (top-k; threshold-edge at 0.5 for the
    spaces around handcrafted networks); the threshold rules default to 0.85."""
    rule = cfg.derive_rule or space.rule
    if rule == "top-k" and cfg.threshold is not None:
        raise ConfigError("--threshold applies to the threshold rules; top-k keeps two edges per node whatever "
                          "their weight (leave out --threshold or pick --derive-rule threshold-sparse)")
    threshold = cfg.threshold if cfg.threshold is not None else (space.threshold if rule == space.rule else None)
    if rule != "top-k" and threshold is None:
        threshold = DEFAULT_THRESHOLD
    return rule, threshold


@dataclass
class SearchResult:
    run_dir: RunDir
    genotype: Genotype
    metrics: list[dict[str, Any]] = field(default_factory=list)


class SearchArtifacts(Hook):
    """The search's files: the alpha history from the start, then after each epoch its genotype and the history;
    at the end the final genotype (and a per-cell search's threshold-sparse and threshold-edge cells)."""

    def before_run(self, loop: Search) -> None:
        if loop.epoch == 0 and loop._resume is None:
            loop.run_dir.write_alpha_history(loop.history, loop.space.primitives, gate=loop.cfg.gates)

    def after_epoch(self, loop: Search, end: EpochEnd) -> None:
        loop.run_dir.write_epoch_genotype(end.epoch, loop.genotype)
        loop.run_dir.write_alpha_history(loop.history, loop.space.primitives, gate=loop.cfg.gates)

    def after_run(self, loop: Search) -> None:
        run, network = loop.run_dir, loop.network
        run.write_final_genotype(loop.final_genotype())
        if network.alpha_mode == "per-cell":  # D-DARTS writes the sparse and the edge cells at the end
            threshold = network.threshold if network.rule != "top-k" else DEFAULT_THRESHOLD
            for rule in ("threshold-sparse", "threshold-edge"):
                try:
                    save_genotype(network.genotype(rule, threshold), run.rule_genotype_path(rule))
                except GenotypeError as e:  # no gate reaches the threshold: the run's own genotype stands
                    logger.warning("no %s genotype at threshold %g: %s", rule, threshold, e)


class Search(EpochLoop):
    """Builds data, supernet and optimizers from a config (so that bad input fails before anything is
    written), then ``run(run_dir)`` searches and writes the artifacts. Building it changes nothing outside it:
    the supernet's initial weights come from ``cfg.seed`` on a forked generator; ``dartsnas.setup_process``
    seeds the process's generators for the run itself."""

    kind, noun = "search", "search"
    remedies = "a lower --lr or --arch-lr, or a gradient clip (--grad-clip 5)"

    def __init__(self, cfg: SearchConfig, *, show_progress: bool | None = None,
                 hooks: Sequence[Hook] = (), dist: Dist | None = None, device: str | None = None):
        cfg.validate()
        self.cfg = cfg
        self._init_loop(dist=dist, hooks=hooks, show_progress=show_progress)
        self.space = build_space(cfg)
        apply_space_defaults(cfg, self.space)
        self.rule, self.threshold = derivation(cfg, self.space)
        self.device = resolve_device(device or cfg.device)
        self.train_loader, self.val_loader, self.info = build_search_loaders(
            cfg.dataset, cfg.data, batch_size=cfg.batch_size, train_portion=cfg.train_portion, seed=cfg.seed,
            workers=cfg.workers, download=cfg.download, rank=self.dist.rank, world_size=self.dist.world_size,
            pin_memory=self.device.type == "cuda")
        with torch.random.fork_rng(devices=[]):  # the same initial weights on every process, from cfg.seed
            torch.manual_seed(cfg.seed)
            self.network = SearchNetwork(self.space, cfg.init_channels, self.info.num_classes, cfg.layers,
                                         in_channels=self.info.channels,
                                         stem_multiplier=cfg.stem_multiplier, recompute=cfg.recompute,
                                         partial_channels=cfg.partial_channels, alphas=cfg.alphas,
                                         gates=cfg.gates, rule=self.rule, threshold=self.threshold,
                                         channels_last=cfg.channels_last, max_skip=cfg.max_skip,
                                         auxiliary_skip=cfg.auxiliary_skip)
        if self.space.baseline is not None:  # start from the handcrafted network's block
            self.network.init_from_genotype(self.space.baseline)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.network.to(self.device, memory_format=self.memory_format)
        self.amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
        # fp16 (D-DARTS' --amp): the weight step's loss is scaled so that its fp16 gradients do not underflow
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        self._check_builds()
        if self.dist.enabled:  # the same start everywhere
            self.dist.broadcast_params_(self.network)
        self.weight_optimizer = torch.optim.SGD(self.network.weights(), cfg.lr, momentum=cfg.momentum,
                                                weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.weight_optimizer, float(cfg.epochs),
                                                                    eta_min=cfg.lr_min)
        self.architect = Architect(self.network, order=cfg.order, lr=cfg.arch_lr, betas=tuple(cfg.arch_betas),
                                   weight_decay=cfg.arch_weight_decay, hessian=cfg.hessian,
                                   regularizer=zero_one_loss(cfg.zero_one_weight) if cfg.gates == "sigmoid" and
                                   cfg.zero_one_weight > 0 else None,
                                   grad_reducer=self.dist.mean if self.dist.enabled else None,
                                   graph_reducer=self.dist.mean_differentiable if self.dist.enabled else None)
        self.history: dict[str, list[np.ndarray]] = {n: [a.numpy()] for n, a in self.network.arch_state().items()}
        self.genotype: Genotype | None = None  # after each epoch, the genotype of the alphas
        self._arch_losses: list[float] = []
        self._epoch = 0  # the epoch being trained (SDARTS-RS's radius grows with it)
        self._eigen_batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # fixed, taken on first use

    def _check_builds(self) -> None:
        """One forward pass on a tiny input: a layers/channels/image-size mix that cannot run fails here."""
        size = self.info.image_size
        x = torch.zeros(2, self.info.channels, size, size, device=self.device).contiguous(
            memory_format=self.memory_format)
        try:
            with torch.no_grad():
                self.network.eval()
                self.network(x)
        except DartsNASError:
            raise
        except Exception as e:  # a size mix that cannot run, or a user op that fails (its traceback with -v)
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ConfigError(f"the supernet cannot run on {size}x{size} {self.info.name} images with "
                              f"layers={self.cfg.layers}, init_channels={self.cfg.init_channels}: "
                              f"{type(e).__name__}: {first}"[:400]) from e
        finally:
            self.network.train()

    # -- checkpoints -----------------------------------------------------------------------------------------
    def model_state(self) -> dict[str, Any]:
        return {"model": self.network.state_dict(),
                "weight_optimizer": self.weight_optimizer.state_dict(),
                "arch_optimizer": self.architect.optimizer.state_dict(),
                "alpha_history": {n: torch.from_numpy(np.stack(rows)) for n, rows in self.history.items()}}

    def load_model_state(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["model"])
        self.weight_optimizer.load_state_dict(state["weight_optimizer"])
        self.architect.optimizer.load_state_dict(state["arch_optimizer"])

    def after_load(self, state: dict[str, Any]) -> None:
        history = state.get("alpha_history")
        rows = self.epoch + 1  # the initial alphas, then one row per finished epoch
        if not isinstance(history, dict) or set(history) != set(self.history) or not all(
                isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[0] == rows for t in history.values()):
            raise CheckpointError(f"the checkpoint is damaged: alpha_history should hold {sorted(self.history)} with "
                                  f"one row per epoch from 0 to {self.epoch}")
        self.history = {n: [row.numpy() for row in t] for n, t in history.items()}
        if self.epoch:
            self.genotype = self.network.genotype()

    # -- the loop's parts ------------------------------------------------------------------------------------
    def default_hooks(self) -> list[Hook]:
        return [SearchArtifacts()]

    def loader_states(self) -> dict[str, Any]:
        return {"train": _gen_state(self.train_loader), "val": _gen_state(self.val_loader)}

    def set_loader_states(self, state: dict[str, Any]) -> None:
        _set_gen_state(self.train_loader, state["train"])
        _set_gen_state(self.val_loader, state["val"])

    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    def data_loaders(self) -> list[Any]:
        return [self.train_loader, self.val_loader]

    def current_lr(self) -> float:
        return self.weight_optimizer.param_groups[0]["lr"]

    def batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """(x, y) of the weight half with (x, y) of the alpha half; the alpha half, which can be shorter, starts
        over when it runs out."""
        val = iter(self.val_loader)
        for x, y in self.train_loader:
            try:
                xv, yv = next(val)
            except StopIteration:
                val = iter(self.val_loader)
                xv, yv = next(val)
            yield x, y, xv, yv

    def begin_epoch(self, epoch: int, resume: dict[str, Any] | None) -> None:
        self.network.train()
        self._epoch = epoch
        if self.cfg.auxiliary_skip:  # DARTS-: beta decays linearly from 1 to 0 (epoch counted from 0)
            self.network.set_auxiliary_skip_weight(1.0 - (epoch - 1) / self.cfg.epochs)
        self._arch_losses = list(resume["arch_losses"]) if resume else []

    def epoch_state(self) -> dict[str, Any]:
        return {"arch_losses": list(self._arch_losses)}

    def run_step(self, batch, epoch: int) -> StepOutput:
        cfg = self.cfg
        x, y, xv, yv = batch
        x, xv = (t.to(self.device, non_blocking=True, memory_format=self.memory_format) for t in (x, xv))
        y, yv = y.to(self.device, non_blocking=True), yv.to(self.device, non_blocking=True)
        # alpha step (the paper's Eq. 6-8), then the weight step on the training batch; bf16 autocast leaves the
        # second-order step in float32 (its finite difference is below bf16's resolution), fp16 every alpha step
        # (unscaled, its small gradients would underflow)
        arch_loss = None
        if epoch > cfg.pretrain_epochs:  # --pretrain-epochs: the weights alone first
            with autocast(self.device, self.amp_dtype if cfg.order == 1 and cfg.amp == "bf16" else None):
                arch_loss = self.architect.step((x, y), (xv, yv), self.weight_optimizer)["arch_loss"]
            self._arch_losses.append(arch_loss)
        loss, logits = self.weight_step(x, y)
        last_arch = self._arch_losses[-1] if self._arch_losses else 0.0
        return StepOutput(loss, logits, y, {"architecture (validation) loss": last_arch,
                                            "training loss": float(loss)})

    def epoch_summary(self, total: Average) -> dict[str, Any]:
        summary = {"loss": total.mean_loss, "acc": total.accuracy, "arch_loss": None}
        if self._arch_losses:  # none in a warm-up epoch
            arch_loss = self.dist.sum([float(np.mean(self._arch_losses))])[0]
            summary["arch_loss"] = arch_loss / self.dist.world_size
        return summary

    def end_epoch(self, epoch: int, train: dict[str, Any], lr: float, start: float) -> dict[str, Any]:
        val = self.evaluate()
        for n, a in self.network.arch_state().items():
            self.history[n].append(a.numpy())
        self.genotype = self.network.genotype()
        row = {"epoch": epoch, "train_loss": train["loss"], "train_acc": train["acc"],
               "arch_loss": train["arch_loss"], "val_loss": val["loss"], "val_acc": val["acc"],
               "lr": lr, "arch_lr": self.cfg.arch_lr, "seconds": time.perf_counter() - start,
               "genotype_distance": self._distance_to_previous(epoch, self.genotype),
               **self._parameter_free_counts(self.genotype)}
        if self.space.layout is not None and self.cfg.arch_metric:
            row["arch_metric"] = self._arch_metric()
        if self.watches_eigenvalue:
            began = time.perf_counter()
            row["hessian_eigenvalue"] = self.hessian_eigenvalue()
            row["eigen_seconds"] = time.perf_counter() - began
        return row

    # -- collapse: the alpha-Hessian eigenvalue, DARTS-ES, skip counts, SDARTS-RS ------------------------------
    @property
    def watches_eigenvalue(self) -> bool:
        return self.cfg.hessian_eigenvalue or self.cfg.early_stop == "eigenvalue"

    def hessian_eigenvalue(self) -> float:
        """The largest eigenvalue of the alpha Hessian of the validation loss (``dartsnas.hessian``) on the first
        ``eigen_batches`` batches of the alpha half, the same every epoch (their augmentation drawn from the
        seed), the supernet in train mode as the alpha step sees it."""
        from ..hessian import alpha_hessian_eigenvalue

        if self._eigen_batches is None:
            data, size = self.val_loader.dataset, self.cfg.batch_size
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.cfg.seed)
                items = [data[i] for i in range(min(len(data), size * self.cfg.eigen_batches))]
            self._eigen_batches = [
                (torch.stack([torch.as_tensor(x) for x, _ in items[i:i + size]]),
                 torch.as_tensor([int(y) for _, y in items[i:i + size]])) for i in range(0, len(items), size)]
        batches = [(x.to(self.device, memory_format=self.memory_format), y.to(self.device))
                   for x, y in self._eigen_batches]
        self.network.train()
        # under torchrun each process holds its own shard of the alpha half: rank 0's value is everyone's, so
        # that DARTS-ES decides the same everywhere
        return float(self.dist.broadcast_object(alpha_hessian_eigenvalue(self.network, batches=batches)))

    def _parameter_free_counts(self, genotype: Genotype) -> dict[str, int]:
        """How many of the cell type's pairs are parameter-free ops (skip connections, pooling), over its cells:
        a collapsing search fills its normal cell with them."""
        from ..ops import parameter_free

        counts = {"param_free_normal": 0, "param_free_reduce": 0}
        for design in genotype.cell_designs():
            key = "param_free_reduce" if design.reduction else "param_free_normal"
            counts[key] += sum(parameter_free(op, self.space.op_options) for node in design.nodes for op, _ in node)
        return counts

    def smoothing_radius(self) -> float:
        """SDARTS-RS's noise radius in this epoch: from 0.03 rising linearly to ``random_smoothing``, as SDARTS'
        code schedules it (epoch counted from 0)."""
        top = self.cfg.random_smoothing
        return 0.0 if top <= 0 else 0.03 + (top - 0.03) * (self._epoch - 1) / self.cfg.epochs

    def eigenvalue_stop(self) -> int | None:
        """DARTS-ES (Zela et al., Sec. 5): with k = ``es_window``, stop after epoch i when the mean eigenvalue
        over epochs i-2k+1..i-k divided by that over i-k+1..i falls below ``es_threshold``; returns the epoch
        i-k whose genotype the search keeps, or None."""
        if self.cfg.early_stop != "eigenvalue":
            return None
        k = self.cfg.es_window
        rows = [r for r in self.metrics if int(r["epoch"]) > self.cfg.pretrain_epochs
                and r.get("hessian_eigenvalue") not in (None, "")]
        if len(rows) < 2 * k:
            return None
        values = [float(r["hessian_eigenvalue"]) for r in rows[-2 * k:]]
        previous, last = float(np.mean(values[:k])), float(np.mean(values[k:]))
        if last > 0 and previous / last < self.cfg.es_threshold:
            return int(rows[-k - 1]["epoch"])
        return None

    def final_genotype(self) -> Genotype:
        """The run's result: the last epoch's genotype, or after a DARTS-ES stop that of ``es_window`` epochs
        before it."""
        kept = self.eigenvalue_stop()
        if kept is not None:
            return self.network.genotype(raw={n: rows[kept] for n, rows in self.history.items()})
        return self.genotype if self.genotype is not None else self.network.genotype()

    def describe(self, row: dict[str, Any]) -> str:
        eigen = (f"  eigenvalue {float(row['hessian_eigenvalue']):.4g} ({float(row['eigen_seconds']):.1f}s)"
                 if row.get("hessian_eigenvalue") not in (None, "") else "")
        return (f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.2f}%  val loss {row['val_loss']:.4f} "
                f"acc {row['val_acc']:.2f}%  lr {row['lr']:.5f}  {row['seconds']:.1f}s{eigen}  "
                f"{self._genotype_note(row)}")

    def _genotype_note(self, row: dict[str, Any]) -> str:
        """The genotype in the epoch's log line when it changed; else that it did not (in full with -v)."""
        moved = row.get("genotype_distance")
        if moved in (None, "") or float(moved) > 0:
            return f"genotype {self.genotype}"
        logger.debug("genotype %s", self.genotype)
        return "genotype unchanged"

    def early_stop(self) -> str | None:
        kept = self.eigenvalue_stop()
        if kept is not None:
            k = self.cfg.es_window
            return (f"DARTS-ES: the mean alpha-Hessian eigenvalue of the last {k} epochs reached 1/"
                    f"{self.cfg.es_threshold:g} times that of the {k} before (--early-stop eigenvalue); the "
                    f"genotype of epoch {kept} is kept")
        if self.converged():
            return (f"the genotype moved by at most {self.cfg.early_stop_distance:g} for {self.cfg.patience} "
                    "epochs (--early-stop-distance, --patience)")
        if self._metric_settled():
            return (f"D-DARTS' metric to the {self.space.layout.name} baseline moved by at most {METRIC_TOLERANCE:g} "
                    f"over {METRIC_EPOCHS} epochs (--no-arch-metric to search on)")
        return None

    def result(self) -> SearchResult:
        return SearchResult(self.run_dir, self.final_genotype(), list(self.metrics))

    def _run_epochs(self, run_dir) -> SearchResult:
        if self.dist.is_main:
            logger.info("%s", native.status(self.device))  # which kernels the step runs (ops/native.py)
        return super()._run_epochs(run_dir)

    def _distance_to_previous(self, epoch: int, genotype: Genotype) -> float | None:
        """Architecture distance from the previous epoch's genotype (the initial alphas' before epoch 1)."""
        from ..distance import architecture_distance

        raw = {n: rows[epoch - 1] for n, rows in self.history.items()}
        try:
            previous = self.network.genotype(raw=raw)
        except (IndexError, KeyError):
            return None
        return float(architecture_distance(previous, genotype)["distance"])

    def _arch_metric(self) -> float | None:
        """D-DARTS' metric between the baseline's designs and the current ones, derived as D-DARTS does for it
        (threshold-edge at the search's threshold, one cell per design); None when no gate reaches it."""
        from ..distance import hausdorff_metric

        layout = self.space.layout
        threshold = self.threshold if self.threshold is not None else DEFAULT_THRESHOLD
        try:
            current = self.network.genotype("threshold-edge", threshold, per_design=True)
        except GenotypeError:
            return None
        value = hausdorff_metric(layout.gene_genotype(), current)["metric"]
        logger.info("architectural metric to the %s baseline: %.6f", layout.name, value)
        return value

    def _metric_settled(self) -> bool:
        """D-DARTS' stop: from the sixth epoch after the warm-up on, the metric is within METRIC_TOLERANCE of
        each of the METRIC_EPOCHS values before it (those from that point on)."""
        if self.space.layout is None or not self.cfg.arch_metric:
            return False
        start = self.cfg.pretrain_epochs + 6  # D-DARTS: epoch >= pretrain_epochs + 5, counted from 0
        values = [r.get("arch_metric") for r in self.metrics if int(r["epoch"]) >= start]
        if len(values) <= METRIC_EPOCHS or any(v in (None, "") for v in values[-METRIC_EPOCHS - 1:]):
            return False
        last = float(values[-1])
        return all(abs(last - float(v)) <= METRIC_TOLERANCE for v in values[-METRIC_EPOCHS - 1:-1])

    def converged(self) -> bool:
        """--early-stop-distance: the last ``patience`` epochs after the warm-up each moved the genotype by at
        most the tolerance."""
        tol, k = self.cfg.early_stop_distance, self.cfg.patience
        if tol is None:
            return False
        recent = [r for r in self.metrics if int(r["epoch"]) > self.cfg.pretrain_epochs][-k:]
        return len(recent) == k and all(r.get("genotype_distance") not in (None, "") and
                                        float(r["genotype_distance"]) <= tol for r in recent)

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.weight_optimizer.zero_grad(set_to_none=True)
        drop = self.cfg.drop_path_prob * (self._epoch - 1) / self.cfg.epochs  # scheduled as in training
        # SDARTS-RS and drop path (both off by default) act on the weight step alone: the alpha step's finite
        # difference needs the same function at w + R v and w - R v
        with self.network.perturbed_gates(self.smoothing_radius()), self.network.dropped_paths(drop):
            loss, logits = weight_backward(self.network, x, y, self.device, self.amp_dtype,
                                           self.scaler if self.scaler.is_enabled() else None)
        self.dist.average_grads_(self.network.weights())
        self.scaler.unscale_(self.weight_optimizer)
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.network.weights(), self.cfg.grad_clip)
        self.scaler.step(self.weight_optimizer)  # skips the step on inf/NaN gradients (fp16), then adapts the scale
        self.scaler.update()
        self.dist.broadcast_buffers_(self.network)
        return loss, logits

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy on the alpha half, in eval mode (the paper's validation during search)."""
        self.network.eval()
        avg = Average()
        for x, y in self.val_loader:
            x, y = x.to(self.device, memory_format=self.memory_format), y.to(self.device)
            with autocast(self.device, self.amp_dtype):
                logits = self.network(x).float()
            avg.update(F.cross_entropy(logits, y), logits, y)
        self.network.train()
        avg = Average().load(self.dist.sum(avg.state()))  # every rank read its own shard
        return {"loss": avg.mean_loss, "acc": avg.accuracy}


def _gen_state(loader) -> torch.Tensor | None:
    gen = getattr(loader, "generator", None)
    return gen.get_state() if gen is not None else None


def _set_gen_state(loader, state) -> None:
    gen = getattr(loader, "generator", None)
    if gen is not None and state is not None:
        gen.set_state(state)
