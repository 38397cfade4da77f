"""No power meter: the job is timed, and its result says power was not measured."""

from __future__ import annotations

from agent.power.base import Meter, register


@register
class NoMeter(Meter):
    """The meter of a board with nothing to read."""

    name = "none"
    kind = "none"
    method = "none (no power meter)"
    nominal_rate_hz = 0.0
    is_measurement = False
