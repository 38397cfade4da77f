"""Energy inside a time window, from power samples or from counter readings (pure functions).

Power samples are integrated with the trapezoidal rule over [t_start, t_end],
with the power at each edge interpolated linearly between the samples around it:
samples outside the window never count, and a window is not cut at whole samples.
Counter readings are differenced at the edges the same way (the sampler reads a
counter exactly at each edge, so there the interpolation is exact).
"""

from __future__ import annotations

import bisect
from typing import List, NamedTuple, Optional, Sequence


class WindowEnergy(NamedTuple):
    """What a window holds: energy in joules, samples inside, peak power, and any coverage problems."""

    energy_j: Optional[float]
    samples: int
    max_w: Optional[float]
    problems: List[str]


def value_at(times_ns: Sequence[int], values: Sequence[float], t_ns: int) -> float:
    """The series' value at t_ns: linear between neighbours, the nearest sample outside the range."""
    right = bisect.bisect_left(times_ns, t_ns)
    if right < len(times_ns) and times_ns[right] == t_ns:
        return values[right]
    if right == 0:
        return values[0]
    if right == len(times_ns):
        return values[-1]
    t0, t1 = times_ns[right - 1], times_ns[right]
    v0, v1 = values[right - 1], values[right]
    return v0 + (v1 - v0) * (t_ns - t0) / (t1 - t0)


def _coverage(times_ns: Sequence[int], t_start_ns: int, t_end_ns: int, what: str) -> List[str]:
    problems = []
    if times_ns[0] > t_start_ns:
        problems.append(f"{what} start {(times_ns[0] - t_start_ns) / 1e6:.1f} ms after the window starts")
    if times_ns[-1] < t_end_ns:
        problems.append(f"{what} end {(t_end_ns - times_ns[-1]) / 1e6:.1f} ms before the window ends")
    return problems


def _inside(times_ns: Sequence[int], t_start_ns: int, t_end_ns: int) -> range:
    return range(bisect.bisect_left(times_ns, t_start_ns), bisect.bisect_right(times_ns, t_end_ns))


def power_window(times_ns: Sequence[int], watts: Sequence[float], t_start_ns: int, t_end_ns: int) -> WindowEnergy:
    """Trapezoidal energy of power samples inside [t_start_ns, t_end_ns], edges interpolated."""
    if t_end_ns < t_start_ns:
        raise ValueError(f"window ends ({t_end_ns}) before it starts ({t_start_ns})")
    if not times_ns:
        return WindowEnergy(None, 0, None, ["no power samples"])
    inside = _inside(times_ns, t_start_ns, t_end_ns)
    points = [(t_start_ns, value_at(times_ns, watts, t_start_ns))]
    points += [(times_ns[i], watts[i]) for i in inside if t_start_ns < times_ns[i] < t_end_ns]
    points.append((t_end_ns, value_at(times_ns, watts, t_end_ns)))
    energy_j = sum((points[k + 1][0] - points[k][0]) * (points[k][1] + points[k + 1][1]) / 2.0
                   for k in range(len(points) - 1)) / 1e9
    peak = max(watts[i] for i in inside) if len(inside) else max(p for _, p in points)
    return WindowEnergy(energy_j, len(inside), peak, _coverage(times_ns, t_start_ns, t_end_ns, "power samples"))


def counter_window(times_ns: Sequence[int], joules: Sequence[float], t_start_ns: int,
                   t_end_ns: int) -> WindowEnergy:
    """Energy of a cumulative counter over [t_start_ns, t_end_ns]; peak power from successive readings inside."""
    if t_end_ns < t_start_ns:
        raise ValueError(f"window ends ({t_end_ns}) before it starts ({t_start_ns})")
    if not times_ns:
        return WindowEnergy(None, 0, None, ["no counter readings"])
    energy_j = value_at(times_ns, joules, t_end_ns) - value_at(times_ns, joules, t_start_ns)
    inside = list(_inside(times_ns, t_start_ns, t_end_ns))
    rates = [(joules[b] - joules[b - 1]) * 1e9 / (times_ns[b] - times_ns[b - 1])
             for b in inside[1:] if times_ns[b] > times_ns[b - 1]]
    peak = max(rates) if rates else None
    return WindowEnergy(energy_j, len(inside), peak, _coverage(times_ns, t_start_ns, t_end_ns, "counter readings"))


def observed_rate_hz(times_ns: Sequence[int]) -> Optional[float]:
    """Readings per second over the whole series."""
    if len(times_ns) < 2 or times_ns[-1] <= times_ns[0]:
        return None
    return (len(times_ns) - 1) * 1e9 / (times_ns[-1] - times_ns[0])
