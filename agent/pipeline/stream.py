"""`python -m agent stream`: the detector pipeline run without end, served as a live MJPEG stream on 127.0.0.1.

The workstation reaches it through the SSH connection (orchestrator/fleet/forward.py); the board never listens
beyond its loopback. Any web page in the user's browser can reach a loopback port, so every request must carry
the session's token (`?token=` or an `X-Orch-Token` header) and a Host header naming 127.0.0.1 or localhost (a
DNS-rebinding page's Host names its own domain); anything else is answered 403 with no detail. Requests are not
logged: their URLs carry the token.

  GET  /            the page: the stream, stage p50 times and FPS refreshed from /stats, Start, Stop and End
  GET  /stream.mjpg multipart/x-mixed-replace; boundary=frame: one JPEG per part, each new frame as it is made
  GET  /frame.jpg   the latest frame (its index in the X-Orch-Frame header)
  GET  /stats       JSON {running, frames, fps, stages {name: p50_ms}, latency_ms, last {index, detections}, error}
  POST /stop        stop the pipeline (the page stays served); POST /start runs it again
  POST /end         end the process

Lifecycle: one JSON line on stdin {"token": 64 hex, "spec": JobSpec JSON with a pipeline}; the session is
created, the pipeline started and its first frame awaited, then one framed line {"event": "listening", "port",
"pid"}, or {"event": "error", "message"} and exit 2 for a spec or source it cannot use. The process ends at
/end or at the end of its stdin (whoever started it is gone).
"""

from __future__ import annotations

import collections
import hmac
import json
import os
import re
import secrets
import statistics
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any, Callable, Deque, Dict, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from agent import framed
from agent.bench import ArtifactError, cached_file, session_options
from agent.pipeline.figures import FrameOut
from agent.pipeline.run import run_pipeline
from agent.pipeline.sources import PipelineError, SourceError
from agent.spec import JobSpec, PipelineSpec, SpecError
from agent.stream_process import EXIT_BAD_INPUT

TOKEN_PATTERN = re.compile(r"\A[0-9a-f]{64}\Z")
HOST_PATTERN = re.compile(r"\A(127\.0\.0\.1|localhost)(:[0-9]{1,5})?\Z")
STAGE_WINDOW = 120  # the latest frames behind the p50s /stats reports
FIRST_FRAME_TIMEOUT_S = 30.0
CLIENT_WAIT_S = 1.0  # how often a waiting MJPEG client looks whether the process is ending


class LiveDetector:
    """The detector pipeline in a thread of its own, stopped and started again at will, with its latest frame and
    the stage times of its recent frames. `changed` is notified at every frame and when the pipeline ends; start
    and stop are serialised (each request is handled in a thread of its own)."""

    def __init__(self, session: Any, spec: PipelineSpec, cache_dir: str):
        self.session, self.spec, self.cache_dir = session, spec, cache_dir
        self.changed = threading.Condition()
        self.latest: Optional[FrameOut] = None
        self.frames = 0  # frames made since the process started, over every start
        self.error: Optional[str] = None
        self._recent: Deque[FrameOut] = collections.deque(maxlen=STAGE_WINDOW)
        self._thread: Optional[threading.Thread] = None
        self._halt = threading.Event()
        self._control = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Run the pipeline (no-op when it runs)."""
        with self._control:
            if self.running:
                return
            self._halt = threading.Event()
            self.error = None
            self._thread = threading.Thread(target=self._run, args=(self._halt,), name="pipeline", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the pipeline and wait for its threads to end."""
        with self._control:
            self._halt.set()
            if self._thread is not None:
                self._thread.join()

    def first_frame(self, timeout_s: float) -> None:
        """Wait for the pipeline's first frame: PipelineError when the source or a stage failed first, or no frame
        came in time; RuntimeError when the pipeline died of something else (its traceback is on stderr)."""
        with self.changed:
            self.changed.wait_for(lambda: self.frames > 0 or not self.running, timeout_s)
        if self.frames:
            return
        if self.error:
            raise PipelineError(self.error)
        if self.running:
            raise SourceError(f"the source gave no frame within {timeout_s:.0f} s")
        raise RuntimeError("the pipeline ended before its first frame")

    def frame_after(self, seen: int, timeout_s: float) -> Tuple[Optional[FrameOut], int]:
        """The latest frame once more than `seen` frames were made (None after timeout_s), and the count."""
        with self.changed:
            self.changed.wait_for(lambda: self.frames > seen, timeout_s)
            return (self.latest, self.frames) if self.frames > seen else (None, seen)

    def stats(self) -> Dict[str, Any]:
        """What /stats answers (see the module docstring)."""
        with self.changed:
            recent, latest, frames = list(self._recent), self.latest, self.frames
        running = self.running
        stages = {name: statistics.median(frame.stages_ms[name] for frame in recent if name in frame.stages_ms)
                  for name in (recent[-1].stages_ms if recent else {})}
        return {"running": running, "frames": frames, "fps": latest.fps if latest and running else 0.0,
                "stages": stages, "latency_ms": statistics.median(f.latency_ms for f in recent) if recent else None,
                "last": {"index": latest.index, "detections": latest.detections.tolist()} if latest else None,
                "error": self.error}

    def _run(self, stop: threading.Event) -> None:
        try:
            run_pipeline(self.session, self.spec, self.cache_dir, on_frame=self._publish, stop=stop)
        except PipelineError as exc:  # a source or stage that cannot go on: the page and the start-up check say why
            self.error = str(exc)
        finally:
            with self.changed:
                self.changed.notify_all()

    def _publish(self, frame: FrameOut) -> None:
        with self.changed:
            self.latest = frame
            self.frames += 1
            self._recent.append(frame)
            self.changed.notify_all()


class StreamServer(ThreadingHTTPServer):
    """The stream's HTTP server on 127.0.0.1 and a free port; `ended` is set by POST /end."""

    daemon_threads = True  # an MJPEG client never holds the process open

    def __init__(self, live: LiveDetector, token: str):
        super().__init__(("127.0.0.1", 0), StreamHandler)
        self.live, self.token = live, token
        self.ended = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class StreamHandler(BaseHTTPRequestHandler):
    """The endpoints of the module docstring, each behind the token and the Host check."""

    server: StreamServer
    server_version = "orch-stream"  # not the Python version
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._route({"/": self._page, "/stream.mjpg": self._mjpeg, "/frame.jpg": self._frame,
                     "/stats": self._stats})

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self._route({"/start": self._start, "/stop": self._stop, "/end": self._end})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        """Requests are not logged: their URLs carry the token."""

    # -- checks --------------------------------------------------------------------------------------------------

    def _route(self, routes: Dict[str, Callable[[], None]]) -> None:
        url = urlsplit(self.path)
        if not self._allowed(parse_qs(url.query).get("token", [""])[0]):
            self._send(HTTPStatus.FORBIDDEN, "text/plain", b"")
        elif url.path not in routes:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"")
        else:
            routes[url.path]()

    def _allowed(self, query_token: str) -> bool:
        token = self.headers.get("X-Orch-Token") or query_token
        return bool(HOST_PATTERN.match(self.headers.get("Host", ""))) and hmac.compare_digest(
            token.encode(), self.server.token.encode())

    def _headers(self, status: HTTPStatus, content_type: str, length: Optional[int] = None,
                 policy: str = "default-src 'none'; frame-ancestors 'none'",
                 extra: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Content-Security-Policy", policy)
        self.end_headers()

    def _send(self, status: HTTPStatus, content_type: str, body: bytes, **headers: Any) -> None:
        self._headers(status, content_type, len(body), **headers)
        self.wfile.write(body)

    # -- endpoints -----------------------------------------------------------------------------------------------

    def _page(self) -> None:
        nonce = secrets.token_urlsafe(16)
        policy = (f"default-src 'none'; img-src 'self'; connect-src 'self'; script-src 'nonce-{nonce}'; "
                  f"style-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        self._send(HTTPStatus.OK, "text/html; charset=utf-8", PAGE.replace("NONCE", nonce).encode(), policy=policy)

    def _mjpeg(self) -> None:
        self._headers(HTTPStatus.OK, "multipart/x-mixed-replace; boundary=frame")
        seen = 0
        live = self.server.live
        try:
            while not self.server.ended.is_set():
                frame, seen = live.frame_after(seen, CLIENT_WAIT_S)
                if frame is not None:
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     + str(len(frame.jpeg)).encode() + b"\r\n\r\n" + frame.jpeg + b"\r\n")
                    self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser left the page

    def _frame(self) -> None:
        frame = self.server.live.latest
        if frame is None:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"")
            return
        self._send(HTTPStatus.OK, "image/jpeg", frame.jpeg, extra={"X-Orch-Frame": str(frame.index)})

    def _stats(self) -> None:
        self._send(HTTPStatus.OK, "application/json", json.dumps(self.server.live.stats()).encode())

    def _start(self) -> None:
        self.server.live.start()
        self._stats()

    def _stop(self) -> None:
        self.server.live.stop()
        self._stats()

    def _end(self) -> None:
        self._send(HTTPStatus.OK, "application/json", b'{"ended": true}')
        self.server.ended.set()


def open_session(spec: JobSpec, cache_dir: str) -> Any:
    """The onnxruntime session of the spec's model (checked by its sha256), with the spec's threads."""
    import onnxruntime as ort

    path = cached_file(cache_dir, spec.artifact_sha256, ".onnx")
    return ort.InferenceSession(path, sess_options=session_options(ort, spec), providers=spec.providers)


def serve_stream(cache_dir: str, stdin: IO[str] = sys.stdin, stdout: IO[str] = sys.stdout) -> int:
    """Run the stream for one session (see the module docstring); returns the exit code."""
    try:
        hello = json.loads(stdin.readline() or "{}")
        token = str(hello.get("token", "")) if isinstance(hello, dict) else ""
        if not TOKEN_PATTERN.match(token):
            raise SpecError("stream expects a JSON line {token, spec} on stdin")
        spec = JobSpec.from_json(str(hello.get("spec", "")))
        if spec.pipeline is None:
            raise SpecError("the job spec has no pipeline to stream")
        live = LiveDetector(open_session(spec, cache_dir), spec.pipeline, cache_dir)
        live.start()
        live.first_frame(FIRST_FRAME_TIMEOUT_S)
    except (ValueError, ArtifactError, PipelineError) as exc:  # ValueError: the hello line, SpecError
        _tell(stdout, "error", message=str(exc))
        return EXIT_BAD_INPUT
    server = StreamServer(live, token)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    _tell(stdout, "listening", port=server.port, pid=os.getpid())
    threading.Thread(target=_end_at_eof, args=(stdin, server.ended), name="stdin-watch", daemon=True).start()
    server.ended.wait()
    server.shutdown()
    live.stop()
    server.server_close()
    return 0


def _tell(out: IO[str], event: str, **fields: Any) -> None:
    out.write(framed(json.dumps(dict(fields, event=event))) + "\n")
    out.flush()


def _end_at_eof(stdin: IO[str], ended: threading.Event) -> None:
    """Set `ended` when stdin reaches its end: whoever started this process is gone."""
    try:
        while stdin.readline():
            pass
    finally:
        ended.set()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>orch stream</title>
<style nonce="NONCE">
body { font-family: sans-serif; margin: 1em; background: #f4f4f4; }
main { display: flex; gap: 1.5em; align-items: flex-start; }
img { width: 60vw; max-width: 960px; min-height: 240px; background: #222; }
table { border-collapse: collapse; } td, th { padding: 0.2em 0.8em; text-align: right; border-bottom: 1px solid #ccc; }
th:first-child, td:first-child { text-align: left; }
button { font-size: 1em; margin-right: 0.4em; }
</style></head>
<body><main>
<img id="stream" alt="live detections">
<section>
<p><button id="start">Start</button><button id="stop">Stop</button><button id="end">End</button></p>
<p><span id="state">connecting</span>: <span id="fps">-</span> FPS, latency <span id="latency">-</span> ms,
<span id="frames">0</span> frames</p>
<table><thead><tr><th>stage</th><th>p50 ms</th></tr></thead><tbody id="stages"></tbody></table>
<p id="error"></p>
</section></main>
<script nonce="NONCE">
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const auth = {headers: {"X-Orch-Token": token}};
const byId = (id) => document.getElementById(id);
byId("stream").src = "/stream.mjpg?token=" + encodeURIComponent(token);

function cell(row, text) { row.insertCell().textContent = text; }

async function refresh() {
  const answer = await fetch("/stats", auth);
  if (!answer.ok) { byId("state").textContent = "refused (" + answer.status + ")"; return; }
  const stats = await answer.json();
  byId("state").textContent = stats.running ? "running" : "stopped";
  byId("fps").textContent = stats.fps.toFixed(1);
  byId("latency").textContent = stats.latency_ms === null ? "-" : stats.latency_ms.toFixed(1);
  byId("frames").textContent = stats.frames;
  byId("error").textContent = stats.error || "";
  const body = byId("stages");
  body.replaceChildren();
  for (const [stage, ms] of Object.entries(stats.stages)) {
    const row = body.insertRow();
    cell(row, stage);
    cell(row, ms.toFixed(2));
  }
}

async function post(path) {
  await fetch(path, {method: "POST", headers: auth.headers});
}

byId("start").addEventListener("click", () => post("/start").then(refresh));
byId("stop").addEventListener("click", () => post("/stop").then(refresh));
byId("end").addEventListener("click", async () => {
  clearInterval(timer);
  await post("/end");
  document.body.replaceChildren("The stream has ended; the board's stream process is gone.");
});
const timer = setInterval(() => refresh().catch(() => { byId("state").textContent = "disconnected"; }), 500);
refresh();
</script>
</body></html>
"""
