"""`SearchSpace`: what a search chooses from (candidate ops, nodes per cell, how many nodes form the output)."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError
from .ops import DARTS_PRIMITIVES, OPS
from .registry import Registry


@dataclass(frozen=True)
class SearchSpace:
    """Candidate ops on every edge, ``nodes`` intermediate nodes per cell, output = last ``multiplier`` nodes."""

    primitives: tuple[str, ...] = DARTS_PRIMITIVES
    nodes: int = 4
    multiplier: int = 4

    def __post_init__(self) -> None:
        prims = tuple(self.primitives)
        object.__setattr__(self, "primitives", prims)
        if not prims:
            raise ConfigError("primitives is empty; name at least one op, e.g. --primitives sep_conv_3x3,skip_connect")
        dupes = sorted({p for p in prims if prims.count(p) > 1})
        if dupes:
            raise ConfigError(f"primitives lists {', '.join(dupes)} more than once; name each op once")
        for p in prims:
            OPS.get(p)  # unknown op -> one line with the known ones
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


def get_space(name: str) -> SearchSpace:
    """A named search-space preset (``darts``: the paper's 8 ops, 4 nodes, multiplier 4)."""
    return SPACES.get(name)


__all__ = ["SearchSpace", "SPACES", "get_space"]
