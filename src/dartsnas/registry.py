"""A small name -> builder registry: one per extension point (ops, data sets, search spaces)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import DartsNASError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to builders. Registering a name twice is an error; an unknown name lists the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None, *, override: bool = False):
        """Register ``item`` under ``name``; without ``item``, return a decorator."""
        if not isinstance(name, str) or not name or any(c.isspace() or c == "," for c in name):
            raise DartsNASError(f"invalid {self.kind} name {name!r}: use a non-empty name without spaces or commas")

        def add(obj: T) -> T:
            if name in self._items and not override:
                raise DartsNASError(f"{self.kind} {name!r} is already registered; pick another name")
            self._items[name] = obj
            return obj

        return add if item is None else add(item)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}"
            ) from None

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._items)})"


Builder = Callable[..., T]
