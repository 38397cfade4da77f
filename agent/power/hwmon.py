"""Any Linux hwmon sensor that reports power, or voltage and current (kernel sysfs-interface units).

Channels, first found wins unless `channel` names one:
  powerN_input, then powerN_average   (µW)
  inN_input x currN_input             (mV x mA; the same N unless `voltage`/`current` name the pair)
Never picked by `auto`: what a sensor covers (a GPU, a USB port, the board input)
cannot be told from sysfs, so the user names the device.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Dict, List, Optional, Tuple

from agent.power.base import Meter, MeterError, now_ns, register
from agent.power.sysfs import SysfsValue, read_text, rooted

HWMON_DEVICES = "sys/class/hwmon/hwmon*"


def hwmon_devices(root: str = "/") -> Dict[str, str]:
    """Folder of every hwmon device by its `name` (a repeated name gets `#2`, `#3` ...)."""
    devices: Dict[str, str] = {}
    for folder in sorted(glob.glob(rooted(root, HWMON_DEVICES)), key=_numeric_suffix):
        name = read_text(os.path.join(folder, "name")) or os.path.basename(folder)
        key, count = name, 1
        while key in devices:
            count += 1
            key = f"{name}#{count}"
        devices[key] = folder
    return devices


def find_device(root: str, device: str) -> str:
    """Folder of the hwmon device named `device` (a `name` value, or a hwmonN folder name)."""
    devices = hwmon_devices(root)
    if device in devices:
        return devices[device]
    for folder in devices.values():
        if os.path.basename(folder) == device:
            return folder
    raise MeterError(f"no hwmon device {device!r} under {rooted(root, 'sys/class/hwmon')}; found {sorted(devices)}")


def _numeric_suffix(path: str) -> Tuple[str, int]:
    """Sort key putting hwmon10 after hwmon9 and power10_input after power9_input (the last number counts)."""
    match = re.search(r"\d+(?=\D*$)", path)
    return (path[: match.start()], int(match.group(0))) if match else (path, -1)


def channels(folder: str, pattern: str) -> List[str]:
    """Names like `power1_input` in `folder` matching a glob pattern, in numeric order."""
    return sorted((os.path.basename(p) for p in glob.glob(os.path.join(folder, pattern))), key=_numeric_suffix)


@register
class HwmonMeter(Meter):
    """A named hwmon device's power (options: device, channel, voltage, current, rate_hz)."""

    name = "hwmon"
    kind = "power"

    def __init__(self, root: str = "/", device: str = "", channel: Optional[str] = None,
                 voltage: Optional[str] = None, current: Optional[str] = None, rate_hz: float = 20.0) -> None:
        super().__init__(root)
        if not device:
            raise MeterError("hwmon meter needs `device`: the hwmon `name` (e.g. ina226) or folder (hwmon2)")
        self.device = device
        self.channel = channel
        self.voltage = voltage
        self.current = current
        self.nominal_rate_hz = float(rate_hz)
        self.method = "hwmon"
        self._files: List[SysfsValue] = []
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
        folder = find_device(self.root, self.device)
        names, self._scale, words = self._pick(folder)
        self._files = [SysfsValue(os.path.join(folder, n)) for n in names]
        for value in self._files:
            value.open()
        self.method = f"hwmon {self.device} {words} (coverage depends on the sensor's wiring)"
        self.sample()

    def sample(self) -> Tuple[int, float]:
        before = now_ns()
        product = 1.0
        for value in self._files:
            product *= value.read_int()
        return (before + now_ns()) // 2, product * self._scale

    def close(self) -> None:
        for value in self._files:
            value.close()
