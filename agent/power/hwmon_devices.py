"""Linux hwmon devices found by name, and the base of the meters that read one (hwmon, hwmon_energy)."""

from __future__ import annotations

import glob
import os
import re
from typing import Dict, List, Optional, Tuple

from agent.power.base import Meter, MeterError
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


class HwmonDeviceMeter(Meter):
    """A meter reading files of the hwmon device the user names (`device`), kept open between readings.

    A subclass picks its files in `open()` through `open_files()` and reads `files`;
    `device_help` says what `device` is, for the error when it is missing.
    """

    device_help = "the hwmon `name` or folder (hwmon2)"

    def __init__(self, root: str, device: str, channel: Optional[str], rate_hz: float) -> None:
        super().__init__(root)
        if not device:
            raise MeterError(f"{self.name} meter needs `device`: {self.device_help}")
        self.device = device
        self.channel = channel
        self.nominal_rate_hz = float(rate_hz)
        self.files: List[SysfsValue] = []

    def device_folder(self) -> str:
        """The folder of the named device; MeterError lists the devices found."""
        return find_device(self.root, self.device)

    def open_files(self, folder: str, names: List[str]) -> None:
        """Open `names` in `folder` as the files to read (MeterError names one that cannot be opened)."""
        self.files = [SysfsValue(os.path.join(folder, name)) for name in names]
        for value in self.files:
            value.open()

    def close(self) -> None:
        for value in self.files:
            value.close()
        self.files = []
