"""A board that is not there, for measuring and exercising the scheduler itself (a test double, as fabric ships).

Each job takes `job_s` seconds of wall time and returns a fixed ok result; the
first `faults` calls to connect() fail as an unreachable board would.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from agent.result import Result
from orchestrator.errors import BoardUnreachable


class SimulatedTransport:
    """Fixed-duration jobs on an imaginary board (see the module docstring)."""

    kind = "simulated"

    def __init__(self, name: str, job_s: float = 1.0, faults: int = 0):
        self.name, self.job_s, self.faults_left = name, job_s, faults
        self.bytes_sent = 0
        self.deploy_bytes_sent = 0
        self.last_job_wall_s: float | None = None
        self._stop = threading.Event()

    def connect(self) -> None:
        if self.faults_left > 0:
            self.faults_left -= 1
            raise BoardUnreachable(self.name, "simulated: connection refused")

    def start(self) -> None:
        pass

    def info(self) -> dict[str, Any]:
        return {"board": "simulated", "hostname": self.name}

    def ensure_files(self, names: list[str]) -> int:
        return 0

    def run(self, spec_json: str) -> str:
        self._stop.wait(self.job_s)
        self.last_job_wall_s = self.job_s
        timing = {"p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "mean_ms": 1.0, "iterations": 100,
                  "duration_s": self.job_s}
        return json.dumps(Result(status="ok", timing=timing).to_dict())

    def abort(self) -> None:
        self._stop.set()

    def close(self) -> None:
        pass
