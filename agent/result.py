"""The result contract: what one job returns, as JSON text (`"schema": SCHEMA_VERSION`, agent/__init__.py).

Fields (absent or null where the job did not get that far):
  status              ok (a valid measurement), invalid (measured, but `reasons` say why it cannot be
                      trusted), error (no measurement; `error` says why)
  reasons             why an `invalid` result is invalid
  error               why an `error` result has no measurement (one line)
  timing              p50_ms, p90_ms, p99_ms, mean_ms, std_ms, min_ms, max_ms, robust_cv, iterations, timed_s,
                      duration_s, throughput_ips, session_create_ms, first_run_ms, warmup_iterations, warmup_s,
                      inputs (what the timed runs were fed: synthetic or evaluation_set; null for a pipeline job),
                      passes (evaluation_set: timed runs over runs per pass, at least 1; else null);
                      a pipeline job's are of its frames' latencies, and its throughput_ips is the pipeline's FPS
  latency_samples_ms  every timed run (a pipeline job: every frame's latency), in order
  memory              in MB (10^6 bytes): rss_before_session_mb (RSS just before the session is created),
                      peak_rss_mb (the job process's own peak), model_mb (the model's share: the peak since that
                      baseline minus it, the evaluation set's arrays not counted), evaluation_set_mb (the set's
                      array bytes when the timed runs are fed from it, else null)
  accuracy            {metric, value, n} over the evaluation set, computed on the board (from the timed pass
                      with measure.inputs evaluation_set); asked for but without a value: status error
  power               the sampler's result (agent/power/sampler.py): method, meter, idle_w, mean_w, energy ...
  thermal             the rest and thermal gate before the run: rest_s, max_c, waited_s, hottest_c
  conditions_before, conditions_after   temperatures, throttling, clocks, power mode (agent/telemetry.py)
  repeat              {index, of} when the job is one of several repeats
  telemetry           board, soc, onnxruntime version and providers, python, numpy, kernel
  pipeline            a pipeline job's figures (agent/pipeline/figures.py): mode, frames, frames_dropped, source
                      (kind, size, decoder), fps, wall_s, latency, stages, queued, cpu_percent, frame_ms (per-frame
                      stage times), detections_count, detections_digest, detections, saved_frames

Every producer of a result, on the board and on the workstation (a job not run because its board is down,
an answer that is not JSON), builds it here, so the contract and its schema number live in one place.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from agent import SCHEMA_VERSION

STATUSES = ("ok", "invalid", "error")


@dataclass
class Result:
    """One job's result (fields in the module docstring)."""

    status: str
    reasons: List[str] = field(default_factory=list)
    error: Optional[str] = None
    timing: Optional[Dict[str, Any]] = None
    latency_samples_ms: Optional[List[float]] = None
    memory: Optional[Dict[str, Any]] = None
    accuracy: Optional[Dict[str, Any]] = None
    power: Optional[Dict[str, Any]] = None
    thermal: Optional[Dict[str, Any]] = None
    conditions_before: Optional[Dict[str, Any]] = None
    conditions_after: Optional[Dict[str, Any]] = None
    repeat: Optional[Dict[str, int]] = None
    telemetry: Optional[Dict[str, Any]] = None
    pipeline: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        """The JSON-ready form, with the schema number first."""
        body: Dict[str, Any] = {"schema": SCHEMA_VERSION}
        body.update(asdict(self))
        return body


def error_result(message: str, status: str = "error") -> Dict[str, Any]:
    """A result that records why a job produced no measurement."""
    return Result(status=status, error=message).to_dict()


def parse_result(text: str) -> Dict[str, Any]:
    """An agent's answer as a result dict; an answer that is not a result object becomes an error result saying so."""
    try:
        result = json.loads(text)
    except ValueError:
        result = None
    if not isinstance(result, dict) or result.get("status") not in STATUSES:
        return error_result(f"the agent answered with something other than a result: {text[:200]!r}")
    return result
