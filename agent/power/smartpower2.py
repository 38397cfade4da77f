"""ODROID SmartPower2 over USB serial (115200 baud, one line a second while its output is on).

Lines are `V,A,W,Wh` with three decimals (`5.102,0.312,1.592,0.004`); boot banners
share the port, so lines that do not parse are skipped (and counted).
"""

from __future__ import annotations

from typing import Optional, Tuple

from agent.power.base import Meter, MeterError, register
from agent.power.serialport import SerialLines


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
class SmartPower2Meter(Meter):
    """SmartPower2 (options: port, baud, timeout_s)."""

    name = "smartpower2"
    kind = "power"
    pushes = True
    nominal_rate_hz = 1.0

    def __init__(self, root: str = "/", port: str = "/dev/ttyUSB0", baud: int = 115200,
                 timeout_s: float = 3.0) -> None:
        super().__init__(root)
        self.method = "smartpower2 output (external meter, the board's supply; 1 reading/s)"
        self.lines = SerialLines(port, int(baud), float(timeout_s))

    def open(self) -> None:
        self.lines.open()
        self.sample()

    def sample(self) -> Tuple[int, float]:
        for _ in range(50):  # a boot banner is a few dozen lines at most
            stamp, line = self.lines.next_line()
            if line is None:
                raise MeterError(f"smartpower2 on {self.lines.port} sent no line within {self.lines.timeout_s:g} s "
                                 "(is its output switched on?)")
            reading = parse_line(line)
            if reading is not None:
                return stamp, reading[2]
            self.dropped_lines += 1
        raise MeterError(f"smartpower2 on {self.lines.port}: 50 lines in a row were not readings")

    def close(self) -> None:
        self.lines.close()
