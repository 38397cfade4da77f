"""The workstation end of a live stream (`orch stream`): a listener on this machine's 127.0.0.1 that carries each
browser connection to the stream process on the device, and the device's answer to starting that process.

Each accepted connection gets a new channel to the stream's port on the device's own 127.0.0.1 (a board: a
direct-tcpip channel of its SSH connection; `local`: a plain socket), and one thread copies bytes both ways until
both directions have ended. Nothing listens beyond the loopback: a browser on this machine is the only client,
and the stream itself asks for its session token (agent/pipeline/stream.py).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

from orchestrator.errors import BoardFault, OrchError, UserError

LOOPBACK = "127.0.0.1"
CHUNK_BYTES = 1 << 16
POLL_S = 0.25  # how soon the listener and each connection notice close()


class Channel(Protocol):
    """A connected byte stream: a socket, or a paramiko channel."""

    def recv(self, size: int) -> bytes: ...
    def sendall(self, data: bytes) -> Any: ...
    def shutdown(self, how: int) -> Any: ...
    def fileno(self) -> int: ...
    def close(self) -> Any: ...


def stream_answer(device: str, answer: dict[str, Any]) -> dict[str, int]:
    """{port, pid} of a started stream, from the device's answer (agent/stream_process.py); a spec or source the
    stream refused is bad input (UserError), any other failure to start is the device's (BoardFault)."""
    if "error" not in answer:
        return {"port": int(answer["port"]), "pid": int(answer["pid"])}
    if answer.get("bad_input"):
        raise UserError(f"{device}: {answer['error']}")
    raise BoardFault(device, str(answer["error"]))


class Forwarder:
    """Listens on 127.0.0.1:`port` (0: a free one) and carries every connection through `open_channel()`."""

    def __init__(self, open_channel: Callable[[], Channel], port: int = 0):
        self._open_channel = open_channel
        self._listener = socket.create_server((LOOPBACK, port))
        self._listener.settimeout(POLL_S)
        self._closed = threading.Event()
        self._carried: dict[threading.Thread, socket.socket] = {}  # each carrier thread and its browser connection
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, name="forward-accept", daemon=True)
        self._acceptor.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Stop listening and end every carried connection."""
        self._closed.set()
        self._acceptor.join()
        self._listener.close()
        with self._lock:
            carried = dict(self._carried)
        for carrier, client in carried.items():
            # A browser that stopped reading would leave its carrier blocked in a send: this ends the send.
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            carrier.join()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            carrier = threading.Thread(target=self._carry, args=(client,), name="forward", daemon=True)
            with self._lock:
                self._carried[carrier] = client
            carrier.start()

    def _carry(self, client: socket.socket) -> None:
        try:
            with client:
                try:
                    channel = self._open_channel()
                except (OrchError, OSError):
                    return  # the device is gone: the browser sees its connection closed, `orch stream` says why
                try:
                    copy_both_ways(client, channel, self._closed)
                except OSError:
                    pass  # either end dropped the connection: nothing more to carry
                finally:
                    channel.close()
        finally:
            with self._lock:
                self._carried.pop(threading.current_thread(), None)


def copy_both_ways(one: Channel, other: Channel, closed: threading.Event) -> None:
    """Copy bytes between two connected ends until each has sent its end of file (then the other is told by a
    write shutdown) or `closed` is set."""
    peer: dict[Channel, Channel] = {one: other, other: one}
    with selectors.DefaultSelector() as selector:
        for end in peer:
            selector.register(end, selectors.EVENT_READ)
        reading = set(peer)
        while reading and not closed.is_set():
            for key, _ in selector.select(POLL_S):
                source: Channel = key.fileobj  # type: ignore[assignment]
                data = source.recv(CHUNK_BYTES)
                if data:
                    peer[source].sendall(data)
                    continue
                selector.unregister(source)
                reading.discard(source)
                peer[source].shutdown(socket.SHUT_WR)
