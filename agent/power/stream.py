"""A child process whose stdout lines arrive stamped with the monotonic clock (tegrastats, user commands)."""

from __future__ import annotations

import queue
import subprocess
import tempfile
import threading
from typing import IO, List, Optional, Tuple

from agent.power.base import MeterError, now_ns


class LineStream:
    """Runs `argv` and hands out its output lines, each stamped when it arrived."""

    def __init__(self, argv: List[str]) -> None:
        self.argv = argv
        self._process: Optional[subprocess.Popen] = None
        self._lines: "queue.Queue[Tuple[int, Optional[str]]]" = queue.Queue()
        self._reader: Optional[threading.Thread] = None
        self._stderr: Optional[IO[bytes]] = None

    def start(self) -> None:
        """Start the process; MeterError when it cannot be run."""
        # stderr to a file, not a pipe: a chatty tool must never block on a full pipe.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (kept for the process's life; closed in stop())
        try:
            self._process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._stderr,
                                             stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise MeterError(f"cannot run {' '.join(self.argv)}: {exc.strerror}") from exc
        self._reader = threading.Thread(target=self._read, name=f"lines:{self.argv[0]}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        process = self._process
        if process is None or process.stdout is None:
            return
        # Stamp here, in a thread of its own, so the time is the line's arrival
        # and not the moment a busy consumer got round to it.
        for raw in iter(process.stdout.readline, b""):
            self._lines.put((now_ns(), raw.decode("utf-8", "replace").rstrip("\r\n")))
        self._lines.put((now_ns(), None))

    def next_line(self, timeout_s: float) -> Tuple[int, str]:
        """(arrival monotonic_ns, text) of the next line; MeterError on timeout or when the process ended."""
        try:
            stamp, line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise MeterError(f"{' '.join(self.argv)} printed nothing for {timeout_s:g} s") from None
        if line is None:
            self._lines.put((stamp, None))  # later calls see the end too
            raise MeterError(f"{' '.join(self.argv)} exited (code {self._returncode()}): {self._stderr_tail()}")
        return stamp, line

    def _returncode(self) -> Optional[int]:
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return None

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(lines[-3:]) or "no error output"

    def stop(self) -> None:
        """End the process and its reader; safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
            self._reader = None
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
