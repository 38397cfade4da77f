"""`orch dashboard --serve`: a folder of dashboard pages served over HTTP on 127.0.0.1 only.

The pages are static files and need no server; this is for a browser that will not open file:// pages, or a
colleague reaching them through an SSH tunnel. Never another interface: the results are the lab's data.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from orchestrator.errors import UserError

HOST = "127.0.0.1"
DEFAULT_PORT = 8765


class QuietHandler(SimpleHTTPRequestHandler):
    """Static files from one folder, without a log line per request."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class names it)
        pass


def serve_folder(folder: Path, port: int = DEFAULT_PORT, ready: Callable[[str], None] = print) -> None:
    """Serve `folder` on 127.0.0.1:port (0: a free port) until Ctrl-C, telling `ready` the index page's URL."""
    try:
        server = ThreadingHTTPServer((HOST, port), partial(QuietHandler, directory=str(folder)))
    except OSError as exc:
        raise UserError(f"--port {port}: cannot listen on {HOST}:{port}: {exc.strerror or exc}") from None
    ready(f"http://{HOST}:{server.server_port}/index.html")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
