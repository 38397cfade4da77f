"""NVIDIA Jetson on-board INA3221 power monitors, read from sysfs.

Two driver layouts (shared/reference/telemetry-formats.md):
  JetPack 4 (Nano, TX2, Xavier NX on L4T R32), IIO driver `ina3221x`:
    sys/bus/i2c/drivers/ina3221x/<bus>-004x/iio:device*/rail_name_N, in_powerN_input (mW), N = 0..2
  JetPack 5/6 (Xavier, Orin), hwmon driver `ina3221`:
    sys/bus/i2c/drivers/ina3221/<bus>-004x/hwmon/hwmon*/inN_label, inN_input (mV), currN_input (mA), N = 1..3;
    no power file: P = V x I. `NC` labels are unconnected, in7/curr4 are sums: both skipped.

The reading is the board input rail (VDD_IN, POM_5V_IN) when the board has one,
otherwise the sum of the module's rails (AGX Orin: the carrier board is not included).
"""

from __future__ import annotations

import glob
import os
from typing import Any, Dict, List, Optional, Tuple

from agent.power.base import Meter, MeterError, now_ns, register
from agent.power.sysfs import SysfsValue, read_text, rooted

JP4_DEVICES = "sys/bus/i2c/drivers/ina3221x/*/iio:device*"
JP5_DEVICES = "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
UNCONNECTED = "NC"


class Rail:
    """One connected INA3221 channel: its label and the files giving its power."""

    def __init__(self, label: str, device: str, power_mw: Optional[SysfsValue] = None,
                 voltage_mv: Optional[SysfsValue] = None, current_ma: Optional[SysfsValue] = None) -> None:
        self.label = label
        self.device = device
        self.power_mw = power_mw
        self.voltage_mv = voltage_mv
        self.current_ma = current_ma

    def files(self) -> List[SysfsValue]:
        return [f for f in (self.power_mw, self.voltage_mv, self.current_ma) if f is not None]

    def read_w(self) -> float:
        """This rail's power now, in watts."""
        if self.power_mw is not None:
            return self.power_mw.read_int() / 1e3
        if self.voltage_mv is None or self.current_ma is None:
            raise MeterError(f"INA3221 rail {self.label} at {self.device} has neither power nor V and I files")
        return self.voltage_mv.read_int() * self.current_ma.read_int() / 1e6


def _jp4_rails(root: str) -> List[Rail]:
    rails = []
    for device in sorted(glob.glob(rooted(root, JP4_DEVICES))):
        for index in range(3):
            label = read_text(os.path.join(device, f"rail_name_{index}"))
            if not label or label == UNCONNECTED:
                continue
            rails.append(Rail(label, device, power_mw=SysfsValue(os.path.join(device, f"in_power{index}_input"))))
    return rails


def _jp5_rails(root: str) -> List[Rail]:
    rails = []
    for device in sorted(glob.glob(rooted(root, JP5_DEVICES))):
        if read_text(os.path.join(device, "name")) != "ina3221":
            continue
        # Channels 1..3 only: in4..in6 are shunt voltages and in7/curr4 the sums.
        for index in (1, 2, 3):
            label = read_text(os.path.join(device, f"in{index}_label"))
            if not label or label == UNCONNECTED:
                continue
            rails.append(Rail(label, device, voltage_mv=SysfsValue(os.path.join(device, f"in{index}_input")),
                              current_ma=SysfsValue(os.path.join(device, f"curr{index}_input"))))
    return rails


def find_rails(root: str = "/") -> List[Rail]:
    """Every connected INA3221 rail the board shows, in either driver layout."""
    return _jp4_rails(root) or _jp5_rails(root)


def choose_rails(rails: List[Rail], wanted: Optional[str]) -> Tuple[List[Rail], str]:
    """The rails to read and the method string: the named rail, else the board input, else the sum."""
    labels = [r.label for r in rails]
    if wanted:
        chosen = [r for r in rails if r.label == wanted]
        if not chosen:
            raise MeterError(f"INA3221 has no rail {wanted!r}; rails: {labels}")
        return chosen[:1], f"ina3221 {wanted}"
    for total in TOTAL_RAILS:
        for rail in rails:
            if rail.label == total:
                return [rail], f"ina3221 {total} (board input)"
    return rails, f"ina3221 sum of {'+'.join(labels)} (module rails; carrier board not included)"


@register
class Ina3221Meter(Meter):
    """Jetson on-board INA3221 (options: rail = a label to read instead of the board total, rate_hz)."""

    name = "ina3221"
    kind = "power"

    def __init__(self, root: str = "/", rail: Optional[str] = None, rate_hz: float = 50.0) -> None:
        super().__init__(root)
        self.wanted_rail = rail
        self.nominal_rate_hz = float(rate_hz)
        self.method = "ina3221"
        self.rails: List[Rail] = []

    def open(self) -> None:
        rails = find_rails(self.root)
        if not rails:
            raise MeterError(f"no INA3221 rails under {rooted(self.root, 'sys/bus/i2c/drivers')}/ina3221{{x,}}")
        self.rails, self.method = choose_rails(rails, self.wanted_rail)
        for rail in self.rails:
            for value in rail.files():
                value.open()
        self.sample()  # fail now, not inside the timed window, if a file cannot be read

    def sample(self) -> Tuple[int, float]:
        before = now_ns()
        watts = sum(rail.read_w() for rail in self.rails)
        # Stamp the middle of the reads: they take a few tens of microseconds.
        return (before + now_ns()) // 2, watts

    def close(self) -> None:
        for rail in self.rails:
            for value in rail.files():
                value.close()

    @classmethod
    def probe(cls, root: str) -> Optional[Dict[str, Any]]:
        return {"type": cls.name} if find_rails(root) else None
