"""Run configs: dataclasses with the paper's defaults, YAML load/save and validation with one-line errors.

Keys are flat and named like the flags (``init_channels`` for ``--init-channels``). Precedence:
defaults < ``--config FILE`` < flags given on the command line.
"""
from __future__ import annotations

import dataclasses
import io
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError
from .genotype import DEFAULT_THRESHOLD, DERIVATION_RULES, GATES


def _dataset_name(name: Any) -> Any:
    """Data set names are case-insensitive (data.canonical_dataset); the config keeps the registered one."""
    from .data import canonical_dataset

    return canonical_dataset(name)


def help_(text: str, **meta: Any) -> dict:
    """Field metadata: the flag's help text (and optional choices / metavar)."""
    return {"help": text, **meta}


# Training recipes: defaults applied under the config file and flags (recipe=...). cifar: the paper's CIFAR
# training (the plain defaults); imagenet: its ImageNet training (Section 3.4); quick: a first trial.
RECIPES: dict[str, dict[str, Any]] = {
    "cifar": {},
    # a first trial: does the cell train on my data at all? Minutes on a CPU for small images, not a result
    "quick": {"epochs": 10, "layers": 8, "init_channels": 16, "batch_size": 64, "drop_path_prob": 0.0,
              "auxiliary": False},
    "imagenet": {"epochs": 250, "batch_size": 128, "lr": 0.1, "scheduler": "step", "lr_gamma": 0.97,
                 "weight_decay": 3e-5, "label_smoothing": 0.1, "auxiliary_weight": 0.4, "layers": 14,
                 "init_channels": 48, "stem": "imagenet", "drop_path_prob": 0.0, "dataset": "imagenet"},
}


@dataclass
class RunOptions:
    """Run-time options that search and training share (where and how a run runs, not what it computes)."""

    device: str = field(default="auto", metadata=help_("auto (CUDA when present), cpu, cuda, cuda:N"))
    workers: int = field(default=2, metadata=help_("data loader worker processes"))
    threads: int | None = field(default=None, metadata=help_(
        "CPU threads of each process (default: the CPUs this process may use, less those other work keeps busy; "
        "1 on a busy shared machine)", metavar="N"))
    out: str | None = field(default=None, metadata=help_(
        "run directory (default: runs/<search|train>-<dataset>-<time>)", metavar="DIR"))
    download: bool = field(default=True, metadata=help_("download cifar10/cifar100 when missing and online"))
    limit_batches: int | None = field(default=None, metadata=help_(
        "train on at most N batches per epoch (a first trial on a large data set; evaluation stays whole) "
        "(default: all)", metavar="N"))
    log_every: int = field(default=50, metadata=help_("log a line every N steps when not on a terminal (0: off)"))
    checkpoint_every: int = field(default=100, metadata=help_(
        "also save a checkpoint every N steps within an epoch, to resume mid-epoch (0: at epoch ends only)"))
    deterministic: bool = field(default=False, metadata=help_(
        "bitwise repeatable on the same machine: deterministic algorithms only (slower on GPU)"))


@dataclass
class SearchConfig(RunOptions):
    """Everything a search needs. Defaults are those of the DARTS paper (CIFAR-10 search, Section 3.1.1)."""

    dataset: str = field(default="cifar10", metadata=help_(
        "data set: cifar10, cifar100, mnist, fashionmnist, imagefolder, imagenet, digits (any case)"))
    data: str = field(default="data", metadata=help_("folder holding the data set (downloaded there if possible)",
                                                      metavar="DIR"))
    epochs: int = field(default=50, metadata=help_("search epochs"))
    batch_size: int = field(default=64, metadata=help_("batch size of both the weight and the alpha step"))
    layers: int | None = field(default=None, metadata=help_(
        "cells in the supernet, reductions at 1/3 and 2/3 (default: 8; a dartopti space: its network's)"))
    init_channels: int = field(default=16, metadata=help_("channels C of the first cells"))
    nodes: int | None = field(default=None, metadata=help_("intermediate nodes per cell (default: the space's, 4)"))
    multiplier: int | None = field(default=None, metadata=help_(
        "how many of the last nodes form the cell output (default: the space's, 4; with --nodes alone, all)"))
    stem_multiplier: int = field(default=3, metadata=help_("stem channels = stem_multiplier * C"))
    space: str = field(default="darts", metadata=help_(
        "search space: a registered one (`dartsnas ops` lists them: darts, mobile, attention, approx, resnet18, "
        "resnet50, xception, dartopti-resnet18, dartopti-resnet50, dartopti-xception) or a YAML file with "
        "primitives, nodes, multiplier",
        metavar="NAME|FILE"))
    primitives: list[str] | None = field(default=None, metadata=help_(
        "candidate ops, comma-separated (default: the space's)", metavar="OP,OP,..."))
    ops_module: list[str] | None = field(default=None, metadata=help_(
        "import these modules (dotted names or .py files) first: their @register_op ops become usable",
        metavar="MODULE,..."))
    approx_table: str | None = field(default=None, metadata=help_(
        "multiplier table of the approx_* ops: an EvoApprox8b .bin file or a 256x256 .npy array (default: exact "
        "products)", metavar="FILE"))
    alphas: str | None = field(default=None, metadata=help_(
        "shared: one set of alphas per cell type (DARTS); per-cell: every cell its own (D-DARTS) (default: "
        "shared; a dartopti space: one set per design of its network)", choices=["shared", "per-cell"]))
    gates: str | None = field(default=None, metadata=help_(
        "op weights: softmax over each edge's ops (DARTS) or an independent sigmoid per op (FairDARTS) "
        "(default: softmax; sigmoid in the dartopti spaces)", choices=list(GATES)))
    zero_one_weight: float = field(default=10.0, metadata=help_(
        "with --gates sigmoid: weight of the zero-one loss that pushes each gate to 0 or 1 (0: off)"))
    derive_rule: str | None = field(default=None, metadata=help_(
        "genotype derivation: top-k (DARTS: two edges per node, best op each), or D-DARTS' rules: "
        "threshold-sparse (two strongest edges per node, their best op if at or above --threshold), "
        "threshold-edge (every edge, its two best ops at or above --threshold), threshold-complete (every op "
        "at or above --threshold) (default: the space's: top-k; threshold-edge for resnet18, resnet50, xception)",
        choices=list(DERIVATION_RULES)))
    threshold: float | None = field(default=None, metadata=help_(
        f"gate threshold of the threshold rules (default: {DEFAULT_THRESHOLD}; 0.5 in the resnet and xception "
        "spaces)"))
    pretrain_epochs: int | None = field(default=None, metadata=help_(
        "warm-up: train only the weights for this many epochs before the alpha steps begin (default: 0; 5 in "
        "the dartopti spaces)"))
    arch_metric: bool = field(default=True, metadata=help_(
        "dartopti spaces: log D-DARTS' metric between the cells and the baseline's every epoch and stop when it "
        "settles (moves by <= 0.001 over 4 epochs), as D-DARTS does"))
    early_stop_distance: float | None = field(default=None, metadata=help_(
        "stop when the distance between consecutive epochs' genotypes stays at or below this for --patience "
        "epochs (default: never)", metavar="TOL"))
    patience: int = field(default=3, metadata=help_("epochs for --early-stop-distance"))
    hessian_eigenvalue: bool = field(default=False, metadata=help_(
        "after each epoch, the largest eigenvalue of the Hessian of the validation loss with respect to the "
        "alphas (Zela et al.: it grows before a collapse), on --eigen-batches fixed batches of the alpha half"))
    eigen_batches: int = field(default=1, metadata=help_(
        "batches for --hessian-eigenvalue (each Lanczos iteration costs about three passes per batch)",
        metavar="N"))
    early_stop: str | None = field(default=None, metadata=help_(
        "eigenvalue: DARTS-ES (Zela et al.): stop when the mean eigenvalue over the last --es-window epochs "
        "exceeds that over the window before by the factor 1/--es-threshold, and keep the genotype of "
        "--es-window epochs before the stop (turns --hessian-eigenvalue on) (default: never)",
        choices=["eigenvalue"]))
    es_window: int = field(default=5, metadata=help_("DARTS-ES's window k, in epochs (the paper's 5)",
                                                     metavar="K"))
    es_threshold: float = field(default=0.75, metadata=help_(
        "DARTS-ES's threshold T: stop when mean(previous window) / mean(last window) < T (the paper's 0.75)",
        metavar="T"))
    max_skip: int | None = field(default=None, metadata=help_(
        "P-DARTS: derive at most M skip_connect ops per normal cell, replacing the weakest ones by the next "
        "best edges (P-DARTS uses 2) (default: no cap)", metavar="M"))
    random_smoothing: float = field(default=0.0, metadata=help_(
        "SDARTS-RS (Chen & Hsieh): uniform noise of this radius on the op weights in each weight step, the "
        "radius rising linearly from 0.03 over the epochs (SDARTS uses 0.3; 0: off)", metavar="EPS"))
    auxiliary_skip: bool = field(default=False, metadata=help_(
        "DARTS- (Chu et al.): an auxiliary skip connection on every edge, its weight decaying linearly from 1 to "
        "0 over the epochs"))
    drop_path_prob: float = field(default=0.0, metadata=help_(
        "drop path on the edges in the weight step, its probability rising linearly to this over the epochs "
        "(Zela et al.'s regularised search, with a larger --weight-decay; 0: off)"))
    order: int = field(default=1, metadata=help_("1: first-order, 2: second-order (unrolled) alpha gradient",
                                                 choices=[1, 2]))
    hessian: str = field(default="finite-difference", metadata=help_(
        "second-order Hessian-vector product: the paper's finite difference, or exact double backward",
        choices=["finite-difference", "exact"]))
    partial_channels: int = field(default=1, metadata=help_(
        "PC-DARTS: send 1/K of the channels through each mixed op, with channel shuffle and edge "
        "normalisation (1: off, the paper's DARTS; PC-DARTS uses 4)", metavar="K"))
    recompute: str = field(default="ops", metadata=help_(
        "memory saving: ops (lean autograd of the DARTS ops: fastest and a third of the memory), off (plain "
        "autograd), or activation checkpointing of cells, edges, or all (least memory, slowest)",
        choices=["ops", "off", "cells", "edges", "all"]))
    channels_last: bool = field(default=True, metadata=help_(
        "channels-last memory format (faster on CPU and GPU; same maths)"))
    amp: str = field(default="off", metadata=help_(
        "mixed precision of the supernet's forward: off, bf16 (autocast), or fp16 (autocast and a gradient scaler "
        "in the weight step; --amp alone, as D-DARTS' flag; the alpha step stays in float32)",
        choices=["off", "bf16", "fp16"], const="fp16"))
    lr: float = field(default=0.025, metadata=help_("weight learning rate (SGD), cosine-annealed to --lr-min"))
    lr_min: float = field(default=0.001, metadata=help_("final weight learning rate"))
    momentum: float = field(default=0.9, metadata=help_("SGD momentum of the weights"))
    weight_decay: float = field(default=3e-4, metadata=help_("weight decay of the weights"))
    grad_clip: float = field(default=5.0, metadata=help_("clip the weight gradient norm to this (0: off)"))
    arch_lr: float = field(default=3e-4, metadata=help_("alpha learning rate (Adam)"))
    arch_weight_decay: float = field(default=1e-3, metadata=help_("alpha weight decay"))
    arch_betas: list[float] = field(default_factory=lambda: [0.5, 0.999], metadata=help_(
        "Adam betas of the alphas", metavar="B1,B2"))
    train_portion: float = field(default=0.5, metadata=help_(
        "share of the training set for the weights; the rest trains the alphas"))
    seed: int = field(default=2, metadata=help_("random seed"))

    def validate(self) -> SearchConfig:
        """Raise ConfigError on values that cannot build a run; return self."""
        _check_common(self)
        positive_ints = ("epochs", "batch_size", "layers", "init_channels", "nodes", "multiplier", "stem_multiplier")
        for name in positive_ints:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name, most in SEARCH_LIMITS.items():  # sizes that cannot run would build for minutes, then fail
            if getattr(self, name) is not None and getattr(self, name) > most:
                raise ConfigError(f"{name} must be at most {most}, got {getattr(self, name)} ({LIMIT_NOTE})")
        if self.layers is not None and self.layers < 3 and self.alphas != "per-cell":
            raise ConfigError(f"layers must be >= 3 for a search of a normal and a reduction cell, got {self.layers}: "
                              "with fewer every cell reduces and the normal cell would never be searched")
        if self.multiplier is not None and self.nodes is not None and self.multiplier > self.nodes:
            raise ConfigError(f"multiplier ({self.multiplier}) cannot exceed nodes ({self.nodes}): the cell output "
                              "concatenates the last `multiplier` nodes")
        if self.order not in (1, 2):
            raise ConfigError(f"order must be 1 or 2, got {self.order}")
        if self.hessian not in ("finite-difference", "exact"):
            raise ConfigError(f"hessian must be finite-difference or exact, got {self.hessian!r}")
        if self.alphas not in (None, "shared", "per-cell"):
            raise ConfigError(f"alphas must be shared or per-cell, got {self.alphas!r}")
        if self.gates is not None and self.gates not in GATES:
            raise ConfigError(f"gates must be softmax or sigmoid, got {self.gates!r}")
        if self.derive_rule is not None and self.derive_rule not in DERIVATION_RULES:
            raise ConfigError(f"derive_rule must be one of {', '.join(DERIVATION_RULES)}, got {self.derive_rule!r}")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.zero_one_weight < 0:
            raise ConfigError(f"zero_one_weight must be >= 0, got {self.zero_one_weight}")
        if (self.pretrain_epochs is not None and self.pretrain_epochs < 0) or self.patience < 1:
            raise ConfigError(f"pretrain_epochs must be >= 0 and patience >= 1, got {self.pretrain_epochs} and "
                              f"{self.patience}")
        if self.eigen_batches < 1 or self.es_window < 1 or not 0.0 < self.es_threshold < 1.0:
            raise ConfigError(f"eigen_batches and es_window must be >= 1 and es_threshold in (0, 1), got "
                              f"{self.eigen_batches}, {self.es_window} and {self.es_threshold}")
        if self.early_stop not in (None, "eigenvalue"):
            raise ConfigError(f"early_stop must be eigenvalue, got {self.early_stop!r}")
        if self.max_skip is not None and self.max_skip < 0:
            raise ConfigError(f"max_skip must be >= 0, got {self.max_skip}")
        for name in ("random_smoothing", "drop_path_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.early_stop_distance is not None and self.early_stop_distance < 0:
            raise ConfigError(f"early_stop_distance must be >= 0, got {self.early_stop_distance}")
        if self.recompute not in ("ops", "off", "cells", "edges", "all"):
            raise ConfigError(f"recompute must be ops, off, cells, edges or all, got {self.recompute!r}")
        if self.amp not in ("off", "bf16", "fp16"):
            raise ConfigError(f"amp must be off, bf16 or fp16, got {self.amp!r}")
        if self.partial_channels < 1 or self.init_channels % self.partial_channels:
            raise ConfigError(f"partial_channels must be >= 1 and divide init_channels ({self.init_channels}), "
                              f"got {self.partial_channels}")
        if not 0.0 < self.train_portion < 1.0:
            raise ConfigError(f"train_portion must be between 0 and 1 (exclusive), got {self.train_portion}")
        for name in ("lr", "arch_lr"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("lr_min", "momentum", "weight_decay", "grad_clip", "arch_weight_decay", "workers", "log_every",
                     "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr_min > self.lr:
            raise ConfigError(f"lr_min ({self.lr_min}) is larger than lr ({self.lr})")
        if len(self.arch_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.arch_betas):
            raise ConfigError(f"arch_betas must be two numbers in [0, 1), got {self.arch_betas}")
        if self.primitives is not None and not self.primitives:
            raise ConfigError("primitives is empty; name at least one op or leave it out for the space's")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig(RunOptions):
    """Training of the discrete network. Defaults are the paper's CIFAR-10 setting (Section 3.3);
    ``recipe: imagenet`` switches the defaults to its ImageNet setting (see ``RECIPES``)."""

    genotype: str | None = field(default=None, metadata=help_(
        "genotype file (JSON or classic text), FILE::NAME, a published name such as DARTS_V2, or the genotype "
        "text itself (JSON, Genotype(...), Genotype_nested(...), quoted)", metavar="PATH|NAME|TEXT"))
    from_run: str | None = field(default=None, metadata=help_(
        "take the genotype a search run saved (or derive it from a folder of the course project's "
        "alpha_normal_history.npy and alpha_reduce_history.npy)", metavar="RUN"))
    epoch: int | None = field(default=None, metadata=help_("with --from-run: the genotype after this epoch "
                                                           "(default: the final one)"))
    ops_module: list[str] | None = field(default=None, metadata=help_(
        "import these modules (dotted names or .py files) first, for genotypes using their ops (default: with "
        "--from-run, the search's)", metavar="MODULE,..."))
    approx_table: str | None = field(default=None, metadata=help_(
        "multiplier table of the approx_* ops: an EvoApprox8b .bin file or a 256x256 .npy array (default: with "
        "--from-run, the search's; else exact products)", metavar="FILE"))
    recipe: str = field(default="cifar", metadata=help_(
        "default settings: cifar (the paper's CIFAR training), imagenet (its ImageNet training) or quick (a first "
        "trial: 10 epochs of an 8-cell, C=16 network, batch 64, no auxiliary head or drop path)",
        choices=list(RECIPES)))
    dataset: str = field(default="cifar10", metadata=help_(
        "data set: cifar10, cifar100, mnist, fashionmnist, imagefolder, imagenet, digits (any case)"))
    data: str = field(default="data", metadata=help_("folder holding the data set", metavar="DIR"))
    epochs: int = field(default=600, metadata=help_("training epochs"))
    batch_size: int = field(default=96, metadata=help_("batch size"))
    layers: int | None = field(default=None, metadata=help_(
        "cells in the network (default: 20; a per-cell genotype's own cells, as D-DARTS trains its files)"))
    init_channels: int = field(default=36, metadata=help_("channels C of the first cells"))
    stem: str = field(default="auto", metadata=help_("auto (imagenet for 224-px data), cifar or imagenet",
                                                     choices=["auto", "cifar", "imagenet"]))
    lr: float = field(default=0.025, metadata=help_("SGD learning rate"))
    lr_min: float = field(default=0.0, metadata=help_("final learning rate of the cosine schedule"))
    scheduler: str = field(default="cosine", metadata=help_(
        "cosine (to --lr-min) or step (times --lr-gamma every epoch)", choices=["cosine", "step"]))
    lr_gamma: float = field(default=0.97, metadata=help_("with --scheduler step: decay per epoch"))
    momentum: float = field(default=0.9, metadata=help_("SGD momentum"))
    weight_decay: float = field(default=3e-4, metadata=help_("weight decay"))
    grad_clip: float = field(default=5.0, metadata=help_("clip the gradient norm to this (0: off)"))
    auxiliary: bool | None = field(default=None, metadata=help_(
        "auxiliary head at 2/3 depth (default: on where it fits, i.e. images of 32 px and more)"))
    auxiliary_weight: float = field(default=0.4, metadata=help_("weight of the auxiliary loss"))
    drop_path_prob: float = field(default=0.2, metadata=help_("drop-path probability, rising linearly from 0"))
    cutout: int | None = field(default=None, metadata=help_(
        "cutout length; --cutout alone means 16 (default: the data set's: 16 on CIFAR, 0 off)", const=16))
    autoaugment: bool = field(default=False, metadata=help_("torchvision's AutoAugment policy"))
    label_smoothing: float = field(default=0.0, metadata=help_("label smoothing of the loss"))
    amp: str = field(default="off", metadata=help_(
        "mixed precision: off, bf16 or fp16 (fp16 with a grad scaler; --amp alone, as D-DARTS' flag)",
        choices=["off", "bf16", "fp16"], const="fp16"))
    channels_last: bool = field(default=True, metadata=help_(
        "channels-last memory format (measured 1.3x the images per second of NCHW on the CPU; same maths)"))
    val_portion: float = field(default=0.0, metadata=help_(
        "hold out this share of the training set for validation, which picks the best checkpoint (0: none)"))
    seed: int = field(default=0, metadata=help_("random seed"))

    def validate(self) -> TrainConfig:
        _check_common(self)
        if (self.genotype is None) == (self.from_run is None):
            raise ConfigError("pass exactly one of --genotype PATH|NAME and --from-run RUN")
        if self.epoch is not None and self.from_run is None:
            raise ConfigError("--epoch picks a genotype of a search run; use it with --from-run RUN")
        for name in ("epochs", "batch_size", "layers", "init_channels"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("layers", "init_channels"):
            most = SEARCH_LIMITS[name]
            if getattr(self, name) is not None and getattr(self, name) > most:
                raise ConfigError(f"{name} must be at most {most}, got {getattr(self, name)} (the papers train 20 "
                                  "cells at C=36)")
        if self.epoch is not None and self.epoch < 0:
            raise ConfigError(f"epoch must be >= 0, got {self.epoch}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        for name in ("lr_min", "momentum", "weight_decay", "grad_clip", "auxiliary_weight", "workers", "log_every",
                     "label_smoothing", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.cutout is not None and self.cutout < 0:
            raise ConfigError(f"cutout must be >= 0, got {self.cutout}")
        if not 0.0 <= self.drop_path_prob < 1.0:
            raise ConfigError(f"drop_path_prob must be in [0, 1), got {self.drop_path_prob}")
        if not 0.0 < self.lr_gamma <= 1.0:
            raise ConfigError(f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if not 0.0 <= self.val_portion < 1.0:
            raise ConfigError(f"val_portion must be in [0, 1), got {self.val_portion}")
        if not self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be below 1, got {self.label_smoothing}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_matches(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    args = get_args(hint)
    if hint is Any:
        return True
    if origin is None:
        if hint is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if hint is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if hint is type(None):
            return value is None
        return isinstance(value, hint)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_type_matches(v, args[0]) for v in value)
    # Union / Optional
    return any(_type_matches(value, a) for a in args)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _check_common(cfg: Any) -> None:
    """What every config checks first: each value's type, and the data set's name (made canonical)."""
    _check_types(cfg)
    cfg.dataset = _dataset_name(cfg.dataset)
    for name in ("threads", "limit_batches"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")


# the largest supernet a search builds: far beyond the papers' (4-5 nodes, 5-20 cells, C=16-48)
SEARCH_LIMITS = {"nodes": 32, "layers": 256, "init_channels": 1024, "stem_multiplier": 16, "multiplier": 32}
LIMIT_NOTE = "the papers use 4 nodes, 8 cells and C=16"
MAX_SEED = 2**63 - 1  # torch's generators take a signed 64-bit seed


def _check_types(cfg: Any) -> None:
    """Each value's type; numbers finite (NaN passes every ``x <= 0`` check, so it is refused here, before an
    optimizer sees it); the seed within what the generators take."""
    hints = get_type_hints(type(cfg))
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if not _type_matches(value, hints[f.name]):
            raise ConfigError(f"{f.name} must be {_type_name(hints[f.name])}, got {value!r}")
        if hints[f.name] is float and isinstance(value, int):
            setattr(cfg, f.name, float(value))
        numbers = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise ConfigError(f"{f.name} must be a finite number, got {value!r}")
    seed = getattr(cfg, "seed", 0)
    if isinstance(seed, int) and not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be between 0 and 2**63 - 1, got {seed}")


def config_keys(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def from_dict(cls: type, values: dict[str, Any], *, source: str = "config") -> Any:
    """Build a config from defaults updated by ``values``; unknown keys are an error naming the known ones."""
    known = set(config_keys(cls))
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    cfg = cls(**values)
    return cfg.validate()


MAX_YAML_BYTES = 1 << 20  # a config or space file is a few hundred bytes


class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases (``*name``): a config needs none, and nested ones expand exponentially
    (a "billion laughs" file fills the memory)."""

    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        if self.check_event(yaml.events.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of config keys (a malformed, binary, huge or non-mapping file is one clear error)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"config file {path} is larger than {MAX_YAML_BYTES >> 20} MB; a config holds a few "
                              "keys")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader, without aliases)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise ConfigError(f"config file {path} is malformed{where}: {problem}") from None
    except (ValueError, RecursionError) as e:  # an integer of thousands of digits, nesting thousands deep
        raise ConfigError(f"config file {path} holds a value dartsnas will not read: {str(e)[:120]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def dump_yaml(values: dict[str, Any]) -> str:
    buf = io.StringIO()
    yaml.safe_dump(values, buf, sort_keys=False, default_flow_style=None)
    return buf.getvalue()


def load_config(cls: type, path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Any:
    """defaults < (a recipe's defaults, for training) < YAML file < overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_yaml(path))
    if overrides:
        values.update(overrides)
    if cls is TrainConfig:
        recipe = values.get("recipe", "cifar")
        if recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
        values = {**RECIPES[recipe], **values}
    return from_dict(cls, values, source=str(path) if path is not None else "config")

