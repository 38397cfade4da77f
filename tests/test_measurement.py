"""The measurement rules on the agent, end to end through a real job process: energy from a fake meter with a
known trace, throttling and thermal verdicts from fake boards (formats of shared/reference/)."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import pytest

from agent.bench import throttling_reasons, verdict
from agent.spec import BoardPaths, Gate, InputSpec, JobSpec, Thermal
from orchestrator.fleet.local import LocalTransport
from orchestrator.results.db import open_database
from orchestrator.results.store import ResultsStore
from tests.support.fakes import boards, scripts

pytestmark = pytest.mark.slow

SINE_PERIOD_S = 0.2


def _job(variant, **extra) -> JobSpec:
    settings = {"warmup": Gate(5, 0.05), "measure": Gate(80, 1.0, 10.0), **extra}
    return JobSpec(artifact_sha256=variant.sha256, inputs=[InputSpec("input", variant.meta["input"]["shape"])],
                   **settings)


def _run(store, spec: JobSpec) -> dict:
    return json.loads(LocalTransport(store.root).run(spec.to_json()))


def _sine_watts(path: Path) -> Path:
    """A meter program printing P(t) = 3 + sin(2 pi t / T) watts at ~200 Hz, t on the system monotonic clock."""
    return scripts.write_script(path, f"""\
import math, sys, time
while True:
    print(3.0 + math.sin(2 * math.pi * time.monotonic() / {SINE_PERIOD_S}), flush=True)
    time.sleep(0.005)
""")


def test_energy_per_inference_matches_the_analytic_energy_of_the_trace(built_tiny, tmp_path):
    _, variants, store = built_tiny
    meter = {"type": "command", "command": [str(_sine_watts(tmp_path / "watts"))], "rate_hz": 200}
    result = _run(store, _job(variants[0], measure=Gate(80, 2.0, 10.0), power=meter, power_idle_s=0.5))
    assert result["status"] == "ok", result["reasons"]
    power = result["power"]
    t0, t1 = power["window_start_monotonic_ns"] / 1e9, power["window_end_monotonic_ns"] / 1e9
    w = 2 * math.pi / SINE_PERIOD_S
    analytic_j = 3.0 * (t1 - t0) - (math.cos(w * t1) - math.cos(w * t0)) / w
    assert power["energy_j"] == pytest.approx(analytic_j, rel=0.02)
    iterations = result["timing"]["iterations"]
    assert power["energy_per_inference_mj"] == pytest.approx(analytic_j * 1e3 / iterations, rel=0.02)
    assert power["samples"] >= 100 and power["measured"] is True
    assert power["idle_w"] == pytest.approx(3.0, abs=0.3)  # the idle baseline sees the same trace
    assert power["method"].startswith("command:")
    assert t1 - t0 == pytest.approx(result["timing"]["duration_s"], abs=0.01)  # the window is the timed loop


def test_throttling_mid_run_on_a_fake_pi_is_stored_invalid_with_the_reason(built_tiny, tmp_path):
    """get_throttled reads 0x0 before the run and 0x50005 after it, as a Pi that throttled meanwhile."""
    _, variants, store = built_tiny
    root = tmp_path / "pi4"
    boards.raspberry_pi4(root)
    calls = tmp_path / "calls"
    vcgencmd = scripts.write_script(tmp_path / "vcgencmd", f"""\
import pathlib, sys
calls = pathlib.Path({str(calls)!r})
count = int(calls.read_text()) if calls.exists() else 0
calls.write_text(str(count + 1))
if sys.argv[1:] == ["get_throttled"]:
    print("throttled=0x0" if count == 0 else "throttled=0x50005")
else:
    print('error=2 error_msg="Command not registered"'); sys.exit(255)
""")
    spec = _job(variants[0], board=BoardPaths(root=str(root), vcgencmd=str(vcgencmd)))
    result = _run(store, spec)
    assert result["status"] == "invalid"
    assert any("throttling occurred during the run: under_voltage, throttled" in r for r in result["reasons"])
    assert any("throttling at the end of the run" in r for r in result["reasons"])
    assert result["telemetry"]["board"].startswith("Raspberry Pi 4")
    assert result["conditions_before"]["throttling"]["raw"] == "0x0"

    engine = open_database(str(tmp_path / "results.db"))
    records = ResultsStore(engine)
    sweep = records.start_sweep("t", "t.yaml", "0" * 64, ["pi4"], 1)
    device = records.upsert_device("pi4", "local", {"board": result["telemetry"]["board"]})
    records.upsert_variant("t", variants[0])
    records.record_result(sweep, device, variants[0].sha256, json.loads(spec.to_json()), result)
    with engine.connect() as connection:
        status, reasons = connection.exec_driver_sql("SELECT status, reasons FROM results").one()
    assert status == "invalid" and "throttling occurred during the run" in str(reasons)


def test_a_hot_board_that_does_not_cool_down_is_invalid(built_tiny, tmp_path):
    _, variants, store = built_tiny
    root = tmp_path / "hot"
    boards.thermal_zones(root, [("cpu-thermal", 90000), ("gpu-thermal", -256000)])
    started = time.monotonic()
    result = _run(store, _job(variants[0], board=BoardPaths(root=str(root)),
                              thermal=Thermal(max_c=80.0, wait_timeout_s=1.0)))
    assert result["status"] == "invalid"
    assert any("board at 90.0 C before the run, above the 80 C limit" in r for r in result["reasons"])
    assert result["thermal"]["waited_s"] >= 1.0 and time.monotonic() - started >= 1.0


def test_the_thermal_gate_waits_until_the_board_cools(built_tiny, tmp_path):
    _, variants, store = built_tiny
    root = tmp_path / "cooling"
    boards.thermal_zones(root, [("cpu-thermal", 85000)])
    zone = next(root.glob("sys/devices/virtual/thermal/thermal_zone*/temp"))
    threading.Timer(1.5, lambda: zone.write_text("60000\n")).start()
    result = _run(store, _job(variants[0], board=BoardPaths(root=str(root)),
                              thermal=Thermal(max_c=70.0, wait_timeout_s=30.0)))
    assert result["status"] == "ok", result["reasons"]
    assert 1.0 <= result["thermal"]["waited_s"] < 10 and result["thermal"]["hottest_c"] == 60.0


def test_a_power_window_of_fewer_than_ten_samples_is_invalid(built_tiny, tmp_path):
    _, variants, store = built_tiny
    slow = scripts.watts_printer(tmp_path / "slow", ["2.5"], interval_s=0.5)
    result = _run(store, _job(variants[0], power={"type": "command", "command": [str(slow)], "rate_hz": 2},
                              power_idle_s=0.2))
    assert result["status"] == "invalid"
    assert any("fewer than 10" in r for r in result["reasons"])


def test_a_meter_that_does_not_open_is_a_reason_not_a_crash(built_tiny, tmp_path):
    _, variants, store = built_tiny
    result = _run(store, _job(variants[0], power={"type": "ina3221"}, board=BoardPaths(root=str(tmp_path))))
    assert result["status"] == "invalid" and result["timing"]["iterations"] >= 80
    assert any(r.startswith("power meter ina3221:") for r in result["reasons"])


def test_verdict_rules():
    spec = JobSpec(artifact_sha256="ab" * 32, inputs=[InputSpec("x", [1])], measure=Gate(100, 1, 5), max_cv=0.5)
    timing = {"iterations": 50, "std_ms": 9.0, "mean_ms": 1.0, "robust_cv": 0.1}
    reasons = verdict(spec, timing, None, {}, {}, {"hottest_c": None})
    assert any("a p90 needs at least 64" in r for r in reasons) and any("max_s 5" in r for r in reasons)
    assert not any("coefficient" in r for r in reasons)  # std/mean 9 is the tail's doing; the robust CV is fine
    noisy = verdict(spec, {**timing, "iterations": 200, "robust_cv": 0.8}, None, {}, {}, {"hottest_c": None})
    assert noisy == ["latency robust coefficient of variation (1.4826 MAD / median) 0.80 is above the limit 0.5"]
    assert throttling_reasons({"throttled_since_boot": True}, {"throttled_since_boot": True, "raw": "0x40000"}) == []
    assert throttling_reasons(None, None) == []
