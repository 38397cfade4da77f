"""Any user program that prints watts, one number per line, as a power meter.

The program runs for the whole job and prints at its own pace (`rate_hz` says
what that pace is). Lines that are not a number are skipped and counted.
"""

from __future__ import annotations

import shlex
from typing import List, Optional, Tuple, Union

from agent.power.base import Meter, MeterError, register
from agent.power.stream import LineStream


@register
class CommandMeter(Meter):
    """A program printing watts (options: command as a string or an argv list, rate_hz, timeout_s)."""

    name = "command"
    kind = "power"
    pushes = True

    def __init__(self, root: str = "/", command: Union[str, List[str], None] = None, rate_hz: float = 1.0,
                 timeout_s: float = 5.0) -> None:
        super().__init__(root)
        if not command:
            raise MeterError("command meter needs `command`: a program printing watts, one per line")
        self.argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
        self.nominal_rate_hz = float(rate_hz)
        self.timeout_s = max(float(timeout_s), 3.0 / self.nominal_rate_hz)
        self.method = f"command: {' '.join(self.argv)} (watts as the program prints them)"
        self._stream: Optional[LineStream] = None

    def open(self) -> None:
        self._stream = LineStream(self.argv)
        self._stream.start()
        self.sample()

    def sample(self) -> Tuple[int, float]:
        if self._stream is None:
            raise MeterError("command meter used before open()")
        for _ in range(20):
            stamp, line = self._stream.next_line(self.timeout_s)
            try:
                return stamp, float(line.strip())
            except ValueError:
                self.dropped_lines += 1
        raise MeterError(f"{' '.join(self.argv)}: 20 lines in a row were not a number of watts")

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream = None
