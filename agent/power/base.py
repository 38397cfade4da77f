"""The meter contract every backend follows, the registry of meter types, and their error.

A meter is one small class per file (agent/power/<meter>.py). Its attributes:

  name             the registry key, the `type` of a meter spec ("ina3221", "rapl", ...)
  kind             "power": `sample()` gives instantaneous watts;
                   "energy": `read_energy_j()` gives a cumulative counter in joules;
                   "none": no readings at all
  method           how it measures, in words a result row can carry (valid after `open()`)
  nominal_rate_hz  how often the sampler should read it
  pushes           True when `sample()` blocks until the device pushes the next reading
                   (tegrastats, serial meters): the sampler then does not pace the calls
  is_measurement   False for the estimate and `none`: never present those as a measurement
  dropped_lines    lines a streaming meter received but could not use (bad checksum, banner)

Every meter takes `root` (the filesystem root its sysfs paths hang from, so tests
can point it at a fake tree) and its own keyword options. Meters are not
thread-safe: the sampler serializes every call.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar

# The one clock of every power sample and of the timed window's edges.
now_ns: Callable[[], int] = time.monotonic_ns

KINDS = ("power", "energy", "none")


class MeterError(RuntimeError):
    """A meter that cannot be created, opened or read; the message names the file, device or command."""


class Meter:
    """Base class of every meter (attributes in the module docstring)."""

    name = ""
    kind = "power"
    method = ""
    nominal_rate_hz = 1.0
    pushes = False
    is_measurement = True

    def __init__(self, root: str = "/") -> None:
        self.root = root
        self.dropped_lines = 0

    def open(self) -> None:
        """Find the device, check it can be read, and fix `method`."""

    def close(self) -> None:
        """Release the device; safe to call twice."""

    def sample(self) -> Tuple[int, float]:
        """(monotonic_ns, watts) of one instantaneous reading (kind "power")."""
        raise MeterError(f"meter {self.name!r} is of kind {self.kind!r}: it has no instantaneous power")

    def read_energy_j(self) -> Tuple[int, float]:
        """(monotonic_ns, joules) of a cumulative counter, unwrapped since `open()` (kind "energy")."""
        raise MeterError(f"meter {self.name!r} is of kind {self.kind!r}: it has no energy counter")

    @classmethod
    def probe(cls, root: str) -> Optional[Dict[str, Any]]:
        """A spec for this meter when `root` shows its hardware, for `auto`; None otherwise."""
        return None

    def __enter__(self) -> "Meter":
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


M = TypeVar("M", bound=Type[Meter])

METERS: Dict[str, Type[Meter]] = {}


def register(cls: M) -> M:
    """Class decorator: add a meter type to the registry under its `name`; duplicates are refused."""
    if not cls.name:
        raise ValueError(f"meter class {cls.__name__} has no name")
    if cls.name in METERS:
        raise ValueError(f"meter {cls.name!r} is registered twice ({METERS[cls.name].__name__}, {cls.__name__})")
    if cls.kind not in KINDS:
        raise ValueError(f"meter {cls.name!r} has kind {cls.kind!r}, not one of {KINDS}")
    METERS[cls.name] = cls
    return cls


def meter_class(name: str) -> Type[Meter]:
    """The meter type called `name`; MeterError lists the known names."""
    try:
        return METERS[name]
    except KeyError:
        raise MeterError(f"unknown power meter type {name!r}; known: {', '.join(sorted(METERS))}") from None


def option_names(cls: Type[Meter]) -> List[str]:
    """The keyword options a meter type accepts (its constructor's parameters besides root)."""
    parameters = inspect.signature(cls.__init__).parameters
    return [p for p in parameters if p not in ("self", "root")]


def build(spec: Dict[str, Any], root: str = "/") -> Meter:
    """A meter from a spec dict {"type": name, **options}; unknown options are refused by name."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise MeterError(f"a power meter spec needs a 'type' key, got {spec!r}")
    cls = meter_class(str(spec["type"]))
    options = {k: v for k, v in spec.items() if k != "type"}
    known = option_names(cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise MeterError(f"power meter {cls.name!r}: unknown option(s) {unknown}; it takes {known}")
    return cls(root=root, **options)
