"""The meter contract every backend follows, the registry of meter types, and their error.

A meter is one small class per file (agent/power/meters/<meter>.py). Its attributes:

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

The registry (`METERS`) knows every meter by name from `METER_MODULES` and imports
a meter's module only when that meter is first asked for.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar

from agent.registry import Registry, UnknownName

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

# Every meter orch has: its name, the `type` of a spec, and the module defining it.
METER_MODULES: Dict[str, str] = {name: f"agent.power.meters.{name}" for name in (
    "command", "estimate", "hwmon", "hwmon_energy", "ina219", "ina260", "ina3221", "none", "rapl", "rpi_pmic",
    "smartpower2", "smartpower3", "tegrastats")}

METERS: Registry[Type[Meter]] = Registry("power meter", modules=METER_MODULES)

# The spec type that picks a meter by probing the board (agent.power.detect); it takes no options.
AUTO = "auto"


def register(cls: M) -> M:
    """Class decorator: add a meter type to the registry under its `name`; duplicates are refused."""
    if not cls.name:
        raise ValueError(f"meter class {cls.__name__} has no name")
    if cls.kind not in KINDS:
        raise ValueError(f"meter {cls.name!r} has kind {cls.kind!r}, not one of {KINDS}")
    home = METER_MODULES.get(cls.name)
    if home is not None and cls.__module__ != home:
        # Load the real meter first, so a second class of its name is refused whatever the import order.
        METERS.get(cls.name)
    METERS.register(cls.name)(cls)
    return cls


def meter_class(name: str) -> Type[Meter]:
    """The meter type called `name` (its module imported on first use); MeterError lists the known names."""
    try:
        return METERS.get(name)
    except UnknownName:
        raise MeterError(f"unknown power meter type {name!r}; known: {', '.join(METERS.names())}") from None


def option_names(cls: Type[Meter]) -> List[str]:
    """The keyword options a meter type accepts (its constructor's parameters besides root)."""
    parameters = inspect.signature(cls.__init__).parameters
    return [p for p in parameters if p not in ("self", "root")]


def spec_problem(spec: Any) -> Optional[str]:
    """Why a meter spec like {"type": "ina3221", ...options} cannot be used, in one line; None when it can.

    Checks the type and the option names only (the meter's module is imported, no hardware is opened).
    """
    if not isinstance(spec, Mapping) or "type" not in spec:
        return f"a power meter spec needs a 'type' key, got {spec!r}"
    name = spec["type"]
    if not isinstance(name, str):
        return f"a power meter spec's 'type' must be a string, got {name!r}"
    options = sorted((key for key in spec if key != "type"), key=str)
    if name == AUTO:
        return f"power meter {AUTO!r} takes no options, got {options}" if options else None
    if name not in METERS:
        return f"unknown power meter type {name!r}; known: {', '.join([AUTO, *METERS.names()])}"
    cls = meter_class(name)
    known = option_names(cls)
    unknown = [key for key in options if key not in known]
    if unknown:
        return f"power meter {cls.name!r}: unknown option(s) {unknown}; it takes {known}"
    return None


def build(spec: Dict[str, Any], root: str = "/") -> Meter:
    """A meter from a spec dict {"type": name, **options} naming a meter (not auto); MeterError says what is wrong."""
    problem = spec_problem(spec)
    if problem is None and spec["type"] == AUTO:
        problem = f"power meter {AUTO!r} is resolved by agent.power.create(), not built"
    if problem is not None:
        raise MeterError(problem)
    cls = meter_class(spec["type"])
    return cls(root=root, **{k: v for k, v in spec.items() if k != "type"})
