"""A name -> implementation registry for pluggable backends (models, data sets, steps)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Backends of one kind, registered by name; duplicate names are refused.

    `modules` maps names to the module that registers them when imported, so a
    backend with heavy imports (torch) is loaded only when it is first asked for.
    """

    def __init__(self, kind: str, modules: dict[str, str] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._modules = dict(modules or {})

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item
        return decorate

    def get(self, name: str) -> T:
        """The backend called `name` (imported on first use); KeyError lists the known names."""
        if name not in self._items and name in self._modules:
            importlib.import_module(self._modules[name])
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._modules))

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
