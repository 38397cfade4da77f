"""The timed runner: one job, in the current (fresh) process.

Measurement follows the reference tools (shared/reference/measurement-rules.md):
session creation and the first run are reported apart from steady state;
warm-up and measurement are each gated by a minimum iteration count AND a
minimum duration, the measurement capped by a maximum duration; only
`sess.run` is inside the timed window; percentiles are nearest-rank.
A pipeline job (agent/pipeline/) warms up the same way, then its frames are the
measurement: every stage of every frame is timed, and the frame latencies
take the place of the timed runs.
"""

from __future__ import annotations

import hashlib
import math
import os
import resource
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from agent import evaluate, telemetry
from agent.pipeline.sources import PipelineError, open_source
from agent.result import Result, error_result
from agent.spec import Gate, JobSpec, PipelineSpec

# LoadGen: with 99% confidence an early-stopping p90 needs at least 64 queries.
MIN_ITERS_FOR_P90 = 64
THERMAL_POLL_S = 1.0

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
               "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class ArtifactError(RuntimeError):
    """An artifact or evaluation set that is missing from the cache or fails its sha256 check."""


def cached_file(cache_dir: str, sha256: str, suffix: str) -> str:
    """Path of <cache>/<sha256><suffix>, after checking that its bytes hash to `sha256`."""
    path = os.path.join(cache_dir, sha256 + suffix)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ArtifactError(f"{path}: not in the agent cache ({exc.strerror})") from exc
    if digest.hexdigest() != sha256:
        raise ArtifactError(f"{path}: sha256 is {digest.hexdigest()}, expected {sha256}; refusing to run it")
    return path


def nearest_rank(sorted_values: List[float], percent: float) -> float:
    """The nearest-rank percentile (as onnxruntime_perf_test reports) of an ascending list."""
    rank = max(1, math.ceil(percent / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(samples_ns: List[int]) -> Dict[str, Any]:
    """Latency summary in milliseconds of the timed runs."""
    ms = sorted(s / 1e6 for s in samples_ns)
    count = len(ms)
    mean = sum(ms) / count
    std = math.sqrt(sum((v - mean) ** 2 for v in ms) / (count - 1)) if count > 1 else 0.0
    total_s = sum(samples_ns) / 1e9
    median = nearest_rank(ms, 50)
    mad = nearest_rank(sorted(abs(v - median) for v in ms), 50)
    return {
        # Robust spread: 1.4826 x MAD / median. Plain std/mean is ruled by the heavy tail (one
        # scheduler hiccup of 10 ms among 300 runs of 0.05 ms makes it 6), so it cannot judge noise.
        "robust_cv": 1.4826 * mad / median if median > 0 else 0.0,
        "p50_ms": nearest_rank(ms, 50), "p90_ms": nearest_rank(ms, 90), "p99_ms": nearest_rank(ms, 99),
        "mean_ms": mean, "std_ms": std, "min_ms": ms[0], "max_ms": ms[-1],
        "iterations": count, "timed_s": total_s,
        "throughput_ips": count / total_s if total_s > 0 else None,
    }


def _status_mb(field: str) -> Optional[float]:
    """A size line of /proc/self/status (kB there, meaning KiB) in MB (10^6 bytes); None without /proc."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (since reset_peak_rss, where that worked), in MB = 10^6 bytes.

    VmHWM belongs to the current address space and starts afresh at exec;
    getrusage's ru_maxrss does not (Linux carries it across exec, so a job
    spawned by a big parent would report the parent's peak). ru_maxrss (kB on
    Linux) is the fallback where /proc is missing.
    """
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def current_rss_mb() -> float:
    """Resident set size of this process now, in MB (10^6 bytes); the peak so far where /proc is missing."""
    current = _status_mb("VmRSS")
    return current if current is not None else peak_rss_mb()


def reset_peak_rss() -> bool:
    """Start the peak RSS (VmHWM) afresh from the current RSS (Linux 4.0+: `5` into /proc/self/clear_refs);
    False where that is not possible (the peak then keeps what came before)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


class MemoryWatch:
    """The memory part of a result (MB = 10^6 bytes): the job's peak RSS, the RSS before the session was created,
    and the model's share: the peak since that baseline minus the baseline, without the evaluation set's arrays
    when the timed runs are fed from it (reported apart as evaluation_set_mb).

    The peak is reset at the baseline, so nothing loaded before it (the onnxruntime import, a hashed artifact, a
    pipeline source opened to check it) inflates the model's share; the job's peak still counts it."""

    def __init__(self) -> None:
        self.job_peak_before_mb = peak_rss_mb()
        self.peak_was_reset = reset_peak_rss()
        self.rss_before_session_mb = current_rss_mb()
        self.session_peak_mb: Optional[float] = None
        self.evaluation_set_mb: Optional[float] = None

    def session_ready(self) -> None:
        """Mark the session created and warmed up (the peak of that, before any evaluation set is loaded)."""
        self.session_peak_mb = peak_rss_mb()

    def evaluation_set_loaded(self, *arrays: np.ndarray) -> None:
        """The evaluation set's arrays are now resident: their bytes are the set's own share."""
        self.evaluation_set_mb = sum(int(array.nbytes) for array in arrays) / 1e6

    def figures(self) -> Dict[str, Any]:
        peak_since_baseline = peak_rss_mb()
        # With the set resident, the later peak holds the model's working set plus the set: take the set out; the
        # peak of session creation and warm-up (before the set was loaded) stands on its own.
        model_peak = max(self.session_peak_mb or 0.0, peak_since_baseline - (self.evaluation_set_mb or 0.0))
        return {"rss_before_session_mb": self.rss_before_session_mb,
                "peak_rss_mb": max(self.job_peak_before_mb, peak_since_baseline),
                "model_mb": max(model_peak - self.rss_before_session_mb, 0.0),
                "evaluation_set_mb": self.evaluation_set_mb}


def make_inputs(spec: JobSpec) -> Dict[str, np.ndarray]:
    """Fixed-seed synthetic inputs, built once, outside the timed window."""
    rng = np.random.default_rng(spec.seed)
    feed = {}
    for item in spec.inputs:
        dtype = np.dtype(item.dtype)
        if dtype.kind == "f":
            feed[item.name] = rng.standard_normal(item.shape).astype(dtype)
        else:
            info = np.iinfo(dtype)
            feed[item.name] = rng.integers(max(info.min, 0), min(info.max, 255), item.shape, dtype=dtype)
    return feed


def run_gated(run, min_iters: int, min_s: float, max_s: Optional[float]) -> List[int]:
    """Call `run` until min_iters AND min_s are met, or max_s has passed; return each call's ns."""
    clock = time.perf_counter_ns
    samples: List[int] = []
    append = samples.append
    start = clock()
    min_ns = int(min_s * 1e9)
    max_ns = int(max_s * 1e9) if max_s else None
    while True:
        t0 = clock()
        run()
        t1 = clock()
        append(t1 - t0)
        elapsed = t1 - start
        if len(samples) >= min_iters and elapsed >= min_ns:
            break
        if max_ns is not None and elapsed >= max_ns:
            break
    return samples


def rest_and_cool(spec: JobSpec) -> Dict[str, Any]:
    """Rest `rest_s`, then wait (up to the gate's timeout) until every thermal zone is at or below max_c."""
    if spec.rest_s:
        time.sleep(spec.rest_s)
    gate = spec.thermal
    waited_start = time.monotonic()
    hottest = _hottest(telemetry.temperatures_c(spec.board.root))
    while gate.max_c is not None and hottest is not None and hottest > gate.max_c:
        if time.monotonic() - waited_start >= gate.wait_timeout_s:
            break
        time.sleep(THERMAL_POLL_S)
        hottest = _hottest(telemetry.temperatures_c(spec.board.root))
    return {"rest_s": spec.rest_s, "max_c": gate.max_c, "waited_s": time.monotonic() - waited_start,
            "hottest_c": hottest}


def _hottest(temperatures: Dict[str, float]) -> Optional[float]:
    return max(temperatures.values()) if temperatures else None


def open_power(spec: JobSpec) -> Tuple[Optional[Any], Optional[Dict[str, Any]]]:
    """A started sampler (idle baseline taken) for the spec's meter; or the power result saying why not."""
    if spec.power is None:
        return None, None
    from agent import power

    try:
        sampler = power.PowerSampler(power.create(spec.power, root=spec.board.root), idle_s=spec.power_idle_s)
        sampler.start()
        return sampler, None
    except power.MeterError as exc:
        return None, power.empty_result("none: the meter did not open", str(spec.power.get("type")),
                                        reasons=[f"power meter {spec.power.get('type')}: {exc}"])


def verdict(spec: JobSpec, timing: Dict[str, Any], power_result: Optional[Dict[str, Any]],
            before: Dict[str, Any], after: Dict[str, Any], thermal: Dict[str, Any]) -> List[str]:
    """Why a measurement cannot be trusted (empty: it is valid). Run rules: shared/reference/measurement-rules.md."""
    reasons = []
    iterations = timing["iterations"]
    if iterations < MIN_ITERS_FOR_P90:
        counted = "frames" if spec.pipeline is not None else "timed iterations"
        reasons.append(f"{iterations} {counted}: a p90 needs at least {MIN_ITERS_FOR_P90}")
    if spec.pipeline is None and iterations < spec.measure.min_iters:  # a pipeline's frames are its measurement
        reasons.append(f"max_s {spec.measure.max_s} s reached after {iterations} of min_iters {spec.measure.min_iters}")
    if spec.max_cv is not None and timing["robust_cv"] > spec.max_cv:
        reasons.append(f"latency robust coefficient of variation (1.4826 MAD / median) {timing['robust_cv']:.2f} "
                       f"is above the limit {spec.max_cv:g}")
    if power_result is not None:
        reasons.extend(power_result.get("reasons") or [])
    reasons.extend(throttling_reasons(before.get("throttling"), after.get("throttling")))
    limit = spec.thermal.max_c
    if limit is not None:
        if thermal.get("hottest_c") is not None and thermal["hottest_c"] > limit:
            reasons.append(f"board at {thermal['hottest_c']:.1f} C before the run, above the {limit:g} C limit "
                           f"after waiting {thermal['waited_s']:.0f} s")
        hottest_after = _hottest(after.get("temperatures_c") or {})
        if hottest_after is not None and hottest_after > limit:
            reasons.append(f"board reached {hottest_after:.1f} C during the run, above the {limit:g} C limit")
    return reasons


def throttling_reasons(before: Optional[Dict[str, Any]], after: Optional[Dict[str, Any]]) -> List[str]:
    """Throttling or under-voltage present at the end of the run, or first seen (since-boot flag) during it."""
    if not after:
        return []
    now = [name[:-4] for name, value in after.items() if name.endswith("_now") and value]
    appeared = [name[:-11] for name, value in after.items()
                if name.endswith("_since_boot") and value and not (before or {}).get(name)]
    reasons = []
    if now:
        reasons.append(f"throttling at the end of the run: {', '.join(now)} (get_throttled={after.get('raw')})")
    if appeared:
        reasons.append(f"throttling occurred during the run: {', '.join(appeared)} "
                       f"(get_throttled={after.get('raw')})")
    return reasons


def session_options(ort: Any, spec: JobSpec) -> Any:
    """onnxruntime session options as the spec says; its providers must exist in this onnxruntime."""
    available = ort.get_available_providers()
    missing = [p for p in spec.providers if p not in available]
    if missing:
        raise ArtifactError(f"providers {missing} are not available here (available: {available})")
    options = ort.SessionOptions()
    options.intra_op_num_threads = spec.intra_op_threads
    options.inter_op_num_threads = spec.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[spec.graph_optimization])
    return options


@dataclass
class Measured:
    """What the timed part of a job produced (timing in `timing`, the power window's result in `power`)."""

    session: Any
    timing: Dict[str, Any]
    samples_ns: List[int]
    memory: Dict[str, float]
    power: Optional[Dict[str, Any]]
    before: Dict[str, Any]
    pipeline: Optional[Dict[str, Any]] = None
    accuracy: Optional[Dict[str, Any]] = None  # scored from the timed pass (measure.inputs evaluation_set)


def start_session(ort: Any, spec: JobSpec, model_path: str, feed: Dict[str, np.ndarray]) -> Tuple[Any, Dict[str, Any]]:
    """Create the session, run it once and warm it up on `feed`: the session, and session_create_ms, first_run_ms,
    warmup_iterations and warmup_s for the timing."""
    t0 = time.perf_counter_ns()
    session = ort.InferenceSession(model_path, sess_options=session_options(ort, spec), providers=spec.providers)
    session_create_ms = (time.perf_counter_ns() - t0) / 1e6
    t0 = time.perf_counter_ns()
    session.run(None, feed)
    first_run_ms = (time.perf_counter_ns() - t0) / 1e6
    warm = run_gated(lambda: session.run(None, feed), spec.warmup.min_iters, spec.warmup.min_s, spec.warmup.max_s)
    return session, {"session_create_ms": session_create_ms, "first_run_ms": first_run_ms,
                     "warmup_iterations": len(warm), "warmup_s": sum(warm) / 1e9}


def run_over_set(session: Any, feeds: List[Dict[str, np.ndarray]], gate: Gate) -> Tuple[List[int], List[Any]]:
    """Time `session.run` on each feed in order, wrapping round: at least one full pass (never cut by max_s), then
    on to the end of a pass once min_iters AND min_s are met, or until max_s has passed. Each run's ns, and the
    first output of each run of the first pass."""
    clock = time.perf_counter_ns
    per_pass = len(feeds)
    samples: List[int] = []
    first_pass: List[Any] = []
    min_ns = int(gate.min_s * 1e9)
    max_ns = int(gate.max_s * 1e9) if gate.max_s else None
    index = 0
    start = clock()
    while True:
        feed = feeds[index % per_pass]  # built before the window: only sess.run is timed
        t0 = clock()
        outputs = session.run(None, feed)
        t1 = clock()
        samples.append(t1 - t0)
        index += 1
        if index <= per_pass:
            first_pass.append(outputs[0])
            if index < per_pass:
                continue
        elapsed = t1 - start
        if max_ns is not None and elapsed >= max_ns:
            break
        if index % per_pass == 0 and index >= gate.min_iters and elapsed >= min_ns:
            break
    return samples, first_pass


def evaluation_feeds(spec: JobSpec, path: str, memory: MemoryWatch) -> Tuple[List[Dict[str, np.ndarray]], np.ndarray]:
    """The top-1 evaluation set at `path` as one feed per run (agent/evaluate.py top1_feeds) and its labels."""
    model_input = spec.inputs[0]
    try:
        x, y = evaluate.load_evaluation_set(path)
    except (KeyError, ValueError, OSError) as exc:
        raise ArtifactError(f"{path}: not a top-1 evaluation set with arrays x and y ({exc})") from exc
    x = x.astype(model_input.dtype, copy=False)
    if not len(x) or len(x) != len(y) or list(x.shape[1:]) != list(model_input.shape[1:]):
        raise ArtifactError(f"{path}: measure.inputs evaluation_set needs samples of shape {model_input.shape[1:]} "
                            f"with one label each; the set holds x {list(x.shape)} and y {list(y.shape)}")
    memory.evaluation_set_loaded(x, y)
    return evaluate.top1_feeds(model_input.name, x, model_input.shape[0]), y


def measure(ort: Any, spec: JobSpec, model_path: str, sampler: Optional[Any],
            evaluation_path: Optional[str] = None) -> Measured:
    """Create the session, run it once, warm up, then time only `sess.run` inside the power window: on synthetic
    input, or (measure.inputs evaluation_set) on the evaluation set at `evaluation_path`, whose first pass gives
    the accuracy."""
    board = spec.board
    before = telemetry.conditions(board.root, board.vcgencmd, board.nvpmodel)
    memory = MemoryWatch()
    feed = make_inputs(spec)
    session, startup = start_session(ort, spec, model_path, feed)
    memory.session_ready()
    from_set = spec.measure.inputs == "evaluation_set" and evaluation_path is not None
    if from_set:
        feeds, labels = evaluation_feeds(spec, str(evaluation_path), memory)

    if sampler is not None:
        sampler.mark_start()
    wall0 = time.perf_counter_ns()
    if from_set:
        samples, first_pass = run_over_set(session, feeds, spec.measure)
    else:
        samples = run_gated(lambda: session.run(None, feed), spec.measure.min_iters, spec.measure.min_s,
                            spec.measure.max_s)
    duration_s = (time.perf_counter_ns() - wall0) / 1e9
    power_result = None
    if sampler is not None:
        sampler.mark_end()
        power_result = sampler.finish(inferences=len(samples))
    timing = summarize(samples)
    timing.update(startup, duration_s=duration_s, inputs="evaluation_set" if from_set else "synthetic",
                  passes=len(samples) / len(feeds) if from_set else None)
    accuracy = evaluate.top1_of_outputs(first_pass, labels, spec.inputs[0].shape[0]) if from_set else None
    return Measured(session, timing, samples, memory.figures(), power_result, before, accuracy=accuracy)


def check_pipeline(pipeline: PipelineSpec, cache_dir: str) -> None:
    """Refuse a pipeline job before resting and measuring idle power: its source file must be in the cache (sha256
    checked), Pillow present, and the source readable here (OpenCV for a video that needs it, the camera present).
    ArtifactError or PipelineError (agent/pipeline/sources.py), one line naming the file or device."""
    from agent.pipeline.stages import require_pillow

    name = pipeline.source_file()
    if name is not None:
        sha256, suffix = os.path.splitext(name)
        cached_file(cache_dir, sha256, suffix)
    require_pillow()
    open_source(pipeline.source, cache_dir).close()


def measure_pipeline(ort: Any, spec: JobSpec, pipeline: PipelineSpec, model_path: str, cache_dir: str,
                     sampler: Optional[Any]) -> Measured:
    """Create the session and warm it up as `measure` does, then run `pipeline` (the spec's) inside the power window:
    its frames are the measurement (the timing is of their latencies, its throughput the pipeline's FPS, and energy per
    inference is energy per frame)."""
    from agent.pipeline.run import run_pipeline

    board = spec.board
    before = telemetry.conditions(board.root, board.vcgencmd, board.nvpmodel)
    memory = MemoryWatch()
    session, startup = start_session(ort, spec, model_path, make_inputs(spec))
    memory.session_ready()
    if sampler is not None:
        sampler.mark_start()
    wall0 = time.perf_counter_ns()
    figures = run_pipeline(session, pipeline, cache_dir)
    duration_s = (time.perf_counter_ns() - wall0) / 1e9
    power_result = None
    if sampler is not None:
        sampler.mark_end()
        power_result = sampler.finish(inferences=figures["frames"])
    samples = [int(round(row[-1] * 1e6)) for row in figures["frame_ms"]]
    timing = summarize(samples)
    timing.update(startup, duration_s=duration_s, throughput_ips=figures["fps"], inputs=None, passes=None)
    return Measured(session, timing, samples, memory.figures(), power_result, before, pipeline=figures)


def no_value_reason(accuracy: Optional[Dict[str, Any]]) -> str:
    """Why an accuracy that was asked for came back without a value, in one line."""
    if accuracy is None:
        return "the evaluation set was not scored"
    if not accuracy.get("n"):
        return "the evaluation set holds no samples"
    metrics = accuracy.get("metrics")
    if isinstance(metrics, dict):
        return (f"the scorer gave no {accuracy.get('metric')} over {accuracy['n']} samples "
                f"(it gave: {', '.join(sorted(k for k, v in metrics.items() if v is not None)) or 'nothing'})")
    return f"the scorer gave no {accuracy.get('metric')} over {accuracy['n']} samples"


def run_job(spec: JobSpec, cache_dir: str) -> Dict[str, Any]:
    """Run one benchmark job and return its result as a JSON-ready dict."""
    import onnxruntime as ort

    model_path = cached_file(cache_dir, spec.artifact_sha256, ".onnx")
    if spec.pipeline is not None:
        try:
            check_pipeline(spec.pipeline, cache_dir)
        except PipelineError as exc:
            return error_result(str(exc))
    evaluation_path = None
    if spec.evaluation is not None:  # checked now, read after the timed part
        evaluation_path = cached_file(cache_dir, spec.evaluation.sha256, ".npz")
        if spec.evaluation.metric == "detection":
            from agent.detection.evaluate import pillow_missing

            missing = pillow_missing()
            if missing:
                raise ArtifactError(missing)
    session_options(ort, spec)  # refuse missing providers before resting and measuring idle power
    thermal = rest_and_cool(spec)
    sampler, power_result = open_power(spec)  # the idle baseline is measured here, before anything runs
    try:
        if spec.pipeline is None:
            measured = measure(ort, spec, model_path, sampler, evaluation_path)
        else:
            measured = measure_pipeline(ort, spec, spec.pipeline, model_path, cache_dir, sampler)
    except PipelineError as exc:  # a source that fails mid-run, a stage that fails: one line, no traceback
        return error_result(str(exc))
    finally:
        if sampler is not None:
            sampler.close()
    board = spec.board
    after = telemetry.conditions(board.root, board.vcgencmd, board.nvpmodel)
    power_result = measured.power or power_result
    reasons = verdict(spec, measured.timing, power_result, measured.before, after, thermal)

    accuracy, error = measured.accuracy, None
    if spec.evaluation is not None and evaluation_path is not None and accuracy is None:
        try:
            accuracy = evaluate.accuracy(measured.session, spec.inputs[0], spec.evaluation, evaluation_path)
        except (ValueError, IndexError, KeyError, RuntimeError, OSError) as exc:
            # The measurement stands; the accuracy that was asked for is missing, and the result says why.
            error = f"accuracy ({spec.evaluation.metric}) could not be computed: {type(exc).__name__}: {exc}"
    if spec.evaluation is not None and error is None and (accuracy is None or accuracy.get("value") is None):
        error = f"accuracy ({spec.evaluation.metric}) could not be computed: {no_value_reason(accuracy)}"

    return Result(
        status="error" if error else "invalid" if reasons else "ok", reasons=reasons, error=error,
        timing=measured.timing,
        latency_samples_ms=[s / 1e6 for s in measured.samples_ns], memory=measured.memory, accuracy=accuracy,
        power=power_result, thermal=thermal, conditions_before=measured.before, conditions_after=after,
        repeat=spec.repeat, pipeline=measured.pipeline,
        telemetry={"board": telemetry.board_model(board.root), "soc": telemetry.soc(board.root),
                   **telemetry.software(measured.session.get_providers())},
    ).to_dict()
