"""Background power sampling around a timed window, and the power part of a result.

    sampler = PowerSampler(meter, idle_s=3.0)
    sampler.start()            # opens the meter, samples, measures the idle baseline (blocks idle_s)
    sampler.mark_start()       # just before the timed loop
    ...timed loop...
    sampler.mark_end()         # just after it
    power = sampler.finish(inferences=n)

Every sample and both window edges are stamped with time.monotonic_ns. Power
meters are integrated trapezoidally inside the window (edges interpolated);
energy counters are read right at each edge. A window holding fewer than
`min_window_samples` meter samples is reported with a reason (the result is then invalid), and
so is a net energy per inference below zero by more than the idle power's noise (net_energy_check).
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from agent.power.base import Meter, MeterError, now_ns
from agent.power.energy import WindowEnergy, counter_window, observed_rate_hz, power_window

MIN_WINDOW_SAMPLES = 10


def empty_result(method: str, meter: str, measured: bool = False,
                 reasons: Optional[List[str]] = None) -> Dict[str, Any]:
    """The power part of a result when nothing was measured (no meter, or it failed to open)."""
    return {"method": method, "meter": meter, "measured": measured, "samples": 0, "rate_hz": None,
            "nominal_rate_hz": None, "idle_w": None, "idle_std_w": None, "idle_s": None, "mean_w": None,
            "max_w": None, "energy_j": None, "energy_per_inference_mj": None, "energy_per_inference_net_mj": None,
            "energy_per_inference_net_noise_mj": None, "window_s": None, "dropped_lines": 0,
            "reasons": list(reasons or [])}


def summarize(kind: str, times_ns: List[int], values: List[float], window: Tuple[int, int],
              idle_window: Optional[Tuple[int, int]], inferences: int,
              min_window_samples: int = MIN_WINDOW_SAMPLES) -> Dict[str, Any]:
    """Window figures from a series of power samples (kind "power") or counter readings ("energy")."""
    integrate = power_window if kind == "power" else counter_window
    t_start, t_end = window
    window_s = (t_end - t_start) / 1e9
    inside: WindowEnergy = integrate(times_ns, values, t_start, t_end)
    reasons = list(inside.problems)
    if inside.samples < min_window_samples:
        reasons.append(f"power window holds {inside.samples} samples, fewer than {min_window_samples}")
    idle_w = None
    idle_s = None
    idle_std_w = None
    if idle_window is not None and idle_window[1] > idle_window[0]:
        idle = integrate(times_ns, values, idle_window[0], idle_window[1])
        idle_s = (idle_window[1] - idle_window[0]) / 1e9
        if idle.energy_j is not None:
            idle_w = idle.energy_j / idle_s
        idle_std_w = idle_spread_w(kind, times_ns, values, idle_window)
        reasons.extend(f"idle baseline: {p}" for p in idle.problems)
    energy_j = inside.energy_j
    mean_w = energy_j / window_s if energy_j is not None and window_s > 0 else None
    per_inference = energy_j * 1e3 / inferences if energy_j is not None and inferences > 0 else None
    net = None
    noise = None
    notes: List[str] = []
    if per_inference is not None and energy_j is not None and idle_w is not None:
        net = (energy_j - idle_w * window_s) * 1e3 / inferences
        noise = (idle_std_w or 0.0) * window_s * 1e3 / inferences
        reason, note = net_energy_check(net, noise, per_inference)
        reasons.extend([reason] if reason else [])
        notes.extend([note] if note else [])
    return {"samples": inside.samples, "rate_hz": observed_rate_hz(times_ns), "idle_w": idle_w,
            "idle_std_w": idle_std_w, "idle_s": idle_s, "mean_w": mean_w, "max_w": inside.max_w, "energy_j": energy_j,
            "energy_per_inference_mj": per_inference, "energy_per_inference_net_mj": net,
            "energy_per_inference_net_noise_mj": noise,
            "window_s": window_s, "window_start_monotonic_ns": t_start, "window_end_monotonic_ns": t_end,
            "reasons": reasons, "notes": notes}


def idle_spread_w(kind: str, times_ns: List[int], values: List[float], idle_window: Tuple[int, int]) -> Optional[float]:
    """Sample standard deviation of the idle power: of the power samples inside the idle window, or for a counter
    of the power between successive readings there; None with fewer than two."""
    inside = [i for i, t in enumerate(times_ns) if idle_window[0] <= t <= idle_window[1]]
    if kind == "power":
        watts = [values[i] for i in inside]
    else:
        watts = [(values[b] - values[a]) * 1e9 / (times_ns[b] - times_ns[a])
                 for a, b in zip(inside, inside[1:]) if times_ns[b] > times_ns[a]]
    return statistics.stdev(watts) if len(watts) >= 2 else None


def net_energy_check(net_mj: float, noise_mj: float, gross_mj: float) -> Tuple[Optional[str], Optional[str]]:
    """(reason the result is invalid, note for the method text) for a net energy per inference below zero.

    Running a model cannot take the board below its idle power, so a negative net energy is noise or a fault.
    The noise bound is the energy per inference the window would gain or lose if its power sat one idle standard
    deviation away from the idle mean for the whole window: idle_std_w x window_s / inferences. That is generous on
    purpose: the window's own mean averages many samples (its error is far below one standard deviation), and one
    standard deviation also covers a baseline that drifts by as much as idle power ordinarily varies. Below minus
    that bound, the baseline or the meter is wrong (a baseline taken while something else ran, a meter glitch): the
    result is flagged. A negative within it is kept and noted. A relative 1e-9 of the gross energy absorbs
    rounding where the idle power did not vary at all.
    """
    if net_mj >= 0:
        return None, None
    bound = noise_mj + 1e-9 * abs(gross_mj)
    if -net_mj > bound:
        return (f"net energy per inference {net_mj:.4g} mJ is below zero by more than the idle power's noise "
                f"over the window ({noise_mj:.4g} mJ): the idle baseline or the meter is wrong"), None
    if -net_mj <= 1e-9 * abs(gross_mj):
        return None, None
    return None, f"net energy per inference {net_mj:.4g} mJ: below zero within the idle noise ({noise_mj:.4g} mJ)"


class PowerSampler:
    """Samples one meter in a background thread at its rate; marks a window; reports its energy."""

    def __init__(self, meter: Meter, idle_s: float = 3.0, rate_hz: Optional[float] = None,
                 min_window_samples: int = MIN_WINDOW_SAMPLES) -> None:
        self.meter = meter
        self.idle_s = float(idle_s)
        self.rate_hz = float(rate_hz or meter.nominal_rate_hz or 1.0)
        self.min_window_samples = min_window_samples
        self.times_ns: List[int] = []
        self.values: List[float] = []
        self.idle_window: Optional[Tuple[int, int]] = None
        self.t_start_ns: Optional[int] = None
        self.t_end_ns: Optional[int] = None
        self.error: Optional[str] = None
        self._lock = threading.Lock()  # meters are not thread-safe: one call at a time
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._opened = False

    @property
    def active(self) -> bool:
        """True when the meter takes readings (not the `none` meter)."""
        return self.meter.kind != "none"

    def _read(self) -> Tuple[int, float]:
        with self._lock:
            stamp, value = self.meter.sample() if self.meter.kind == "power" else self.meter.read_energy_j()
            self.times_ns.append(stamp)
            self.values.append(value)
        return stamp, value

    def _run(self) -> None:
        period_s = 1.0 / self.rate_hz
        next_due = time.monotonic()
        while not self._stop.is_set():
            try:
                self._read()
            except MeterError as exc:
                if not self._stop.is_set():  # a meter closed under a blocked read is no failure
                    self.error = str(exc)
                return
            except Exception as exc:  # a meter's bug ends sampling; it is reported in the result, not lost
                if not self._stop.is_set():
                    self.error = f"{type(exc).__name__}: {exc}"
                return
            if self.meter.pushes:
                continue  # the meter's own pace: sample() blocked until the next reading arrived
            next_due += period_s
            delay = next_due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_due = time.monotonic()  # fell behind: carry on from now, no burst of catch-up reads

    def start(self) -> None:
        """Open the meter, start sampling, and measure the idle baseline for idle_s (blocking)."""
        if not self.active:
            return
        self.meter.open()
        self._opened = True
        if self.meter.kind == "energy":
            self._read()  # the counter at the start of the idle baseline
        self._thread = threading.Thread(target=self._run, name=f"power:{self.meter.name}", daemon=True)
        self._thread.start()
        idle_from = self._wait_for_sample_after(0)
        if self.idle_s > 0 and self.times_ns:
            time.sleep(self.idle_s)
            idle_to = self._read()[0] if self.meter.kind == "energy" else now_ns()
            self.idle_window = (idle_from, idle_to)

    def _wait_for_sample_after(self, t_ns: int) -> int:
        """Block until a sample stamped at or after t_ns exists (or the meter failed); its stamp."""
        deadline = time.monotonic() + 3.0 / self.rate_hz + 2.0
        while time.monotonic() < deadline and self.error is None:
            if self.times_ns and self.times_ns[-1] >= t_ns:
                return self.times_ns[-1]
            time.sleep(min(0.005, 0.25 / self.rate_hz))
        return self.times_ns[-1] if self.times_ns else t_ns

    def _edge(self) -> int:
        """A window edge: the time now, and for a counter a reading taken right here."""
        if self.meter.kind != "energy" or self.error is not None:
            return now_ns()
        try:
            return self._read()[0]
        except MeterError as exc:  # the timed run goes on; the result carries the reason
            self.error = str(exc)
            return now_ns()

    def mark_start(self) -> int:
        """Stamp the start of the timed window (monotonic_ns); a counter is read right here."""
        self.t_start_ns = self._edge()
        return self.t_start_ns

    def mark_end(self) -> int:
        """Stamp the end of the timed window (monotonic_ns); a counter is read right here."""
        self.t_end_ns = self._edge()
        return self.t_end_ns

    def close(self) -> None:
        """Stop sampling and close the meter; safe to call twice."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            # A pushing meter may sit in sample() for one interval; closing it ends that wait.
            thread.join(timeout=2.0 / self.rate_hz + 1.0)
        if self._opened:
            self._opened = False
            self.meter.close()
        if thread is not None:
            thread.join(timeout=2.0)

    def finish(self, inferences: int) -> Dict[str, Any]:
        """Stop sampling and return the power part of the result for `inferences` runs in the window."""
        meter = self.meter
        if not self.active:
            return empty_result(meter.method, meter.name)
        if self.t_start_ns is None or self.t_end_ns is None:
            self.close()
            raise ValueError("PowerSampler.finish() needs mark_start() and mark_end() first")
        if meter.kind == "power":
            self._wait_for_sample_after(self.t_end_ns)  # the end edge is interpolated, not extrapolated
        self.close()
        result = empty_result(meter.method, meter.name, measured=meter.is_measurement)
        result.update(summarize(meter.kind, self.times_ns, self.values, (self.t_start_ns, self.t_end_ns),
                                self.idle_window, inferences, self.min_window_samples))
        notes = result.pop("notes")
        if notes:
            result["method"] = f"{result['method']}; {'; '.join(notes)}"
        result["nominal_rate_hz"] = self.rate_hz
        result["dropped_lines"] = meter.dropped_lines
        if self.error is not None:
            result["reasons"].append(f"power meter failed during the run: {self.error}")
        return result

    def __enter__(self) -> "PowerSampler":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
