"""The agent's restricted rpyc service and `python -m agent serve`.

Exposed methods, and nothing else (never rpyc's classic/slave service):
  info()                           -> JSON text: board identity, software, free disk, power meters
  has_artifact(sha256, suffix)     -> True when <cache>/<sha256><suffix> exists and its bytes hash to sha256
  run(spec_json, progress_callback) -> result JSON text; progress_callback(event JSON text) is told when
                                       the job process starts and ends
  stream_start(spec_json, token)   -> JSON text {port, pid} of a live detector stream (agent/pipeline/stream.py)
                                      started as a child process serving 127.0.0.1:port, behind `token`; or
                                      {error, bad_input} when it did not start (agent/stream_process.py)
  stream_stop()                    -> True when a stream was running (it is killed)
  stream_running()                 -> whether the stream is alive (its page's End button ends it)
Only str, bool and bytes cross: no pickles, no proxies of the agent's objects
(the connection refuses pickling, attribute access beyond exposed_*, setattr).

`serve` lifecycle, driven by the orchestrator over one SSH session:
  1. reads one JSON line on stdin: {"token": <64 hex>, "holder": <who is asking>}
  2. takes the board lock (an flock'd file in the agent's cache folder), waiting or
     failing (exit 3, event "busy") as --lock says; prints events as JSON lines on stdout
  3. listens on 127.0.0.1 only, on a free port, and prints {"event": "listening", "port": N};
     a connection must first send the token line or it is dropped
  4. exits, killing any running job or stream, when stdin closes (the SSH session ended) or its
     connection closes: the lock dies with it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import sys
import threading
import time
from typing import IO, Any, Callable, Dict, Optional, Tuple

import rpyc
from rpyc.utils.authenticators import AuthenticationError
from rpyc.utils.server import ThreadedServer

from agent import __version__, framed, telemetry
from agent.result import error_result
from agent.runner import JobRunner
from agent.spec import SpecError
from agent.stream_process import StreamProcess

SUFFIXES = (".onnx", ".npz", ".video")
TOKEN_PATTERN = re.compile(r"\A[0-9a-f]{64}\Z")
SHA256_PATTERN = re.compile(r"\A[0-9a-f]{64}\Z")
EXIT_BUSY = 3

# Both ends of the connection (this service and the orchestrator, orchestrator/fleet/transport.py) use this:
# everything beyond exposed_* methods is refused; nothing is pickled; no custom exception is rebuilt.
PROTOCOL_CONFIG = {
    "allow_public_attrs": False, "allow_all_attrs": False, "allow_setattr": False, "allow_delattr": False,
    "allow_pickle": False, "import_custom_exceptions": False, "instantiate_custom_exceptions": False,
    "instantiate_oldstyle_exceptions": False, "include_local_traceback": False, "sync_request_timeout": 60,
}


def board_info(cache_dir: str) -> Dict[str, Any]:
    """`agent info`: identity and software, free disk under the cache, power meters present, and what its
    onnxruntime loads (agent/runtime.py: newest IR version and opset per domain, kernels)."""
    from agent import power

    info = telemetry.identity()
    folder = cache_dir if os.path.isdir(cache_dir) else os.path.dirname(os.path.abspath(cache_dir)) or "."
    while not os.path.isdir(folder):
        folder = os.path.dirname(folder) or "/"
    info["disk_free_mb"] = shutil.disk_usage(folder).free / 2**20
    info["cache_dir"] = os.path.abspath(cache_dir)
    info["power_meter_detected"] = power.detect()
    info["power_meters_known"] = power.names()
    info["rpyc"] = getattr(rpyc, "__version__", None)
    try:
        from agent import runtime

        info.update(runtime.describe())
    except ImportError as exc:  # no onnxruntime (or numpy): `agent info` still says what the board is
        info.setdefault("import_error", str(exc))
    return info


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class AgentService(rpyc.Service):
    """The calls an orchestrator may make (see the module docstring)."""

    def __init__(self, cache_dir: str, python: Optional[str] = None,
                 on_disconnect: Optional[Callable[[], None]] = None):
        self.cache_dir = cache_dir
        self.runner = JobRunner(cache_dir, python)
        self.stream = StreamProcess(cache_dir, python)
        self._verified: Dict[Tuple[str, int, int], bool] = {}  # (path, size, mtime_ns) -> hash matched
        self._one_job = threading.Lock()
        self._disconnected = on_disconnect

    def on_disconnect(self, conn: Any) -> None:
        self.runner.cancel()
        self.stream.stop()
        if self._disconnected:
            self._disconnected()

    def exposed_info(self) -> str:
        return json.dumps(board_info(self.cache_dir), sort_keys=True)

    def exposed_has_artifact(self, sha256: str, suffix: str = ".onnx") -> bool:
        if not isinstance(sha256, str) or not SHA256_PATTERN.match(sha256) or suffix not in SUFFIXES:
            raise ValueError("has_artifact takes a sha256 hex digest and a suffix in " + ", ".join(SUFFIXES))
        path = os.path.join(self.cache_dir, sha256 + suffix)
        try:
            stat = os.stat(path)
        except OSError:
            return False
        key = (path, stat.st_size, stat.st_mtime_ns)
        if key not in self._verified:
            self._verified[key] = sha256_of(path) == sha256
        return self._verified[key]

    def exposed_run(self, spec_json: str, progress_callback: Optional[Callable[[str], Any]] = None) -> str:
        if not isinstance(spec_json, str):
            raise TypeError("run takes the job spec as JSON text")

        def tell(event: str, value: float) -> None:
            if progress_callback is None:
                return
            body = {"event": "job_" + event, ("pid" if event == "started" else "wall_s"): value}
            try:
                progress_callback(json.dumps(body))
            except Exception as exc:  # a gone orchestrator is noticed by on_disconnect; keep the job's result
                print(f"agent: progress callback failed: {exc!r}", file=sys.stderr)

        with self._one_job:
            self.runner.on_event = tell
            try:
                return self.runner.run(spec_json)
            except SpecError as exc:
                return json.dumps(error_result(str(exc)))

    def exposed_stream_start(self, spec_json: str, token: str) -> str:
        if not isinstance(spec_json, str) or not isinstance(token, str) or not TOKEN_PATTERN.match(token):
            raise TypeError("stream_start takes the job spec as JSON text and a 64-hex-digit token")
        return json.dumps(self.stream.start(spec_json, token))

    def exposed_stream_stop(self) -> bool:
        return self.stream.stop()

    def exposed_stream_running(self) -> bool:
        return self.stream.running()


def token_authenticator(token: str) -> Callable[[socket.socket], Tuple[socket.socket, None]]:
    """An rpyc authenticator: the first line a connection sends must be the session's token."""

    def authenticate(sock: socket.socket) -> Tuple[socket.socket, None]:
        sock.settimeout(10.0)
        received = b""
        try:
            while not received.endswith(b"\n") and len(received) <= 65:
                chunk = sock.recv(65 - len(received))
                if not chunk:
                    break
                received += chunk
        except OSError as exc:
            raise AuthenticationError(f"no token: {exc}") from exc
        finally:
            sock.settimeout(None)
        if not hmac.compare_digest(received.strip(), token.encode()):
            raise AuthenticationError("wrong token")
        return sock, None

    return authenticate


class BoardLock:
    """An exclusive flock on a file in the agent's cache folder, naming its holder inside."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # O_NOFOLLOW: a board.lock planted as a symlink to another file must not have that file truncated.
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)

    def try_acquire(self, holder: str) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps({"holder": holder, "pid": os.getpid(), "since": time.time()}).encode(), 0)
        return True

    def holder(self) -> Dict[str, Any]:
        try:
            with open(self.path) as handle:
                return dict(json.loads(handle.read() or "{}"))
        except (OSError, ValueError):
            return {}


def emit(out: IO[str], event: str, **fields: Any) -> None:
    """One framed event line (agent/__init__.py FRAME) for the orchestrator reading this session's stdout."""
    out.write(framed(json.dumps(dict(fields, event=event))) + "\n")
    out.flush()


def serve(cache_dir: str, lock_file: str, wait_for_lock: bool, python: Optional[str] = None,
          stdin: IO[str] = sys.stdin, stdout: IO[str] = sys.stdout) -> int:
    """Run the service for one orchestrator session (see the module docstring); returns the exit code."""
    try:
        hello = json.loads(stdin.readline() or "{}")
    except ValueError:
        hello = {}
    token, holder = str(hello.get("token", "")), str(hello.get("holder", "unknown"))[:200]
    if not TOKEN_PATTERN.match(token):
        emit(stdout, "error", message="serve expects a JSON line {token, holder} on stdin")
        return 2
    cache_dir = os.path.abspath(cache_dir)
    os.makedirs(cache_dir, exist_ok=True)
    lock = BoardLock(lock_file)
    finished = threading.Event()  # the session is over: stdin closed, or the orchestrator disconnected
    if not lock.try_acquire(holder):
        emit(stdout, "busy" if not wait_for_lock else "waiting", **lock.holder())
        if not wait_for_lock:
            return EXIT_BUSY
        _set_on_eof(stdin, finished)
        while not lock.try_acquire(holder):
            if finished.wait(0.25):
                return 0
    else:
        _set_on_eof(stdin, finished)
    service = AgentService(cache_dir, python, on_disconnect=finished.set)
    server = ThreadedServer(service, hostname="127.0.0.1", port=0, protocol_config=PROTOCOL_CONFIG,
                            authenticator=token_authenticator(token))
    server._listen()  # listen before saying so (start() would do it later, in its thread; rpyc 6, idempotent)
    threading.Thread(target=server.start, name="rpyc-server", daemon=True).start()
    emit(stdout, "listening", port=server.port, version=__version__, pid=os.getpid())
    finished.wait()
    service.runner.cancel()
    service.stream.stop()
    server.close()
    return 0


def _set_on_eof(stdin: IO[str], event: threading.Event) -> None:
    """Set `event` when stdin reaches end of file (the orchestrator's session is gone)."""

    def read_until_eof() -> None:
        try:
            while stdin.readline():
                pass
        finally:
            event.set()

    threading.Thread(target=read_until_eof, name="stdin-watch", daemon=True).start()
