"""`SearchSpace`: what a search chooses from (candidate ops, nodes per cell, how many nodes form the output)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, UnknownNameError
from .ops import DARTS_PRIMITIVES, OPS
from .ops.approx import APPROX_PRIMITIVES
from .registry import Registry


@dataclass(frozen=True)
class SearchSpace:
    """Candidate ops on every edge, ``nodes`` intermediate nodes per cell, output = last ``multiplier`` nodes."""

    primitives: tuple[str, ...] = DARTS_PRIMITIVES
    nodes: int = 4
    multiplier: int = 4
    # a space around a handcrafted network: its cell design, which the alphas start on (baselines.py), and
    # the derivation rule that suits it
    baseline: Any = None
    rule: str = "top-k"
    threshold: float | None = None
    # a supernet laid out as a whole handcrafted network (D-DARTS' DARTOpti: baselines.CellLayout), and the
    # gates and warm-up epochs it comes with (None: the config's defaults, softmax and 0)
    layout: Any = None
    gates: str | None = None
    pretrain_epochs: int | None = None
    # the op modules a space file imports (files as absolute paths): a run's config records them
    ops_modules: tuple[str, ...] = field(default=(), compare=False)
    # keyword options for the op builders that take them (build_op), e.g. the approx_* ops' multiplier table
    op_options: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        prims = tuple(self.primitives)
        object.__setattr__(self, "primitives", prims)
        if not prims:
            raise ConfigError("primitives is empty; name at least one op, e.g. --primitives sep_conv_3x3,skip_connect")
        dupes = sorted({p for p in prims if prims.count(p) > 1})
        if dupes:
            raise ConfigError(f"primitives lists {', '.join(dupes)} more than once; name each op once")
        unknown = [p for p in prims if p not in OPS]
        if unknown:
            raise UnknownNameError(f"unknown op{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                                   f"known: {', '.join(sorted(OPS.names()))} (your own ops: @register_op in a "
                                   "module loaded with --ops-module)")
        if all(p == "none" for p in prims):
            raise ConfigError("primitives holds only 'none'; add at least one real op")
        if not isinstance(self.nodes, int) or self.nodes < 1:
            raise ConfigError(f"nodes must be a whole number >= 1, got {self.nodes!r}")
        if not isinstance(self.multiplier, int) or not 1 <= self.multiplier <= self.nodes:
            raise ConfigError(
                f"multiplier must be between 1 and nodes ({self.nodes}), got {self.multiplier!r}: "
                "the cell output concatenates the last `multiplier` nodes"
            )

    @property
    def num_edges(self) -> int:
        """Edges per cell: node i (0-based) reads the two cell inputs and the i earlier nodes."""
        return sum(2 + i for i in range(self.nodes))

    @property
    def num_ops(self) -> int:
        return len(self.primitives)

    def edge_index(self, node: int, state: int) -> int:
        """Row of the alpha matrix for the edge from ``state`` into intermediate ``node`` (0-based)."""
        return sum(2 + i for i in range(node)) + state

    def concat(self) -> list[int]:
        return list(range(2 + self.nodes - self.multiplier, 2 + self.nodes))


SPACES: Registry[SearchSpace] = Registry("search space")
SPACES.register("darts", SearchSpace())
# MobileNet and EfficientNet blocks (ops/mobile.py)
SPACES.register("mobile", SearchSpace(primitives=(
    "none", "max_pool_3x3", "skip_connect", "mb_sep_conv_3x3", "mb_sep_conv_5x5", "mbconv_3x3_e3", "mbconv_3x3_e6",
    "mbconv_5x5_e3", "mbconv_5x5_e6", "fused_mbconv_3x3_e3")))
# DARTS convolutions beside CoAtNet-style attention and feed-forward blocks (ops/attention.py)
SPACES.register("attention", SearchSpace(primitives=(
    "none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "attention", "ffn")))
# the DARTS ops with approximate 8-bit multipliers in their convolutions (ops/approx.py)
SPACES.register("approx", SearchSpace(primitives=APPROX_PRIMITIVES))

# around handcrafted networks (D-DARTS): the cells start as a ResNet or Xception block (baselines.py)
def _baseline_space(name: str) -> SearchSpace:
    from .baselines import baseline_genotype

    g = baseline_genotype(name)
    return SearchSpace(primitives=g.primitives, nodes=len(g.normal.nodes), multiplier=1, baseline=g,
                       rule="threshold-edge", threshold=0.5)


for _name in ("resnet18", "resnet50", "xception"):
    SPACES.register(_name, _baseline_space(_name))


# D-DARTS' DARTOpti: the whole ResNet18, ResNet50 or Xception network as the supernet (one cell per entry of its
# seq, its reduction positions), D-DARTS' twelve ops, alphas 10 on the baseline's ops, sigmoid gates, 5 warm-up
# epochs, threshold-sparse derivation at 0.85 (D-DARTS' --arch_baseline)
def _dartopti_space(name: str) -> SearchSpace:
    from .baselines import dartopti_layout
    from .genotype import DEFAULT_THRESHOLD
    from .ops.ddarts import DARTOPTI_PRIMITIVES

    layout = dartopti_layout(name)
    nodes = len(layout.genes[0].nodes)
    # the output is every node, as D-DARTS' trained cells concatenate them (its supernet takes the last 4,
    # which differs for ResNet50's 6 nodes)
    return SearchSpace(primitives=DARTOPTI_PRIMITIVES, nodes=nodes, multiplier=nodes,
                       rule="threshold-sparse", threshold=DEFAULT_THRESHOLD, layout=layout, gates="sigmoid",
                       pretrain_epochs=5)


for _name in ("resnet18", "resnet50", "xception"):
    SPACES.register(f"dartopti-{_name}", _dartopti_space(_name))


def get_space(name: str) -> SearchSpace:
    """A named search-space preset (``darts``: the paper's 8 ops, 4 nodes, multiplier 4)."""
    return SPACES.get(name)


SPACE_FILE_KEYS = ("primitives", "nodes", "multiplier", "ops_module")


def is_space_file(name: str) -> bool:
    return str(name).endswith((".yaml", ".yml"))


def load_space_file(path: str | Path) -> SearchSpace:
    """A search space from YAML: ``primitives`` (a list), optional ``nodes`` and ``multiplier`` (default 4 and
    all nodes), optional ``ops_module`` (a module or .py file, relative to the YAML's folder, or a list of them)
    imported first so that its ops can be named."""
    from .config import read_yaml
    from .plugins import load_ops_modules

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search space file {path} does not exist")
    values = read_yaml(path)
    unknown = sorted(set(values) - set(SPACE_FILE_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; a space file has "
                          f"{', '.join(SPACE_FILE_KEYS)}")
    modules = values.get("ops_module")
    if modules is not None:
        if isinstance(modules, str):
            modules = [modules]
        if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
            raise ConfigError(f"{path}: ops_module must be a module name, a file, or a list of them")
        modules = [str((path.parent / m).resolve()) if m.endswith(".py") and (path.parent / m).is_file() else m
                   for m in modules]
        load_ops_modules(modules)
    prims = values.get("primitives")
    if isinstance(prims, str):
        prims = [p.strip() for p in prims.split(",") if p.strip()]
    if not isinstance(prims, list) or not all(isinstance(p, str) for p in prims):
        raise ConfigError(f"{path}: primitives must be a list of op names")
    nodes = values.get("nodes", 4)
    multiplier = values.get("multiplier", nodes)
    for key, v in (("nodes", nodes), ("multiplier", multiplier)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{path}: {key} must be a whole number, got {v!r}")
    return SearchSpace(primitives=tuple(prims), nodes=nodes, multiplier=multiplier,
                       ops_modules=tuple(modules or ()))


def resolve_space(name: str) -> SearchSpace:
    """A named space, or a YAML space file."""
    if is_space_file(name):
        return load_space_file(name)
    return get_space(name)


__all__ = ["SearchSpace", "SPACES", "get_space", "load_space_file", "resolve_space"]
