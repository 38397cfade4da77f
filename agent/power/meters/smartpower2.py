"""ODROID SmartPower2 over USB serial (115200 baud, one line a second while its output is on).

Lines are `V,A,W,Wh` with three decimals (`5.102,0.312,1.592,0.004`); boot banners
share the port, so lines that do not parse are skipped (and counted).
"""

from __future__ import annotations

from typing import Optional, Tuple

from agent.power.base import register
from agent.power.serialport import SerialMeter


def parse_line(line: str) -> Optional[Tuple[float, float, float, float]]:
    """(volts, amperes, watts, watt-hours) of one line, or None when it is not a reading."""
    parts = line.strip().split(",")
    if len(parts) != 4:
        return None
    try:
        volts, amps, watts, watt_hours = (float(p) for p in parts)
    except ValueError:
        return None
    return volts, amps, watts, watt_hours


@register
class SmartPower2Meter(SerialMeter):
    """SmartPower2 (options: port, baud, timeout_s)."""

    name = "smartpower2"
    kind = "power"
    nominal_rate_hz = 1.0
    max_bad_lines = 50  # a boot banner is a few dozen lines at most
    silent_hint = "is its output switched on?"

    def __init__(self, root: str = "/", port: str = "/dev/ttyUSB0", baud: int = 115200,
                 timeout_s: float = 3.0) -> None:
        super().__init__(root, port, baud, timeout_s)
        self.method = "smartpower2 output (external meter, the board's supply; 1 reading/s)"

    def watts_of(self, line: str) -> Optional[float]:
        reading = parse_line(line)
        return None if reading is None else reading[2]
