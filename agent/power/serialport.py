"""USB serial access for the ODROID SmartPower meters, through pyserial (an optional import)."""

from __future__ import annotations

from typing import Any, Optional, Tuple

from agent.power.base import MeterError, now_ns


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
