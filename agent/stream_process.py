"""The `python -m agent stream` child process (agent/pipeline/stream.py), as the board's service
(agent/service.py) and the workstation's `local` device (orchestrator/fleet/local.py) both start it.

The child reads the session token and the job spec on its stdin (never on a command line) and answers with one
framed line: {"event": "listening", "port", "pid"}, or {"event": "error", "message"} for a spec or source it
cannot use. It lives until its page's End button, `stop()`, or the end of its stdin, which closes when whoever
started it goes away (and the kernel kills it with that process: agent/__main__.py `die_with_parent`).
Standard library only: the service imports this without numpy.
"""

from __future__ import annotations

import collections
import json
import queue
import subprocess
import sys
import threading
from typing import IO, Any, Deque, Dict, Optional

from agent import unframed
from agent.runner import child_env

# With the 10 s wait for its exit code and the 5 s for its last stderr lines, below the rpyc call timeout
# (agent/service.py PROTOCOL_CONFIG, 60 s): the workstation hears why the stream did not start, not a timeout.
START_TIMEOUT_S = 40.0
EXIT_BAD_INPUT = 2  # the child's exit code for a spec or source it cannot use (its error event says which)


class StreamError(RuntimeError):
    """The stream process did not start; `bad_input` when its spec or source was refused (else it failed)."""

    def __init__(self, message: str, bad_input: bool = False):
        super().__init__(message)
        self.bad_input = bad_input


class StreamProcess:
    """At most one stream child at a time (starting one stops the previous one).

    cache_dir: the agent cache holding the model and the source files
    python: interpreter of the child (default: this one)
    """

    def __init__(self, cache_dir: str, python: Optional[str] = None):
        self.cache_dir = cache_dir
        self.python = python or sys.executable
        self._process: Optional[subprocess.Popen] = None
        self._stderr: Deque[str] = collections.deque(maxlen=20)

    def start(self, spec_json: str, token: str) -> Dict[str, Any]:
        """Start the child on this spec and token: {"port", "pid"} once it listens on 127.0.0.1, or {"error",
        "bad_input"} when it did not start (bad_input: its spec or source was refused; else it failed)."""
        try:
            return self._start(spec_json, token)
        except StreamError as exc:
            return {"error": str(exc), "bad_input": exc.bad_input}

    def _start(self, spec_json: str, token: str) -> Dict[str, Any]:
        self.stop()
        # A session of its own: Ctrl-C in the user's terminal reaches the orchestrator, which then stops this.
        process = subprocess.Popen([self.python, "-m", "agent", "stream", "--cache", self.cache_dir],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=child_env(), start_new_session=True)
        self._process = process
        self._stderr.clear()
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        try:
            process.stdin.write(json.dumps({"token": token, "spec": spec_json}) + "\n")
            process.stdin.flush()  # stdin stays open: its end tells the child that this side is gone
        except BrokenPipeError:
            pass  # it exited at once: its exit code and stderr say why, below
        stderr_reader = threading.Thread(target=self._keep_stderr, args=(process.stderr,), daemon=True)
        stderr_reader.start()
        events: "queue.Queue[Optional[Dict[str, object]]]" = queue.Queue()
        threading.Thread(target=_read_events, args=(process.stdout, events), daemon=True).start()
        try:
            event = events.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            self.stop()
            raise StreamError(f"the stream process did not start within {START_TIMEOUT_S:.0f} s") from None
        if event is not None and event.get("event") == "listening":
            return {"port": int(str(event["port"])), "pid": process.pid}
        try:
            code = process.wait(timeout=10)  # it exits right after saying why
        except subprocess.TimeoutExpired:
            code = None
        stderr_reader.join(timeout=5)  # its last lines say why
        self.stop()
        if event is not None and event.get("event") == "error":
            raise StreamError(str(event.get("message")), bad_input=code == EXIT_BAD_INPUT)
        tail = " | ".join(list(self._stderr)[-3:]) or "no output"
        raise StreamError(f"the stream process exited with code {code} as it started: {tail}")

    def running(self) -> bool:
        """Whether the child is alive (it ends itself when its page's End button is pressed)."""
        return self._process is not None and self._process.poll() is None

    def stop(self) -> bool:
        """Kill the child; whether one was running."""
        process, self._process = self._process, None
        if process is None:
            return False
        alive = process.poll() is None
        if alive:
            process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        return alive

    def _keep_stderr(self, stream: IO[str]) -> None:
        """Keep the last lines the child wrote to stderr (for error messages), so its pipe never fills."""
        try:
            for line in stream:
                self._stderr.append(line.rstrip())
        except (OSError, ValueError):
            pass  # the pipe was closed by stop(): nothing more to keep


def _read_events(stream: IO[str], events: "queue.Queue[Optional[Dict[str, object]]]") -> None:
    """Hand over the child's first framed event, then None at the end of its output (it exited); any later
    output is read and dropped, so the pipe never fills."""
    told = False
    try:
        for line in stream:
            bodies = unframed(line)
            if bodies and not told:
                events.put(json.loads(bodies[0]))
                told = True
    except (OSError, ValueError):
        pass  # closed by stop(), or not JSON: the child is treated as exited
    events.put(None)
