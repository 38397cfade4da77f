"""A name -> backend registry, the one style every pluggable family in orch uses.

Power meters (agent/power/), models, data sets and build steps (orchestrator/)
are each a `Registry`: one module per backend, listed by name in `modules`, and
imported only when that backend is first asked for. So a package never imports
its own backends at import time (no import cycle between a package and its
backends), and nothing pays for a backend it does not use (torch, smbus2).

The registry lives in the agent because the agent runs on boards with nothing
of the workstation's code; the workstation imports it from here (the agent is
the bottom layer, see docs/architecture.md). Standard library only, Python 3.8.
"""

from __future__ import annotations

import importlib
from typing import Callable, Dict, Generic, Iterator, List, Optional, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """A name no backend of the registry answers to; the message lists the known names."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown name"


class Registry(Generic[T]):
    """Backends of one kind, found by name (see the module docstring).

    kind: what a backend is, for messages ("model", "power meter", ...)
    modules: name -> the module that registers that name when imported
    """

    def __init__(self, kind: str, modules: Optional[Dict[str, str]] = None) -> None:
        self.kind = kind
        self._items: Dict[str, T] = {}
        self._modules: Dict[str, str] = dict(modules or {})

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register `item` as `name`; a name registered twice is refused."""

        def decorate(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorate

    def get(self, name: str) -> T:
        """The backend called `name` (its module imported on first use); UnknownName lists the known names."""
        if name not in self._items and name in self._modules:
            importlib.import_module(self._modules[name])
        try:
            return self._items[name]
        except KeyError:
            raise UnknownName(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def load_all(self) -> Dict[str, T]:
        """Every backend, each module imported (a test imports every backend this way)."""
        return {name: self.get(name) for name in self.names()}

    def names(self) -> List[str]:
        """Every known name, sorted, without importing anything."""
        return sorted(set(self._items) | set(self._modules))

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
