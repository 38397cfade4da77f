"""ODROID SmartPower3 over USB serial (115200 baud by default; log interval 5 to 1000 ms, set on the device).

One CSV line per sample, 17 fields, CRLF-terminated:
  ms_since_boot,in_mV,in_mA,in_mW,in_low,ch0_mV,ch0_mA,ch0_mW,ch0_on,ch0_irq,
  ch1_mV,ch1_mA,ch1_mW,ch1_on,ch1_irq,checksum8,xor8
checksum8 is the two's complement of the byte sum of the first 74 characters and
xor8 their XOR (both hex). Lines failing either check are dropped and counted.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from agent.power.base import MeterError, register
from agent.power.serialport import SerialMeter

FIELDS = ("ms_since_boot", "in_mV", "in_mA", "in_mW", "in_low", "ch0_mV", "ch0_mA", "ch0_mW", "ch0_on", "ch0_irq",
          "ch1_mV", "ch1_mA", "ch1_mW", "ch1_on", "ch1_irq", "checksum8", "xor8")
CHECKED_CHARS = 74
HEX_FIELDS = ("ch0_irq", "ch1_irq", "checksum8", "xor8")
CHANNELS = {"input": "in_mW", "ch0": "ch0_mW", "ch1": "ch1_mW"}
COVERAGE = {"input": "SmartPower3 input: the boards on both channels plus the SmartPower3 itself",
            "ch0": "channel 0 output: the board's supply", "ch1": "channel 1 output: the board's supply"}


def checks(body: str) -> Tuple[int, int]:
    """(checksum8, xor8) of the characters a line's checks cover."""
    data = body.encode("ascii")
    xor = 0
    for byte in data:
        xor ^= byte
    return (-sum(data)) & 0xFF, xor


def parse_line(line: str) -> Optional[Dict[str, int]]:
    """The fields of one line as integers, or None when it is malformed or fails its checks."""
    parts = line.strip().split(",")
    if len(parts) != len(FIELDS):
        return None
    try:
        values = {name: int(parts[i], 16 if name in HEX_FIELDS else 10) for i, name in enumerate(FIELDS)}
        expected = checks(line.strip()[:CHECKED_CHARS])
    except (ValueError, UnicodeEncodeError):
        return None
    if (values["checksum8"], values["xor8"]) != expected:
        return None
    return values


@register
class SmartPower3Meter(SerialMeter):
    """SmartPower3 (options: port, baud, channel = input|ch0|ch1, log_interval_ms as set on the device)."""

    name = "smartpower3"
    kind = "power"
    # A run of bad lines longer than this means a wrong baud rate or device, not noise.
    max_bad_lines = 20
    silent_hint = "is logging enabled on the device?"
    bad_lines = "failed their checks"

    def __init__(self, root: str = "/", port: str = "/dev/ttyUSB0", baud: int = 115200, channel: str = "ch0",
                 log_interval_ms: float = 100.0, timeout_s: float = 2.0) -> None:
        if channel not in CHANNELS:
            raise MeterError(f"smartpower3 channel {channel!r} is not one of {sorted(CHANNELS)}")
        rate_hz = 1000.0 / float(log_interval_ms)
        super().__init__(root, port, baud, max(float(timeout_s), 3.0 / rate_hz))
        self.channel = channel
        self.nominal_rate_hz = rate_hz
        self.method = f"smartpower3 {channel} ({COVERAGE[channel]})"

    def watts_of(self, line: str) -> Optional[float]:
        values = parse_line(line)
        return None if values is None else values[CHANNELS[self.channel]] / 1e3
