"""USB serial access for the ODROID SmartPower meters, through pyserial (an optional import), and their base."""

from __future__ import annotations

from typing import Any, Optional, Tuple

from agent.power.base import Meter, MeterError, now_ns


class SerialLines:
    """A serial port read line by line, each line stamped with the monotonic clock when it arrived."""

    def __init__(self, port: str, baud: int, timeout_s: float) -> None:
        self.port = port
        self.baud = baud
        self.timeout_s = timeout_s
        self._serial: Any = None

    def open(self) -> None:
        """Open the port; a clear error when pyserial or the device is missing."""
        try:
            import serial
        except ImportError:
            raise MeterError("serial meters need the pyserial package: pip install pyserial") from None
        try:
            self._serial = serial.Serial(self.port, self.baud, timeout=self.timeout_s)
        except OSError as exc:  # serial.SerialException is an OSError
            raise MeterError(f"cannot open serial port {self.port}: {exc} (is this user in the dialout group?)") \
                from exc
        # Lines buffered before we opened belong to no window of ours.
        self._serial.reset_input_buffer()

    def next_line(self) -> Tuple[int, Optional[str]]:
        """(monotonic_ns, text) of the next line; text None when nothing complete came within the timeout."""
        if self._serial is None:
            raise MeterError(f"serial port {self.port} used before open()")
        try:
            raw = self._serial.readline()
        except OSError as exc:
            raise MeterError(f"serial port {self.port}: {exc}") from exc
        stamp = now_ns()
        if not raw.endswith(b"\n"):
            return stamp, None
        return stamp, raw.decode("ascii", "replace").strip()

    def close(self) -> None:
        """Close the port; safe to call twice."""
        if self._serial is not None:
            self._serial.close()
            self._serial = None


class SerialMeter(Meter):
    """A meter pushing one text line per reading over a serial port; lines that are not readings are counted.

    A subclass turns one line into watts in `watts_of()` (None: not a reading) and
    sets the words of its two errors: `silent_hint` (why the port may be quiet) and
    `bad_lines` (what a run of `max_bad_lines` unusable lines means).
    """

    pushes = True
    max_bad_lines = 20
    silent_hint = ""
    bad_lines = "were not readings"

    def __init__(self, root: str, port: str, baud: int, timeout_s: float) -> None:
        super().__init__(root)
        self.lines = SerialLines(port, int(baud), float(timeout_s))

    def watts_of(self, line: str) -> Optional[float]:
        """The watts one line reports, or None when it is not a reading."""
        raise NotImplementedError

    def open(self) -> None:
        self.lines.open()
        self.sample()  # a port that says nothing, or only garbage, fails here and not in the timed window

    def sample(self) -> Tuple[int, float]:
        for _ in range(self.max_bad_lines):
            stamp, line = self.lines.next_line()
            if line is None:
                raise MeterError(f"{self.name} on {self.lines.port} sent no line within {self.lines.timeout_s:g} s "
                                 f"({self.silent_hint})")
            watts = self.watts_of(line)
            if watts is not None:
                return stamp, watts
            self.dropped_lines += 1
        raise MeterError(f"{self.name} on {self.lines.port}: {self.max_bad_lines} lines in a row {self.bad_lines}")

    def close(self) -> None:
        self.lines.close()
