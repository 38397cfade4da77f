"""Any Linux hwmon sensor that reports power, or voltage and current (kernel sysfs-interface units).

Channels, first found wins unless `channel` names one:
  powerN_input, then powerN_average   (µW)
  inN_input x currN_input             (mV x mA; the same N unless `voltage`/`current` name the pair)
Never picked by `auto`: what a sensor covers (a GPU, a USB port, the board input)
cannot be told from sysfs, so the user names the device.
"""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

from agent.power.base import MeterError, now_ns, register
from agent.power.hwmon_devices import HwmonDeviceMeter, channels


@register
class HwmonMeter(HwmonDeviceMeter):
    """A named hwmon device's power (options: device, channel, voltage, current, rate_hz)."""

    name = "hwmon"
    kind = "power"
    device_help = "the hwmon `name` (e.g. ina226) or folder (hwmon2)"

    def __init__(self, root: str = "/", device: str = "", channel: Optional[str] = None,
                 voltage: Optional[str] = None, current: Optional[str] = None, rate_hz: float = 20.0) -> None:
        super().__init__(root, device, channel, rate_hz)
        self.voltage = voltage
        self.current = current
        self.method = "hwmon"
        self._scale = 1.0

    def _pick(self, folder: str) -> Tuple[List[str], float, str]:
        """(files, scale to watts, words) of the channel to read."""
        if self.channel:
            if self.channel.startswith("power"):
                name = self.channel if "_" in self.channel else f"{self.channel}_input"
                return [name], 1e-6, name
            raise MeterError(f"hwmon channel {self.channel!r}: give powerN, or voltage= and current=")
        if self.voltage or self.current:
            if not (self.voltage and self.current):
                raise MeterError("hwmon meter: give both voltage= (inN) and current= (currN)")
            return [f"{self.voltage}_input", f"{self.current}_input"], 1e-6, f"{self.voltage} x {self.current}"
        power = channels(folder, "power*_input") or channels(folder, "power*_average")
        if power:
            return [power[0]], 1e-6, power[0]
        for current in channels(folder, "curr*_input"):
            voltage = "in" + current[len("curr"):]
            if os.path.exists(os.path.join(folder, voltage)):
                return [voltage, current], 1e-6, f"{voltage} x {current}"
        raise MeterError(f"hwmon {self.device} ({folder}) has no power*_input, power*_average or in/curr pair")

    def open(self) -> None:
        folder = self.device_folder()
        names, self._scale, words = self._pick(folder)
        self.open_files(folder, names)
        self.method = f"hwmon {self.device} {words} (coverage depends on the sensor's wiring)"
        self.sample()

    def sample(self) -> Tuple[int, float]:
        before = now_ns()
        product = 1.0
        for value in self.files:
            product *= value.read_int()
        return (before + now_ns()) // 2, product * self._scale
