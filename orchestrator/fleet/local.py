"""The `local` device: the real agent, run in a fresh child process per job on this machine.

Its agent cache is the artifact store itself, so nothing has to be copied.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from agent.runner import run_in_subprocess


class LocalTransport:
    """Runs agent jobs as child processes of the orchestrator."""

    def __init__(self, store_root: Path):
        self.cache_dir = str(Path(store_root).resolve())

    def info(self) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "agent", "info"], capture_output=True, text=True,
                              check=True, timeout=120)
        return json.loads(done.stdout)

    def ensure_files(self, names: list[str]) -> int:
        """Make sure the agent cache holds these files; returns bytes sent (none: it is the store)."""
        return 0

    def run(self, spec_json: str) -> str:
        return run_in_subprocess(spec_json, self.cache_dir)

    def close(self) -> None:
        pass
