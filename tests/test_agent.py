"""The agent: a real onnxruntime job in a fresh process, its run rules and its refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.bench import nearest_rank, run_gated, summarize
from agent.spec import EvaluationSpec, Gate, InputSpec, JobSpec, SpecError
from orchestrator.fleet.local import LocalTransport
from tests.support import REPO


def _spec(variant, evaluation=None, **measure) -> JobSpec:
    gate = {"min_iters": 80, "min_s": 0.2, "max_s": 10.0}
    gate.update(measure)
    return JobSpec(artifact_sha256=variant.sha256,
                   inputs=[InputSpec("input", variant.meta["input"]["shape"], "float32")],
                   warmup=Gate(5, 0.05), measure=Gate(**gate),
                   evaluation=EvaluationSpec(evaluation, "top1") if evaluation else None)


def test_agent_imports_neither_orchestrator_nor_torch():
    code = ("import sys, agent.__main__, agent.bench, agent.runner, agent.telemetry;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'orchestrator')];"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_agent_runs_on_the_boards_python_3_8():
    vermin = str(Path(sys.executable).with_name("vermin"))
    done = subprocess.run([vermin, "--no-tips", "--eval-annotations", "--target=3.8-", "--violations",
                           str(REPO / "agent")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_local_job_measures_latency_memory_and_accuracy(built_tiny):
    builder, variants, store = built_tiny
    variant = next(v for v in variants if v.name == "dense/ft1/fp32")
    evaluation = builder.evaluation_set()
    result = json.loads(LocalTransport(store.root).run(_spec(variant, evaluation).to_json()))
    assert result["status"] == "ok", result
    timing = result["timing"]
    assert timing["iterations"] >= 80 and len(result["latency_samples_ms"]) == timing["iterations"]
    assert 0 < timing["min_ms"] <= timing["p50_ms"] <= timing["p90_ms"] <= timing["p99_ms"] <= timing["max_ms"]
    assert timing["session_create_ms"] > 0 and timing["first_run_ms"] > 0
    assert timing["timed_s"] <= timing["duration_s"]
    assert timing["throughput_ips"] == pytest.approx(timing["iterations"] / timing["timed_s"])
    # The job's own peak, not the orchestrator's (which holds torch and is far larger).
    assert 10 < result["memory"]["peak_rss_mb"] < 400
    assert result["accuracy"]["n"] == 360
    assert result["accuracy"]["value"] == pytest.approx(variant.meta["host_accuracy"], abs=0.003)
    assert result["telemetry"]["providers_used"] == ["CPUExecutionProvider"]


@pytest.mark.slow
def test_max_s_caps_the_run_and_too_few_iterations_make_it_invalid(built_tiny):
    _, variants, store = built_tiny
    variant = variants[0]
    result = json.loads(LocalTransport(store.root).run(
        _spec(variant, min_iters=10**9, min_s=0.0, max_s=0.02).to_json()))
    assert result["status"] == "invalid"
    assert result["timing"]["duration_s"] < 1.0
    assert any("max_s" in reason for reason in result["reasons"])


def test_an_artifact_whose_bytes_do_not_match_its_hash_is_refused(tmp_path):
    fake_sha = "ab" * 32
    (tmp_path / f"{fake_sha}.onnx").write_bytes(b"not the model you are looking for")
    spec = JobSpec(artifact_sha256=fake_sha, inputs=[InputSpec("input", [1, 1, 8, 8])])
    result = json.loads(LocalTransport(tmp_path).run(spec.to_json()))
    assert result["status"] == "error" and "refusing to run it" in result["error"]
    missing = JobSpec(artifact_sha256="cd" * 32, inputs=[InputSpec("input", [1, 1, 8, 8])])
    result = json.loads(LocalTransport(tmp_path).run(missing.to_json()))
    assert result["status"] == "error" and "not in the agent cache" in result["error"]


@pytest.mark.parametrize("change, message", [
    ({"schema": 99}, "schema 99"),
    ({"artifact_sha256": "../../etc/passwd"}, "not a sha256"),
    ({"graph_optimization": "ludicrous"}, "graph_optimization"),
    ({"inputs": [{"name": "x", "shape": [1, -1], "dtype": "float32"}]}, "concrete"),
    ({"measure": {"min_iters": 0, "min_s": 1, "max_s": 2}}, "min_iters"),
])
def test_malformed_specs_are_refused(change, message):
    body = json.loads(JobSpec(artifact_sha256="ab" * 32, inputs=[InputSpec("input", [1, 3])]).to_json())
    body.update(change)
    with pytest.raises(SpecError, match=message):
        JobSpec.from_json(json.dumps(body))


def test_nearest_rank_percentiles():
    values = [float(v) for v in range(1, 101)]
    assert nearest_rank(values, 50) == 50 and nearest_rank(values, 90) == 90 and nearest_rank(values, 99) == 99
    assert nearest_rank([7.0], 99) == 7.0
    summary = summarize([1_000_000, 2_000_000, 3_000_000])
    assert summary["p50_ms"] == 2.0 and summary["mean_ms"] == 2.0 and summary["std_ms"] == pytest.approx(1.0)


def test_gate_needs_both_minimums():
    calls = []
    started = time.perf_counter()
    samples = run_gated(lambda: calls.append(1), min_iters=50, min_s=0.05, max_s=5)
    assert time.perf_counter() - started >= 0.05  # 50 no-op calls alone take microseconds
    assert len(samples) == len(calls) > 50
    slow = run_gated(lambda: time.sleep(0.002), min_iters=20, min_s=0.0, max_s=5)
    assert len(slow) == 20 and min(slow) >= 2_000_000
