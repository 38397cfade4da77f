"""Run each job in a fresh `python -m agent bench` process.

A crash, a leak or a memory peak of one job never reaches the next, and the
peak RSS a result reports belongs to that job alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Optional

from agent.result import error_result
from agent.spec import JobSpec

# Allowance on top of the timed part for start-up, session creation and the
# accuracy pass over the evaluation set (with measure.inputs synthetic: a pass of its own after timing).
DEADLINE_ALLOWANCE_S = 600.0
# A pipeline job's frames in place of the measurement gate: a generous bound per frame (a 416 px tiny-YOLOv2 frame
# can take a second or more on a small board's CPU), and a fixed bound for a file source read to its end, whose
# frame count is only known once it is read. A looping source with no frame count never ends: the deadline ends it.
PIPELINE_FRAME_S = 10.0
PIPELINE_UNCOUNTED_S = 3600.0
# measure.inputs evaluation_set: the first pass over the set is never cut by max_s, so the deadline counts one pass
# on top of max_s (the gates stop the runs at the end of a pass, or at max_s after the first). A generous bound per
# run (a classifier's batch; a small board's slowest CPU), and where the set's size is unknown (the workstation
# does not open the set), a fixed bound that is also the ceiling of a counted one, so the workstation's deadline is
# never shorter than the board's.
EVALUATION_RUN_S = 1.0
EVALUATION_PASS_S = 7200.0

# Tells `python -m agent bench` which process started it: the job kills itself
# when that process dies (see agent/__main__.py), so no orphaned job keeps a
# board busy after its agent or orchestrator is gone.
PARENT_ENV = "ORCH_AGENT_PARENT_PID"


def child_env() -> Dict[str, str]:
    """The environment of an agent child process (a job, a stream): this agent importable first, and this
    process's pid, which the child dies with (PARENT_ENV)."""
    agent_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = agent_parent + os.pathsep + env.get("PYTHONPATH", "")
    env[PARENT_ENV] = str(os.getpid())
    return env


def job_deadline_s(spec: JobSpec, evaluation_samples: Optional[int] = None) -> float:
    """Seconds after which a job process is presumed hung and killed: every phase a job may wait through (rest,
    the thermal gate, the idle power baseline, warm-up, measurement (with measure.inputs evaluation_set, one whole
    pass over the set's `evaluation_samples` on top of max_s) or a pipeline's frames) plus the allowance."""
    warmup_bound = spec.warmup.max_s or max(10.0 * spec.warmup.min_s, 30.0)
    thermal_wait = spec.thermal.wait_timeout_s if spec.thermal.max_c is not None else 0.0
    idle = spec.power_idle_s if spec.power is not None else 0.0
    if spec.pipeline is None:
        timed = float(spec.measure.max_s or 0.0)
        if spec.measure.inputs == "evaluation_set":
            timed += evaluation_pass_s(spec, evaluation_samples)
    elif spec.pipeline.frames is None:
        timed = PIPELINE_UNCOUNTED_S
    else:
        timed = spec.pipeline.frames * PIPELINE_FRAME_S
    return spec.rest_s + thermal_wait + idle + warmup_bound + timed + DEADLINE_ALLOWANCE_S


def evaluation_pass_s(spec: JobSpec, samples: Optional[int]) -> float:
    """The bound of one timed pass over an evaluation set of `samples` (None: not known here)."""
    if samples is None:
        return EVALUATION_PASS_S
    runs = -(-samples // max(spec.inputs[0].shape[0], 1))
    return min(runs * EVALUATION_RUN_S, EVALUATION_PASS_S)


def evaluation_samples(spec: JobSpec, cache_dir: str) -> Optional[int]:
    """How many samples the job's evaluation set in `cache_dir` holds (its labels' length); None when the job feeds
    none to its timed runs, or the set is not there to count (the job then fails on it by itself)."""
    if spec.measure.inputs != "evaluation_set" or spec.evaluation is None:
        return None
    import numpy as np

    try:
        with np.load(os.path.join(cache_dir, spec.evaluation.sha256 + ".npz"), allow_pickle=False) as data:
            return int(len(data["y"]))
    except (OSError, KeyError, ValueError, TypeError):
        return None


class JobRunner:
    """Runs jobs one at a time, each in a fresh process; `cancel()` kills the running one.

    cache_dir: folder of <sha256>.onnx / <sha256>.npz files the jobs read
    python: interpreter of the job processes (default: this one)
    on_event: called with ("started", pid) and ("finished", wall seconds) around each job
    """

    def __init__(self, cache_dir: str, python: Optional[str] = None,
                 on_event: Optional[Callable[[str, float], None]] = None):
        self.cache_dir = cache_dir
        self.python = python or sys.executable
        self.on_event = on_event
        self._process: Optional[subprocess.Popen] = None
        self._cancelled = False
        self._lock = threading.Lock()

    def run(self, spec_json: str, timeout_s: Optional[float] = None) -> str:
        """Run one job spec in a fresh process and return its result JSON text."""
        spec = JobSpec.from_json(spec_json)
        deadline_s = timeout_s or job_deadline_s(spec, evaluation_samples(spec, self.cache_dir))
        command = [self.python, "-m", "agent", "bench", "--cache", self.cache_dir]
        started = time.perf_counter()
        with self._lock:
            if self._cancelled:
                return json.dumps(error_result("job cancelled before it started"))
            # A session of its own: Ctrl-C in the user's terminal reaches the
            # orchestrator only, which then kills this job rather than recording
            # the job's own death as a failed measurement.
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=child_env(), start_new_session=True)
            self._process = process
        if self.on_event:
            self.on_event("started", float(process.pid))
        try:
            stdout, stderr = process.communicate(spec_json, timeout=deadline_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            return json.dumps(error_result(f"job exceeded its deadline of {deadline_s:.0f} s"))
        finally:
            with self._lock:
                self._process = None
            if self.on_event:
                self.on_event("finished", time.perf_counter() - started)
        if self._cancelled:
            return json.dumps(error_result("job cancelled"))
        if process.returncode == 0:
            try:
                json.loads(stdout)
                return stdout
            except ValueError:
                pass
        tail = (stderr or "").strip().splitlines()[-5:]
        return json.dumps(error_result(
            f"job process exited with code {process.returncode}: " + (" | ".join(tail) or "no output")))

    def cancel(self) -> None:
        """Kill the running job (if any) and refuse to start another."""
        with self._lock:
            self._cancelled = True
            if self._process is not None and self._process.poll() is None:
                self._process.kill()


def run_in_subprocess(spec_json: str, cache_dir: str, python: Optional[str] = None,
                      timeout_s: Optional[float] = None) -> str:
    """Run one job spec in a fresh process and return its result JSON text."""
    return JobRunner(cache_dir, python).run(spec_json, timeout_s)
