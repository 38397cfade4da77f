"""A meter whose power is a known function of time, to check the sampler against analytic energy."""

from __future__ import annotations

from collections.abc import Callable

from agent.power.base import Meter, now_ns


class FunctionMeter(Meter):
    """Power = watts_at(seconds since `epoch_ns`), stamped with the sampler's clock. Not registered."""

    name = "function"
    kind = "power"

    def __init__(self, watts_at: Callable[[float], float], epoch_ns: int, rate_hz: float = 200.0) -> None:
        super().__init__("/")
        self.watts_at = watts_at
        self.epoch_ns = epoch_ns
        self.nominal_rate_hz = rate_hz
        self.method = "function of time (test)"
        self.opened = self.closed = False

    def open(self) -> None:
        self.opened = True

    def sample(self) -> tuple[int, float]:
        stamp = now_ns()
        return stamp, self.watts_at((stamp - self.epoch_ns) / 1e9)

    def close(self) -> None:
        self.closed = True
