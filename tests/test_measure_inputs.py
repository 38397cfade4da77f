"""What the timed runs are fed (measure.inputs synthetic | evaluation_set), the memory a result reports (MB, the
model's share), implausible net energy flagged, and an accuracy asked for that has no value: real onnxruntime jobs
in fresh processes, real files, a fake power meter of the `command` format (shared/reference/telemetry-formats.md)."""

from __future__ import annotations

import json
import math
import mmap
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from agent.bench import MemoryWatch, peak_rss_mb, verdict
from agent.power.sampler import PowerSampler, summarize
from agent.runner import EVALUATION_PASS_S, EVALUATION_RUN_S, evaluation_samples, job_deadline_s
from agent.spec import EvaluationSpec, Gate, InputSpec, JobSpec, PipelineSpec, SpecError
from orchestrator.artifacts import npz_bytes
from orchestrator.builder.pipeline import BuiltVariant
from orchestrator.errors import RecipeError, UserError
from orchestrator.fleet.devices import LOCAL
from orchestrator.fleet.local import LocalTransport
from orchestrator.lab.jobs import Job, job_spec
from orchestrator.recipes import load_recipe
from tests.support import TINY_RECIPE
from tests.support.fakes import scripts
from tests.support.fakes.meters import FunctionMeter

SHA = "ab" * 32


def _spec(sha256: str, shape: list[int], measure: Gate, evaluation: str | None = None, **extra) -> JobSpec:
    return JobSpec(artifact_sha256=sha256, inputs=[InputSpec("input", shape, "float32")], warmup=Gate(5, 0.05),
                   measure=measure, evaluation=EvaluationSpec(evaluation, "top1") if evaluation else None, **extra)


def _run(store, spec: JobSpec) -> dict:
    return json.loads(LocalTransport(store.root).run(spec.to_json()))


def _steady_watts(path: Path, watts: float = 4.0) -> Path:
    """A `command` meter program printing a steady power at ~200 Hz."""
    return scripts.write_script(path, f"""\
import sys, time
while True:
    print({watts}, flush=True)
    time.sleep(0.005)
""")


def _top1_of(model: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 of the model over (x, y), one sample per run, computed here apart from the agent."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    predicted = [int(np.argmax(session.run(None, {name: x[i:i + 1]})[0])) for i in range(len(x))]
    return float(np.mean(np.asarray(predicted) == y))


# --- the spec -----------------------------------------------------------------------------------------------------

def test_only_the_measurement_gate_takes_evaluation_set_inputs():
    assert Gate(10, 0.5).inputs == "synthetic"
    assert Gate(300, 3.0, 60.0, "evaluation_set").problems(timed=True) == []
    assert [key for key, _ in Gate(300, 3.0, 60.0, "test_set").problems(timed=True)] == ["inputs"]
    assert [key for key, _ in Gate(10, 0.5, None, "evaluation_set").problems(timed=False)] == ["inputs"]
    detection = JobSpec(SHA, [InputSpec("input", [1, 3, 32, 32])], measure=Gate(64, 0.1, 1.0, "evaluation_set"),
                        evaluation=EvaluationSpec(SHA, "detection", preprocess={"size": [32, 32]},
                                                  detection={"decoder": "yolov5"}, class_map=[0]))
    with pytest.raises(SpecError, match="^measure.inputs evaluation_set is for top-1 sets$"):
        detection.validate()
    with pytest.raises(SpecError, match="needs an evaluation set"):
        _spec(SHA, [1, 1, 8, 8], Gate(64, 0.1, 1.0, "evaluation_set")).validate()
    pipeline = _spec(SHA, [1, 1, 8, 8], Gate(64, 0.1, 1.0, "evaluation_set"), SHA, pipeline=PipelineSpec(
        {"kind": "images", "sha256": SHA}, {"size": [8, 8]}, {"decoder": "yolov5"}, ["a"]))
    with pytest.raises(SpecError, match="pipeline job"):
        pipeline.validate()
    with pytest.raises(SpecError, match="warmup.inputs"):
        JobSpec(SHA, [InputSpec("input", [1, 1, 8, 8])], warmup=Gate(5, 0.1, None, "evaluation_set")).validate()
    again = JobSpec.from_json(_spec(SHA, [1, 1, 8, 8], Gate(64, 0.1, 1.0, "evaluation_set"), SHA).to_json())
    assert again.measure.inputs == "evaluation_set"


def test_a_recipe_names_the_inputs_in_benchmark_measure(tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_text(TINY_RECIPE.replace("max_s: 10}", "max_s: 10, inputs: evaluation_set}"))
    assert load_recipe(path).recipe.benchmark.measure.inputs == "evaluation_set"
    path.write_text(TINY_RECIPE.replace("max_s: 10}", "max_s: 10, inputs: real}"))
    with pytest.raises(RecipeError, match="inputs"):
        load_recipe(path)
    path.write_text(TINY_RECIPE.replace("min_s: 0.05}", "min_s: 0.05, inputs: evaluation_set}"))
    with pytest.raises(RecipeError, match="warm-up runs on synthetic input"):
        load_recipe(path)


def test_a_job_feeding_the_test_set_needs_the_set_shipped(tmp_path: Path):
    path = tmp_path / "r.yaml"
    variant = BuiltVariant("v", "0" * 64, {}, [], {"input": {"name": "x", "shape": [1, 1, 8, 8], "dtype": "float32"}},
                           1, 0)
    path.write_text(TINY_RECIPE.replace("max_s: 10}", "max_s: 10, inputs: evaluation_set}\n  accuracy: none"))
    with pytest.raises(UserError, match="benchmark.accuracy: none does not ship"):
        job_spec(load_recipe(path).recipe, Job(variant, LOCAL, threads=1), None)
    path.write_text(TINY_RECIPE.replace("max_s: 10}", "max_s: 10, inputs: evaluation_set}"))
    spec = job_spec(load_recipe(path).recipe, Job(variant, LOCAL, threads=1), SHA)
    assert spec.measure.inputs == "evaluation_set" and spec.evaluation == EvaluationSpec(SHA, "top1")
    spec.validate()


# --- the deadline -------------------------------------------------------------------------------------------------

def test_the_deadline_counts_one_pass_over_the_set(tmp_path: Path):
    synthetic = _spec(SHA, [2, 1, 8, 8], Gate(64, 0.1, 10.0), SHA)
    fed = _spec(SHA, [2, 1, 8, 8], Gate(64, 0.1, 10.0, "evaluation_set"), SHA)
    assert job_deadline_s(fed) - job_deadline_s(synthetic) == EVALUATION_PASS_S  # the workstation cannot count
    assert job_deadline_s(fed, 361) - job_deadline_s(synthetic) == 181 * EVALUATION_RUN_S  # batches of 2
    assert job_deadline_s(fed, 10**9) - job_deadline_s(synthetic) == EVALUATION_PASS_S  # the ceiling
    (tmp_path / f"{SHA}.npz").write_bytes(npz_bytes(x=np.zeros((361, 1, 8, 8), np.float32), y=np.zeros(361)))
    assert evaluation_samples(fed, str(tmp_path)) == 361
    assert evaluation_samples(synthetic, str(tmp_path)) is None


# --- memory -------------------------------------------------------------------------------------------------------

def test_memory_is_in_mb_of_a_million_bytes():
    with open("/proc/self/status") as status:
        vm_hwm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    assert peak_rss_mb() == pytest.approx(vm_hwm_kb * 1024 / 1e6, rel=0.01)
    assert peak_rss_mb() > vm_hwm_kb / 1024 * 1.04  # not MiB (those are 4.9 % fewer)


def test_what_came_before_the_baseline_is_not_the_models_share():
    transient = np.ones(300_000_000 // 8)  # 300 MB touched, then freed, before the baseline
    del transient
    watch = MemoryWatch()
    # 20 MB "session" after it, in pages of its own: numpy's allocator could reuse pages the process already holds
    # (glibc raises its mmap threshold after a large free), and those would not grow the RSS.
    session_like = mmap.mmap(-1, 20_000_000)
    session_like.write(b"\x01" * 20_000_000)
    watch.session_ready()
    figures = watch.figures()
    if not watch.peak_was_reset:
        pytest.skip("this kernel does not let a process reset its peak RSS (/proc/self/clear_refs)")
    assert 15 < figures["model_mb"] < 100  # the 300 MB before the baseline is not in it
    assert figures["peak_rss_mb"] >= figures["rss_before_session_mb"] + 250  # ... but the job's peak counts it
    assert figures["evaluation_set_mb"] is None
    session_like.close()


# --- implausible net energy ---------------------------------------------------------------------------------------

def _trace(idle_w: float, window_w: float, noise_w: float = 0.1):
    """100 Hz: 1 s idle at idle_w +- noise_w (alternating), then 1 s of the run at window_w +- noise_w."""
    times_ns = [i * 10_000_000 for i in range(201)]
    values = [(idle_w if i < 100 else window_w) + (noise_w if i % 2 else -noise_w) for i in range(201)]
    return times_ns, values


def test_a_net_energy_below_zero_beyond_the_idle_noise_makes_the_result_invalid():
    times_ns, values = _trace(5.0, 4.5)  # 0.5 W below idle; the idle spread is 0.1 W
    power = summarize("power", times_ns, values, (1_005_000_000, 1_995_000_000), (0, 990_000_000), inferences=100)
    assert power["idle_std_w"] == pytest.approx(0.1, rel=0.01)
    assert power["energy_per_inference_net_noise_mj"] == pytest.approx(0.1 * 0.99 * 1e3 / 100, rel=0.01)
    assert power["energy_per_inference_net_mj"] == pytest.approx(-0.5 * 0.99 * 1e3 / 100, rel=0.05)
    (reason,) = power["reasons"]
    assert "below zero by more than the idle power's noise" in reason
    spec = _spec(SHA, [1, 1, 8, 8], Gate(64, 0.1, 10.0))
    timing = {"iterations": 100, "robust_cv": 0.01}
    assert verdict(spec, timing, power, {}, {}, {}) == [reason]


def test_a_net_energy_below_zero_within_the_noise_is_kept_and_noted():
    times_ns, values = _trace(5.0, 4.95)  # 0.05 W below idle, within its 0.1 W spread
    power = summarize("power", times_ns, values, (1_005_000_000, 1_995_000_000), (0, 990_000_000), inferences=100)
    assert power["energy_per_inference_net_mj"] < 0 and power["reasons"] == []
    assert "below zero within the idle noise" in power["notes"][0]
    level = [5.0]
    meter = FunctionMeter(lambda t: level[0] + 0.1 * math.sin(2 * math.pi * 37 * t), 0, rate_hz=200.0)
    sampler = PowerSampler(meter, idle_s=0.3)
    sampler.start()
    level[0] = 4.97
    sampler.mark_start()
    time.sleep(0.3)
    sampler.mark_end()
    result = sampler.finish(inferences=50)
    assert result["reasons"] == [] and result["energy_per_inference_net_mj"] < 0
    assert result["method"].startswith(meter.method + "; net energy per inference -")
    assert "notes" not in result


# --- real jobs ----------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_evaluation_set_inputs_time_a_whole_pass_in_the_power_window_and_score_it(built_tiny, tmp_path: Path):
    builder, variants, store = built_tiny
    variant = next(v for v in variants if v.name == "dense/ft1/fp32")
    evaluation = builder.evaluation_set()
    with np.load(store.path(evaluation, ".npz")) as data:
        x, y = data["x"].astype(np.float32), data["y"]
    shape = variant.meta["input"]["shape"]
    assert shape[0] == 1 and len(x) == 360
    meter = {"type": "command", "command": [str(_steady_watts(tmp_path / "watts"))], "rate_hz": 200}
    # max_s far below one pass: the first pass is never cut; min_s makes the window long enough for the meter.
    result = _run(store, _spec(variant.sha256, shape, Gate(80, 0.3, 0.301, "evaluation_set"), evaluation,
                               power=meter, power_idle_s=0.3))
    assert result["status"] == "ok", (result["reasons"], result["error"])
    timing, power, memory = result["timing"], result["power"], result["memory"]
    assert timing["inputs"] == "evaluation_set"
    assert timing["iterations"] >= len(x) and timing["passes"] == timing["iterations"] / len(x) >= 1
    assert timing["duration_s"] >= 0.3
    # Accuracy from the same pass: equal to the model's top-1 over the set, computed here independently.
    assert result["accuracy"] == {"metric": "top1", "value": _top1_of(store.path(variant.sha256, ".onnx"), x, y),
                                  "n": 360}
    # The power window is the timed loop: it holds every timed run.
    window_s = (power["window_end_monotonic_ns"] - power["window_start_monotonic_ns"]) / 1e9
    assert window_s == pytest.approx(timing["duration_s"], abs=0.01) and window_s >= timing["timed_s"]
    assert power["energy_per_inference_mj"] == pytest.approx(power["energy_j"] * 1e3 / timing["iterations"])
    assert power["samples"] >= 10
    # Memory in MB: the model's share is part of the peak, the set's own bytes apart.
    assert memory["evaluation_set_mb"] == pytest.approx((x.nbytes + y.nbytes) / 1e6)
    assert 0 < memory["model_mb"] <= memory["peak_rss_mb"] - memory["rss_before_session_mb"]

    once = _run(store, _spec(variant.sha256, shape, Gate(80, 0.0, 0.001, "evaluation_set"), evaluation))
    assert once["timing"]["iterations"] == 360 and once["timing"]["passes"] == 1.0  # max_s did not cut the pass
    assert not any("max_s" in reason for reason in once["reasons"])


@pytest.mark.slow
def test_synthetic_inputs_say_so_and_report_the_models_memory(built_tiny):
    _, variants, store = built_tiny
    variant = variants[0]
    result = _run(store, _spec(variant.sha256, variant.meta["input"]["shape"], Gate(80, 0.1, 10.0)))
    assert result["status"] == "ok", result["reasons"]
    assert result["timing"]["inputs"] == "synthetic" and result["timing"]["passes"] is None
    memory = result["memory"]
    assert 0 < memory["model_mb"] <= memory["peak_rss_mb"] and memory["evaluation_set_mb"] is None


@pytest.mark.slow
def test_an_accuracy_asked_for_without_a_value_is_an_error_with_the_reason(built_tiny):
    _, variants, store = built_tiny
    variant = variants[0]
    shape = variant.meta["input"]["shape"]
    empty = store.put(npz_bytes(x=np.zeros([0] + shape[1:], np.float32), y=np.zeros(0, np.int64)), ".npz")
    result = _run(store, _spec(variant.sha256, shape, Gate(80, 0.1, 10.0), empty))
    assert result["status"] == "error" and result["timing"]["iterations"] >= 80  # the measurement is kept
    assert result["error"] == "accuracy (top1) could not be computed: the evaluation set holds no samples"
    fed = _run(store, _spec(variant.sha256, shape, Gate(80, 0.1, 10.0, "evaluation_set"), empty))
    assert fed["status"] == "error" and "measure.inputs evaluation_set needs samples of shape" in fed["error"]
