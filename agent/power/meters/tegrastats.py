"""NVIDIA Jetson power rails from `tegrastats`, for boards whose sysfs INA3221 files are not readable.

tegrastats prints one line per interval; its power fields are `NAME cur/avg` in mW.
JetPack 5+ appends `mW` to each number and prefixes a `MM-DD-YYYY HH:MM:SS` date;
a JetPack 7 line shows `cur/avg/peak`. The first (current) value is the one read.
The total is VDD_IN or POM_5V_IN when present, else the sum of the rails.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from agent.power.base import Meter, MeterError, register
from agent.power.meters.ina3221 import TOTAL_RAILS, UNCONNECTED
from agent.power.stream import LineStream
from agent.power.sysfs import find_command

# `NAME cur/avg` or `NAME cur/avg/peak`, each number with an optional `mW`, the
# field ending at a space or the line's end. The end rule keeps `RAM 2461/3964MB`
# and `SWAP 362/1982MB` (memory, not power) out.
POWER_FIELD = re.compile(r"(?<!\S)([A-Za-z][A-Za-z0-9_]*) (\d+)(?:mW)?/\d+(?:mW)?(?:/\d+(?:mW)?)?(?=\s|$)")
# Rails missing from this many lines in a row means this tegrastats will never show them.
LINES_WITHOUT_RAILS_ALLOWED = 5


def parse_rails_mw(line: str) -> Dict[str, int]:
    """The current power of every connected rail on one tegrastats line, in mW (NC rails left out)."""
    return {name: int(current) for name, current in POWER_FIELD.findall(line) if name != UNCONNECTED}


def total_w(rails_mw: Dict[str, int], wanted: Optional[str] = None) -> Tuple[float, str]:
    """The power to report in watts and the rail(s) it comes from, as words for `method`."""
    if wanted:
        if wanted not in rails_mw:
            raise MeterError(f"tegrastats shows no rail {wanted!r}; rails: {sorted(rails_mw)}")
        return rails_mw[wanted] / 1e3, wanted
    for total in TOTAL_RAILS:
        if total in rails_mw:
            return rails_mw[total] / 1e3, f"{total} (board input)"
    return (sum(rails_mw.values()) / 1e3,
            f"sum of {'+'.join(rails_mw)} (module rails; carrier board not included)")


@register
class TegrastatsMeter(Meter):
    """tegrastats as a power meter (options: command path, interval_ms, rail, timeout_s)."""

    name = "tegrastats"
    kind = "power"
    pushes = True

    def __init__(self, root: str = "/", command: Optional[str] = None, interval_ms: int = 100,
                 rail: Optional[str] = None, timeout_s: float = 5.0) -> None:
        super().__init__(root)
        self.command = command
        self.interval_ms = int(interval_ms)
        self.wanted_rail = rail
        self.timeout_s = float(timeout_s)
        self.nominal_rate_hz = 1000.0 / self.interval_ms
        self.method = "tegrastats"
        self._stream: Optional[LineStream] = None

    def argv(self) -> List[str]:
        command = self.command or find_command(self.root, "tegrastats")
        if not command:
            raise MeterError(f"tegrastats not found on PATH or under {self.root}")
        return [command, "--interval", str(self.interval_ms)]

    def open(self) -> None:
        self._stream = LineStream(self.argv())
        self._stream.start()
        # The first line fixes which rails exist and so the method string.
        _, rails = self._next_rails()
        _, words = total_w(rails, self.wanted_rail)
        self.method = f"tegrastats {words}"
        # Keep reading the same rail for the whole run, whatever later lines show.
        if not self.wanted_rail:
            self.wanted_rail = next((t for t in TOTAL_RAILS if t in rails), None)

    def _next_rails(self) -> Tuple[int, Dict[str, int]]:
        if self._stream is None:
            raise MeterError("tegrastats meter used before open()")
        for _ in range(LINES_WITHOUT_RAILS_ALLOWED):
            stamp, line = self._stream.next_line(self.timeout_s)
            rails = parse_rails_mw(line)
            if rails:
                return stamp, rails
            self.dropped_lines += 1
        raise MeterError("tegrastats prints no power rails (some images show them only when it runs as root)")

    def sample(self) -> Tuple[int, float]:
        stamp, rails = self._next_rails()
        watts, _ = total_w(rails, self.wanted_rail)
        return stamp, watts

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream = None

    @classmethod
    def probe(cls, root: str) -> Optional[Dict[str, Any]]:
        command = find_command(root, "tegrastats")
        return {"type": cls.name, "command": command} if command else None
