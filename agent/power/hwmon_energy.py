"""A hwmon energy counter, energyN_input in µJ (cumulative; e.g. amd_energy, some PMBus supplies).

hwmon does not publish a counter's range, so a counter that goes backwards is
only unwrapped when `wrap_uj` is given; otherwise it is an error, never a silent loss.
"""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

from agent.power.base import Meter, MeterError, now_ns, register
from agent.power.hwmon import channels, find_device
from agent.power.sysfs import SysfsValue


@register
class HwmonEnergyMeter(Meter):
    """A named hwmon device's energy counter (options: device, channel = energyN, wrap_uj, rate_hz)."""

    name = "hwmon_energy"
    kind = "energy"

    def __init__(self, root: str = "/", device: str = "", channel: Optional[str] = None,
                 wrap_uj: Optional[int] = None, rate_hz: float = 10.0) -> None:
        super().__init__(root)
        if not device:
            raise MeterError("hwmon_energy meter needs `device`: the hwmon `name` or folder (hwmon2)")
        self.device = device
        self.channel = channel
        self.wrap_uj = wrap_uj
        self.nominal_rate_hz = float(rate_hz)
        self.method = "hwmon energy"
        self._counter: Optional[SysfsValue] = None
        self._last_uj = 0
        self._total_uj = 0

    def open(self) -> None:
        folder = find_device(self.root, self.device)
        found: List[str] = channels(folder, "energy*_input")
        name = f"{self.channel}_input" if self.channel else (found[0] if found else "")
        if not name or not os.path.exists(os.path.join(folder, name)):
            raise MeterError(f"hwmon {self.device} ({folder}) has no energy counter {name or 'energy*_input'}")
        self._counter = SysfsValue(os.path.join(folder, name))
        self._last_uj = self._counter.read_int()
        self._total_uj = 0
        self.method = f"hwmon {self.device} {name} (energy counter; coverage depends on the sensor)"

    def read_energy_j(self) -> Tuple[int, float]:
        if self._counter is None:
            raise MeterError("hwmon_energy meter used before open()")
        before = now_ns()
        raw = self._counter.read_int()
        stamp = (before + now_ns()) // 2
        delta = raw - self._last_uj
        if delta < 0:
            if not self.wrap_uj:
                raise MeterError(f"{self._counter.path} went backwards ({self._last_uj} -> {raw} µJ); "
                                 "give wrap_uj if this counter wraps")
            delta += int(self.wrap_uj)
        self._last_uj = raw
        self._total_uj += delta
        return stamp, self._total_uj / 1e6

    def close(self) -> None:
        if self._counter is not None:
            self._counter.close()
            self._counter = None
