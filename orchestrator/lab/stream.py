"""A live detector stream (`orch stream`): a detector variant run without end on one device, served there as an
MJPEG page on the device's own 127.0.0.1 and opened in this machine's browser through a forwarder on this
machine's 127.0.0.1 (orchestrator/fleet/forward.py).

The device is opened as a sweep opens it: host key checked, agent deployed, the board lock held for as long as
the stream lives (another orchestrator's sweep waits rather than measuring beside it). The model and the source
reach it as artifacts do. The page asks for a fresh session token, which reaches the device inside the SSH
connection, never on a command line; the URL handed to the user carries it.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine

from orchestrator.artifacts import ArtifactStore
from orchestrator.errors import DeviceError, Interrupted, OrchError, UserError
from orchestrator.fleet.devices import DeviceSpec
from orchestrator.fleet.forward import Channel, Forwarder
from orchestrator.fleet.local import LocalTransport
from orchestrator.fleet.ssh import SshSettings
from orchestrator.lab.pipelines import DEFAULT_CONFIDENCE, find_detector, pipeline_job_spec, ship_source, source_files

POLL_S = 0.5  # how often wait() asks the device whether the stream still runs


class StreamTransport(Protocol):
    """What a stream needs of a device's transport (fleet/local.py, fleet/transport.py)."""

    def connect(self) -> None: ...
    def start(self) -> None: ...
    def ensure_files(self, names: list[str]) -> int: ...
    def stream_start(self, spec_json: str, token: str) -> dict[str, int]: ...
    def stream_stop(self) -> bool: ...
    def stream_running(self) -> bool: ...
    def open_stream_channel(self, port: int) -> Channel: ...
    def close(self) -> None: ...


@dataclass
class StreamSettings:
    """What to stream and how.

    variant: the detector variant's name or a prefix of its sha256 (results database); recipe: its recipe, when
        the name is not unique
    source: an image folder, a video file (looped), camera:N or /dev/videoN on the device
    port: the port of the forwarder on this machine's 127.0.0.1 (0: a free one)
    threads: onnxruntime intra-op threads; confidence: the score a box needs to be drawn
    """

    variant: str
    source: str = "camera:0"
    recipe: str | None = None
    port: int = 0
    threads: int = 1
    confidence: float = DEFAULT_CONFIDENCE


@dataclass
class LiveStream:
    """A stream running on `device`: `url` opens its page here; `pid` is its process on the device."""

    device: str
    variant: str
    url: str
    pid: int
    transport: StreamTransport
    forwarder: Forwarder

    def wait(self) -> None:
        """Return when the stream process has ended (its page's End button); BoardUnreachable when the device's
        connection drops first, Interrupted at Ctrl-C."""
        try:
            while self.transport.stream_running():
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            raise Interrupted(f"{self.device}: the stream of {self.variant} was ended by Ctrl-C") from None

    def close(self) -> None:
        """Stop the stream, the forwarder and the device's session (the board lock goes with it)."""
        self.forwarder.close()
        with contextlib.suppress(OrchError):  # a dropped connection: closing it below ends the stream too
            self.transport.stream_stop()
        self.transport.close()


def open_stream(device: DeviceSpec, settings: StreamSettings, engine: Engine, store: ArtifactStore,
                ssh: SshSettings | None) -> LiveStream:
    """Start the stream of `settings` on `device` and the forwarder to it; close() the result when done."""
    detector = find_detector(engine, settings.variant, settings.recipe)
    if not store.path(detector.sha256, ".onnx").is_file():
        raise UserError(f"variant {detector.name}: its model {store.path(detector.sha256, '.onnx')} is not in the "
                        "artifact store (was it built with another --artifacts?)")
    source = ship_source(store, settings.source)
    spec = pipeline_job_spec(detector, source, loop=True, threads=settings.threads,
                             confidence=settings.confidence)
    transport = stream_transport(device, store, ssh, f"{detector.name} streamed")
    token = secrets.token_hex(32)
    try:
        transport.connect()
        transport.start()
        transport.ensure_files([f"{detector.sha256}.onnx", *source_files(source)])
        started = transport.stream_start(spec.to_json(), token)
        forwarder = listen(settings.port, lambda: transport.open_stream_channel(started["port"]))
    except KeyboardInterrupt:
        transport.close()
        raise Interrupted(f"{device.name}: the stream of {detector.name} was not started (Ctrl-C)") from None
    except BaseException:
        transport.close()
        raise
    host, port = forwarder.address
    return LiveStream(device.name, detector.name, f"http://{host}:{port}/?token={token}", started["pid"], transport,
                      forwarder)


def stream_transport(device: DeviceSpec, store: ArtifactStore, ssh: SshSettings | None,
                     purpose: str) -> StreamTransport:
    """The device's transport, unopened; a board does not wait for another orchestrator's lock (BoardBusy)."""
    if device.kind == "local":
        return LocalTransport(store.root)
    from orchestrator.fleet.transport import SshTransport

    if device.board is None or ssh is None:
        raise DeviceError(f"{device.name}: not an inventory board, or no SSH settings")
    holder = f"{getpass.getuser()}@{socket.gethostname()} (orch pid {os.getpid()}, {purpose})"
    return SshTransport(device.board, ssh, store.root, holder=holder, wait_for_lock=False)


def listen(port: int, open_channel: Callable[[], Channel]) -> Forwarder:
    """The forwarder on 127.0.0.1:port; a port that cannot be had is bad input."""
    try:
        return Forwarder(open_channel, port)
    except OSError as exc:
        raise UserError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})") from None
