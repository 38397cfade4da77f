"""An estimate, not a measurement: this process's CPU time multiplied by a configured power.

For boards with no meter at all, so that a sweep can still rank variants by a
rough energy figure. Every result says `estimate: ... (not a measurement)`.
"""

from __future__ import annotations

import time
from typing import Tuple

from agent.power.base import Meter, MeterError, now_ns, register


@register
class EstimateMeter(Meter):
    """CPU seconds of this process (all its threads) x `watts` (options: watts, rate_hz)."""

    name = "estimate"
    kind = "energy"
    is_measurement = False

    def __init__(self, root: str = "/", watts: float = 5.0, rate_hz: float = 10.0) -> None:
        super().__init__(root)
        if float(watts) <= 0:
            raise MeterError(f"estimate meter: watts must be > 0, got {watts}")
        self.watts = float(watts)
        self.nominal_rate_hz = float(rate_hz)
        self.method = f"estimate: cpu time x {self.watts} W (not a measurement)"
        self._cpu_ns_at_open = 0

    def open(self) -> None:
        self._cpu_ns_at_open = time.process_time_ns()

    def read_energy_j(self) -> Tuple[int, float]:
        cpu_s = (time.process_time_ns() - self._cpu_ns_at_open) / 1e9
        return now_ns(), cpu_s * self.watts
