"""Serial power meters behind a real pseudo-terminal: pyserial opens a real device path.

A writer thread plays the meter, emitting lines at the meter's interval. The pty
master is non-blocking: when nobody reads, lines are lost, as with a real USB meter.
"""

from __future__ import annotations

import os
import threading
import tty
from collections.abc import Iterator


def sp3_checks(body: str) -> tuple[int, int]:
    """SmartPower3 checksum8 (two's complement of the byte sum) and xor8 of the first 74 characters."""
    data = body[:74].encode("ascii")
    xor = 0
    for byte in data:
        xor ^= byte
    return (-sum(data)) & 0xFF, xor


def sp3_line(ms: int, in_mv: int, in_ma: int, ch0_mv: int, ch0_ma: int, ch1_mv: int = 0, ch1_ma: int = 0,
             in_mw: int | None = None, ch0_mw: int | None = None, ch1_mw: int | None = None, in_low: int = 0,
             ch0_on: int = 1, ch1_on: int = 0, bad_checksum: bool = False) -> str:
    """One SmartPower3 line (17 fields, CRLF) with its checks right (or wrong).

    The device computes mW from finer readings than the mV and mA it prints, so
    the mW fields can be given; by default they are V x I rounded.
    """
    def mw(given: int | None, mv: int, ma: int) -> int:
        return given if given is not None else round(mv * ma / 1000)

    body = (f"{ms:010d},{in_mv:05d},{in_ma:04d},{mw(in_mw, in_mv, in_ma):05d},{in_low},"
            f"{ch0_mv:05d},{ch0_ma:04d},{mw(ch0_mw, ch0_mv, ch0_ma):05d},{ch0_on},00,"
            f"{ch1_mv:05d},{ch1_ma:04d},{mw(ch1_mw, ch1_mv, ch1_ma):05d},{ch1_on},00,")
    checksum, xor = sp3_checks(body)
    if bad_checksum:
        checksum = (checksum + 1) & 0xFF
    return f"{body}{checksum:02x},{xor:02x}\r\n"


def sp2_line(volts: float, amps: float, watt_hours: float) -> str:
    """One SmartPower2 `V,A,W,Wh` line, three decimals."""
    return f"{volts:.3f},{amps:.3f},{volts * amps:.3f},{watt_hours:.3f}\r\n"


class PtyMeter:
    """A serial device path whose other end writes `lines` (each with its own line ending) every interval_s.

    Use as a context manager; `port` is the device path to hand to the meter.
    """

    port: str

    def __init__(self, lines: list[str] | Iterator[str], interval_s: float, repeat: bool = True,
                 start_after_s: float = 0.0) -> None:
        self.lines = list(lines)
        self.interval_s = interval_s
        self.repeat = repeat
        # A meter flushes what was buffered before it opened the port: a delay lets a
        # test open it first and then see every line.
        self.start_after_s = start_after_s
        self.port = ""
        self.written = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = self._slave = -1

    def __enter__(self) -> PtyMeter:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation: bytes pass as a USB serial device sends them
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()
        return self

    def _write(self) -> None:
        index = 0
        if self._stop.wait(self.start_after_s):
            return
        while not self._stop.is_set():
            if index >= len(self.lines):
                if not self.repeat:
                    return
                index = 0
            try:
                os.write(self._master, self.lines[index].encode("ascii"))
                self.written += 1
            except BlockingIOError:
                pass  # nobody reading: the line is lost, as on the real meter
            index += 1
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        os.close(self._master)
        os.close(self._slave)
