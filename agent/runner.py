"""Run each job in a fresh `python -m agent bench` process.

A crash, a leak or a memory peak of one job never reaches the next, and the
peak RSS a result reports belongs to that job alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Optional

from agent.bench import error_result
from agent.spec import JobSpec

# Allowance on top of the timed part for start-up, session creation and the
# accuracy pass over the evaluation set.
DEADLINE_ALLOWANCE_S = 600.0


def job_deadline_s(spec: JobSpec) -> float:
    """Seconds after which a job process is presumed hung and killed."""
    warmup_bound = spec.warmup.max_s or max(10.0 * spec.warmup.min_s, 30.0)
    return warmup_bound + float(spec.measure.max_s or 0.0) + DEADLINE_ALLOWANCE_S


def run_in_subprocess(spec_json: str, cache_dir: str, python: Optional[str] = None,
                      timeout_s: Optional[float] = None) -> str:
    """Run one job spec in a fresh process and return its result JSON text."""
    spec = JobSpec.from_json(spec_json)
    agent_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = agent_parent + os.pathsep + env.get("PYTHONPATH", "")
    command = [python or sys.executable, "-m", "agent", "bench", "--cache", cache_dir]
    try:
        # A session of its own: Ctrl-C in the user's terminal reaches the
        # orchestrator only, which then kills this job rather than recording
        # the job's own death as a failed measurement.
        done = subprocess.run(command, input=spec_json, capture_output=True, text=True, env=env,
                              timeout=timeout_s or job_deadline_s(spec), start_new_session=True)
    except subprocess.TimeoutExpired:
        return json.dumps(error_result(f"job exceeded its deadline of {timeout_s or job_deadline_s(spec):.0f} s"))
    if done.returncode == 0:
        try:
            json.loads(done.stdout)
            return done.stdout
        except ValueError:
            pass
    tail = (done.stderr or "").strip().splitlines()[-5:]
    return json.dumps(error_result(
        f"job process exited with code {done.returncode}: " + (" | ".join(tail) or "no output")))
