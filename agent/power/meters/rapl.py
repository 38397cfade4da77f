"""Intel and AMD x86 RAPL energy counters through powercap sysfs.

sys/class/powercap/intel-rapl:N/{name, energy_uj, max_energy_range_uj}; top-level
zones are `package-N` (and `psys` on some laptops), sub-zones `intel-rapl:N:M` are
core, uncore and dram. energy_uj wraps at max_energy_range_uj. Since Linux 5.10
energy_uj is readable by root only (CVE-2020-8694).
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from agent.power.base import Meter, MeterError, now_ns, register
from agent.power.sysfs import SysfsValue, read_int, read_text, rooted

POWERCAP = "sys/class/powercap"
ZONE_DIR = re.compile(r"^intel-rapl:\d+(:\d+)?$")
# What each zone covers, for the method string: none of them is wall power.
COVERAGE = {"package": "CPU package only", "core": "CPU cores only", "uncore": "uncore/integrated GPU only",
            "dram": "DRAM only", "psys": "platform, as the firmware defines it"}


def permission_message(path: str) -> str:
    """Why energy_uj cannot be read and how to fix it."""
    return (f"cannot read {path}: permission denied. Since Linux 5.10 RAPL energy counters are readable "
            "by root only (CVE-2020-8694). Run the agent as root, or allow reading until the next boot with "
            "`sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj`, or for good with a udev rule, e.g. "
            "/etc/udev/rules.d/99-rapl.rules: "
            'SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod o+r /sys%p/energy_uj"')


class Zone:
    """One RAPL zone: its folder, name, counter and wrap range."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.dir_name = os.path.basename(folder)
        self.name = read_text(os.path.join(folder, "name")) or self.dir_name
        counter_path = os.path.join(folder, "energy_uj")
        self.counter = SysfsValue(counter_path, denied_message=permission_message(counter_path))
        self.max_range_uj = read_int(os.path.join(folder, "max_energy_range_uj")) or 0
        self.last_uj = 0

    @property
    def top_level(self) -> bool:
        return self.dir_name.count(":") == 1

    def read_uj(self) -> int:
        """The raw counter; a clear MeterError with the remedy when this user may not read it."""
        return self.counter.read_int()


def zones(root: str = "/") -> List[Zone]:
    """Every RAPL zone under powercap, top-level zones first."""
    found = [Zone(f) for f in sorted(glob.glob(rooted(root, f"{POWERCAP}/intel-rapl:*")))
             if ZONE_DIR.match(os.path.basename(f))]
    return sorted(found, key=lambda z: (not z.top_level, z.dir_name))


def coverage(names: List[str]) -> str:
    kinds = {re.sub(r"-\d+$", "", n) for n in names}
    words = sorted({COVERAGE.get(k, "coverage unknown") for k in kinds})
    return "; ".join(words)


@register
class RaplMeter(Meter):
    """RAPL energy counters (options: zones = names or folder names to sum, default every package; rate_hz)."""

    name = "rapl"
    kind = "energy"

    def __init__(self, root: str = "/", zones: Optional[List[str]] = None, rate_hz: float = 10.0) -> None:
        super().__init__(root)
        self.wanted = list(zones) if zones else None
        self.nominal_rate_hz = float(rate_hz)
        self.method = "rapl"
        self.zones: List[Zone] = []
        self._total_uj = 0

    def _choose(self) -> List[Zone]:
        available = zones(self.root)
        if not available:
            raise MeterError(f"no RAPL zones under {rooted(self.root, POWERCAP)}")
        if self.wanted:
            chosen = [z for z in available if z.name in self.wanted or z.dir_name in self.wanted]
            if len(chosen) < len(self.wanted):
                raise MeterError(f"RAPL zones {self.wanted} not all found; zones: "
                                 f"{[(z.dir_name, z.name) for z in available]}")
            return chosen
        packages = [z for z in available if z.top_level and z.name.startswith("package")]
        if not packages:
            raise MeterError(f"no RAPL package zone under {rooted(self.root, POWERCAP)}; give zones=")
        return packages

    def open(self) -> None:
        self.zones = self._choose()
        for zone in self.zones:
            zone.last_uj = zone.read_uj()
        self._total_uj = 0
        names = [z.name for z in self.zones]
        self.method = f"rapl {'+'.join(names)} ({coverage(names)})"

    def read_energy_j(self) -> Tuple[int, float]:
        before = now_ns()
        raws = [zone.read_uj() for zone in self.zones]
        stamp = (before + now_ns()) // 2
        for index, zone in enumerate(self.zones):
            self._total_uj += unwrap_delta_uj(zone.last_uj, raws[index], zone.max_range_uj)
            zone.last_uj = raws[index]
        return stamp, self._total_uj / 1e6

    def close(self) -> None:
        for zone in self.zones:
            zone.counter.close()

    @classmethod
    def probe(cls, root: str) -> Optional[Dict[str, Any]]:
        # Picked even when energy_uj is root-only: open() then says how to fix that.
        return {"type": cls.name} if any(z.top_level and z.name.startswith("package") for z in zones(root)) else None


def unwrap_delta_uj(previous_uj: int, current_uj: int, max_range_uj: int) -> int:
    """Energy between two counter reads, in µJ: one wrap at max_energy_range_uj is undone."""
    delta = current_uj - previous_uj
    if delta < 0:
        if max_range_uj <= 0:
            raise MeterError(f"RAPL counter went backwards ({previous_uj} -> {current_uj} µJ) "
                             "and max_energy_range_uj is unknown")
        delta += max_range_uj
    return delta
