"""Raspberry Pi 5 PMIC rails from `vcgencmd pmic_read_adc`.

Each line is `NAME_A current(N)=1.11625000A` or `NAME_V volt(N)=0.74944980V`.
Power is the sum of V x I over rails that have both (EXT5V_V and BATT_V are
voltage only). This is SoC-side power as the PMIC sees it, not wall power.
No such meter on Pi 3/4: use an external one.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any, Dict, Optional, Tuple

from agent.power.base import Meter, MeterError, now_ns, register
from agent.power.sysfs import find_command, read_text, rooted

READING = re.compile(r"^\s*(\S+)_([AV])\s+(?:current|volt)\(\d+\)=([-+0-9.eE]+)[AV]\s*$")


def parse_pmic(text: str) -> Dict[str, Dict[str, float]]:
    """{rail: {"A": amperes, "V": volts}} from pmic_read_adc output."""
    rails: Dict[str, Dict[str, float]] = {}
    for line in text.splitlines():
        match = READING.match(line)
        if match:
            rails.setdefault(match.group(1), {})[match.group(2)] = float(match.group(3))
    return rails


def pmic_power_w(rails: Dict[str, Dict[str, float]]) -> float:
    """Sum of V x I over the rails that report both."""
    return sum(r["A"] * r["V"] for r in rails.values() if "A" in r and "V" in r)


@register
class RpiPmicMeter(Meter):
    """Pi 5 PMIC through vcgencmd (options: command path, rate_hz; each reading runs vcgencmd once)."""

    name = "rpi_pmic"
    kind = "power"
    method = "vcgencmd pmic_read_adc (SoC rails, not wall power)"

    # One process per reading costs the board CPU time: 5 Hz keeps that small.
    def __init__(self, root: str = "/", command: Optional[str] = None, rate_hz: float = 5.0,
                 timeout_s: float = 2.0) -> None:
        super().__init__(root)
        self.command = command
        self.nominal_rate_hz = float(rate_hz)
        self.timeout_s = float(timeout_s)
        self._argv = ["vcgencmd", "pmic_read_adc"]

    def open(self) -> None:
        command = self.command or find_command(self.root, "vcgencmd")
        if not command:
            raise MeterError(f"vcgencmd not found on PATH or under {self.root}")
        self._argv = [command, "pmic_read_adc"]
        self.sample()

    def sample(self) -> Tuple[int, float]:
        before = now_ns()
        try:
            done = subprocess.run(self._argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=self.timeout_s, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise MeterError(f"{' '.join(self._argv)}: {exc}") from exc
        after = now_ns()
        text = done.stdout.decode("utf-8", "replace")
        rails = parse_pmic(text)
        if done.returncode != 0 or not any("A" in r and "V" in r for r in rails.values()):
            detail = (done.stderr.decode("utf-8", "replace") or text).strip()[:200]
            raise MeterError(f"{' '.join(self._argv)} gave no rail currents (exit {done.returncode}): {detail} "
                             "(pmic_read_adc exists on the Pi 5 only; the user needs the video group)")
        # The PMIC's ADC values are from the moment of the query, about midway through the call.
        return (before + after) // 2, pmic_power_w(rails)

    @classmethod
    def probe(cls, root: str) -> Optional[Dict[str, Any]]:
        model = read_text(rooted(root, "proc/device-tree/model")) or ""
        command = find_command(root, "vcgencmd")
        if command and (model.startswith("Raspberry Pi 5") or model.startswith("Raspberry Pi Compute Module 5")):
            return {"type": cls.name, "command": command}
        return None
