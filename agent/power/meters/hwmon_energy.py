"""A hwmon energy counter, energyN_input in µJ (cumulative; e.g. amd_energy, some PMBus supplies).

hwmon does not publish a counter's range, so a counter that goes backwards is
only unwrapped when `wrap_uj` is given; otherwise it is an error, never a silent loss.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

from agent.power.base import MeterError, now_ns, register
from agent.power.hwmon_devices import HwmonDeviceMeter, channels


@register
class HwmonEnergyMeter(HwmonDeviceMeter):
    """A named hwmon device's energy counter (options: device, channel = energyN, wrap_uj, rate_hz)."""

    name = "hwmon_energy"
    kind = "energy"

    def __init__(self, root: str = "/", device: str = "", channel: Optional[str] = None,
                 wrap_uj: Optional[int] = None, rate_hz: float = 10.0) -> None:
        super().__init__(root, device, channel, rate_hz)
        self.wrap_uj = wrap_uj
        self.method = "hwmon energy"
        self._last_uj = 0
        self._total_uj = 0

    def open(self) -> None:
        folder = self.device_folder()
        found = channels(folder, "energy*_input")
        name = f"{self.channel}_input" if self.channel else (found[0] if found else "")
        if not name or not os.path.exists(os.path.join(folder, name)):
            raise MeterError(f"hwmon {self.device} ({folder}) has no energy counter {name or 'energy*_input'}")
        self.open_files(folder, [name])
        self._last_uj = self.files[0].read_int()
        self._total_uj = 0
        self.method = f"hwmon {self.device} {name} (energy counter; coverage depends on the sensor)"

    def read_energy_j(self) -> Tuple[int, float]:
        if not self.files:
            raise MeterError("hwmon_energy meter used before open()")
        counter = self.files[0]
        before = now_ns()
        raw = counter.read_int()
        stamp = (before + now_ns()) // 2
        delta = raw - self._last_uj
        if delta < 0:
            if not self.wrap_uj:
                raise MeterError(f"{counter.path} went backwards ({self._last_uj} -> {raw} µJ); "
                                 "give wrap_uj if this counter wraps")
            delta += int(self.wrap_uj)
        self._last_uj = raw
        self._total_uj += delta
        return stamp, self._total_uj / 1e6
