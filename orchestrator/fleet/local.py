"""The `local` device: the real agent, run in a fresh child process per job on this machine.

Its agent cache is the artifact store itself, so nothing has to be copied. A live stream (`orch stream local`)
is the same `python -m agent stream` child a board's agent starts (agent/stream_process.py), reached by a plain
socket to its 127.0.0.1 port.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import unframed
from agent.runner import JobRunner
from agent.stream_process import StreamProcess
from orchestrator.fleet.forward import stream_answer


class LocalTransport:
    """Runs agent jobs as child processes of the orchestrator."""

    kind = "local"

    def __init__(self, store_root: Path):
        self.cache_dir = str(Path(store_root).resolve())
        self.bytes_sent = 0
        self.deploy_bytes_sent = 0
        self.last_job_wall_s: float | None = None
        self._runner = JobRunner(self.cache_dir, on_event=self._on_event)
        self._stream = StreamProcess(self.cache_dir)

    def connect(self) -> None:
        """Nothing to connect to."""

    def start(self) -> None:
        """Nothing to deploy: the agent runs from this installation."""

    def info(self) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "agent", "info", "--cache", self.cache_dir],
                              capture_output=True, text=True, check=True, timeout=120)
        return dict(json.loads(unframed(done.stdout)[-1]))

    def ensure_files(self, names: list[str]) -> int:
        """Make sure the agent cache holds these files; returns bytes sent (none: it is the store)."""
        return 0

    def run(self, spec_json: str, progress: Callable[[dict[str, Any]], None] | None = None) -> str:
        self.last_job_wall_s = None
        return self._runner.run(spec_json)

    def abort(self) -> None:
        """From another thread: kill the running job."""
        self._runner.cancel()

    def close(self) -> None:
        """Stop the stream, if one runs (a job ends with its process)."""
        self._stream.stop()

    def stream_start(self, spec_json: str, token: str) -> dict[str, int]:
        """Start a stream of this pipeline job behind `token`: {port, pid} on 127.0.0.1."""
        return stream_answer("local", self._stream.start(spec_json, token))

    def stream_stop(self) -> bool:
        """Kill the stream; whether one was running."""
        return self._stream.stop()

    def stream_running(self) -> bool:
        """Whether the stream process is alive (its page's End button ends it)."""
        return self._stream.running()

    def open_stream_channel(self, port: int) -> socket.socket:
        """A new connection to the stream's 127.0.0.1:port."""
        return socket.create_connection(("127.0.0.1", port))

    def _on_event(self, event: str, value: float) -> None:
        if event == "finished":
            self.last_job_wall_s = value
