"""Power and energy meters: one module per meter (agent/power/meters/), all with the same small contract.

The contract (agent/power/base.py): a class with `open()`, `close()`, and either
`sample() -> (monotonic_ns, watts)` (kind "power") or `read_energy_j() ->
(monotonic_ns, joules)` (kind "energy"), plus `name`, `kind`, `method`,
`nominal_rate_hz`. The registry (`METERS`) finds meters by name, imports a meter's
module only when that meter is first used, and refuses duplicates. The helpers the
meters share (sysfs, stream, i2c, serialport, hwmon_devices) and the sampler with its
integration (sampler, energy) stay here, beside the meters.

    spec_problem({"type": "ina3221"})            # None; else one line saying why the spec cannot be used
    meter = create({"type": "ina3221"})          # or {"type": "auto"}, {"type": "smartpower3", "port": ...}
    sampler = PowerSampler(meter, idle_s=3.0)    # agent/power/sampler.py

`auto` (detect) tries, in this order, and takes the first whose hardware shows:
  1. ina3221     Jetson on-board monitor in sysfs: the board input rail, no subprocess
  2. tegrastats  Jetson whose sysfs monitor is hidden: the same rails through the tool
  3. rpi_pmic    Raspberry Pi 5 PMIC via vcgencmd: SoC-side rails, not wall power
  4. rapl        x86 package energy counters (picked even when root-only: open() says how to fix that)
  5. none        nothing to read: timing only
External meters (smartpower3, smartpower2, ina219, ina260, command, hwmon,
hwmon_energy) are never picked automatically: a serial port or I2C address
could be anything, and what a generic hwmon sensor covers cannot be told from
sysfs. `estimate` is never picked: it is not a measurement.
"""

from __future__ import annotations

from typing import Any, Dict, List

# Importing this package imports no meter: the registry imports each on first use.
from agent.power.base import AUTO, METERS, Meter, MeterError, build, meter_class, spec_problem
from agent.power.sampler import PowerSampler, empty_result

AUTO_ORDER = ("ina3221", "tegrastats", "rpi_pmic", "rapl")

__all__ = ["AUTO_ORDER", "METERS", "Meter", "MeterError", "PowerSampler", "create", "detect", "empty_result",
           "names", "spec_problem"]


def names() -> List[str]:
    """Every registered meter type (no meter module is imported)."""
    return METERS.names()


def detect(root: str = "/") -> Dict[str, Any]:
    """The meter spec `auto` resolves to on the board whose filesystem is at `root` (see the module docstring)."""
    for name in AUTO_ORDER:
        spec = meter_class(name).probe(root)
        if spec is not None:
            return spec
    return {"type": "none"}


def create(spec: Dict[str, Any], root: str = "/") -> Meter:
    """A meter from a spec dict like {"type": "ina3221", ...options}; {"type": "auto"} detects one.

    MeterError carries `spec_problem(spec)` when the spec cannot be used.
    """
    problem = spec_problem(spec)
    if problem is not None:
        raise MeterError(problem)
    if spec["type"] == AUTO:
        spec = detect(root)
    return build(spec, root)
