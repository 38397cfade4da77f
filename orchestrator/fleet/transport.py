"""The `ssh` transport: one board's agent, reached over one SSH connection.

connect(): open the connection (host key checked); start(): deploy the agent (once per version), start
`python -m agent serve` in an SSH session (it takes the board lock, waiting or
failing as told), then speak rpyc to it through a direct-tcpip channel of the
same connection: an SSH local port forward that opens no listening socket on
this machine. The channel's first line is a per-session random token the agent
requires; the token goes to the agent on its stdin, never on a command line.

Only JSON text, booleans and file bytes (SFTP) cross. Closing the session ends
the agent, which kills any running job or stream and releases the lock.

A live stream (`orch stream`) is the agent's child serving HTTP on the board's
127.0.0.1; `open_stream_channel` reaches it by another direct-tcpip channel of
the same connection (orchestrator/fleet/forward.py carries a browser's
connections through such channels).
"""

from __future__ import annotations

import collections
import contextlib
import json
import secrets
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
import rpyc
from fabric import Connection
from rpyc.core.stream import SocketStream

from agent import unframed
from agent.runner import job_deadline_s
from agent.service import EXIT_BUSY, PROTOCOL_CONFIG
from agent.spec import JobSpec
from orchestrator.errors import BoardBusy, BoardFault, BoardUnreachable
from orchestrator.fleet.deploy import RemoteLayout, agent_bundle, deploy
from orchestrator.fleet.forward import stream_answer
from orchestrator.fleet.inventory import BoardSpec
from orchestrator.fleet.ssh import SshSettings, open_connection, require_open, ssh_faults

ARTIFACT_SUFFIXES = (".onnx", ".npz", ".video")
AGENT_START_TIMEOUT_S = 60.0
RESULT_MARGIN_S = 60.0  # on top of the job's own deadline, which the agent enforces


def artifact_name(name: str) -> tuple[str, str]:
    """(sha256, suffix) of a store file name `<sha256>.onnx|.npz|.video`; anything else is refused."""
    sha256, dot, suffix = name.partition(".")
    if len(sha256) != 64 or set(sha256) - set("0123456789abcdef") or f".{suffix}" not in ARTIFACT_SUFFIXES:
        raise ValueError(f"{name!r} is not an artifact name (<sha256> and one of {', '.join(ARTIFACT_SUFFIXES)})")
    return sha256, f"{dot}{suffix}"


class SshTransport:
    """One board's agent over SSH (see the module docstring).

    holder: who this orchestrator is, shown to another orchestrator that finds the board locked
    wait_for_lock: wait for a board another orchestrator holds (else fail with BoardBusy)
    on_note: told what the board is doing while it opens (e.g. waiting for the lock)
    """

    kind = "ssh"

    def __init__(self, board: BoardSpec, settings: SshSettings, store_root: Path, holder: str = "orch",
                 wait_for_lock: bool = True, on_note: Callable[[str], None] | None = None):
        self.board, self.settings, self.store_root = board, settings, Path(store_root)
        self.holder, self.wait_for_lock, self.on_note = holder, wait_for_lock, on_note
        self.layout = RemoteLayout(board.cache_dir)
        self.bytes_sent = 0         # artifact bytes sent by SFTP, over this transport's life
        self.deploy_bytes_sent = 0  # agent bytes sent
        self.last_job_wall_s: float | None = None  # the agent's wall time of the last job process
        self._conn: Connection | None = None
        self._session: paramiko.Channel | None = None
        self._rpc: rpyc.Connection | None = None
        self._present: set[str] = set()
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._aborted = threading.Event()
        self._token = ""

    # -- lifecycle -------------------------------------------------------------

    def connect(self) -> None:
        """Open the SSH connection (host key checked, logged in)."""
        self._conn = open_connection(self.board, self.settings)

    def start(self) -> None:
        """Deploy the agent (once per version) and start it; it takes the board lock first."""
        name = self.board.name
        if self._conn is None:
            raise BoardUnreachable(name, "not connected")
        with ssh_faults(name):
            self.deploy_bytes_sent += deploy(self._conn.sftp(), self.layout, agent_bundle(), name)
            port = self._start_agent()
            channel = require_open(self._conn, name).open_channel(
                "direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0), timeout=self.settings.connect_timeout_s)
            channel.sendall((self._token + "\n").encode())
            self._rpc = rpyc.connect_stream(SocketStream(channel), rpyc.VoidService, config=dict(PROTOCOL_CONFIG))
            self._present.clear()

    def close(self) -> None:
        """End the agent session (the board lock goes with it) and the connection."""
        for closer in (self._rpc, self._session, self._conn):
            if closer is not None:
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):  # already gone: that is fine
                    closer.close()
        self._rpc = self._session = self._conn = None

    def abort(self) -> None:
        """From another thread: drop the connection, so a running call ends at once (its job is killed)."""
        self._aborted.set()
        conn = self._conn
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    # -- the three agent calls ---------------------------------------------------

    def info(self) -> dict[str, Any]:
        with ssh_faults(self.board.name):
            return dict(json.loads(self._root().info()))

    def ensure_files(self, names: list[str]) -> int:
        """Make sure the board's cache holds these store files; returns the bytes sent for them."""
        sent = 0
        for name in names:
            if name in self._present:
                continue
            sha256, suffix = artifact_name(name)
            local = self.store_root / name
            if not local.is_file():  # the store's problem, not the board's: never retried as a board fault
                raise FileNotFoundError(f"{local}: not in the artifact store")
            with ssh_faults(self.board.name):
                present = self._root().has_artifact(sha256, suffix)
            if not present:
                sent += self._send(local, f"{self.layout.artifacts}/{name}")
            self._present.add(name)
        self.bytes_sent += sent
        return sent

    def run(self, spec_json: str, progress: Callable[[dict[str, Any]], None] | None = None) -> str:
        """Run one job on the board; returns its result JSON text."""
        deadline_s = job_deadline_s(JobSpec.from_json(spec_json)) + RESULT_MARGIN_S
        self.last_job_wall_s = None

        def on_progress(event_json: str) -> None:
            event = json.loads(event_json)
            if event.get("event") == "job_finished":
                self.last_job_wall_s = float(event["wall_s"])
            if progress is not None:
                progress(event)

        with ssh_faults(self.board.name):
            pending = rpyc.async_(self._root().run)(spec_json, on_progress)
            pending.set_expiry(deadline_s)
            try:
                return str(pending.value)
            except rpyc.AsyncResultTimeout:
                raise BoardUnreachable(self.board.name, f"no result within {deadline_s:.0f} s") from None

    # -- the live stream -----------------------------------------------------------

    def stream_start(self, spec_json: str, token: str) -> dict[str, int]:
        """Start the board's stream of this pipeline job behind `token`: {port, pid} on the board's 127.0.0.1."""
        with ssh_faults(self.board.name):
            answer = json.loads(self._root().stream_start(spec_json, token))
        return stream_answer(self.board.name, answer)

    def stream_stop(self) -> bool:
        """Kill the board's stream; whether one was running."""
        with ssh_faults(self.board.name):
            return bool(self._root().stream_stop())

    def stream_running(self) -> bool:
        """Whether the board's stream process is alive (its page's End button ends it)."""
        with ssh_faults(self.board.name):
            return bool(self._root().stream_running())

    def open_stream_channel(self, port: int) -> paramiko.Channel:
        """A new connection to the board's 127.0.0.1:port, through the SSH connection (nothing listens here)."""
        if self._conn is None:
            raise BoardUnreachable(self.board.name, "not connected")
        with ssh_faults(self.board.name):
            return require_open(self._conn, self.board.name).open_channel(
                "direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0), timeout=self.settings.connect_timeout_s)

    # -- internals ---------------------------------------------------------------

    def _root(self) -> Any:
        if self._rpc is None or self._rpc.closed:
            raise BoardUnreachable(self.board.name, "the agent connection is closed")
        return self._rpc.root

    def _send(self, local: Path, remote: str) -> int:
        assert self._conn is not None
        sftp = self._conn.sftp()
        staging = f"{remote}.{secrets.token_hex(4)}.part"
        with ssh_faults(self.board.name):
            sftp.put(str(local), staging, confirm=True)
            sftp.posix_rename(staging, remote)
        return local.stat().st_size

    def _start_agent(self) -> int:
        """Start `agent serve` in a session of its own; returns the loopback port it listens on."""
        assert self._conn is not None
        version_dir = self.layout.agent_dir(agent_bundle().version)
        # Paths relative to the agent folder: the command changes into it, so that the bundled
        # `agent` and `rpyc` are the ones imported.
        serve = [self.board.python, "-m", "agent", "serve", "--cache", "../artifacts",
                 "--lock-file", "../board.lock", "--lock", "wait" if self.wait_for_lock else "fail"]
        command = f"cd {shlex.quote(version_dir)} && exec {shlex.join(serve)}"
        session = require_open(self._conn, self.board.name).open_session(timeout=self.settings.connect_timeout_s)
        self._session = session
        session.exec_command(command)
        self._token = secrets.token_hex(32)
        session.sendall((json.dumps({"token": self._token, "holder": self.holder}) + "\n").encode())
        threading.Thread(target=self._drain_stderr, args=(session,), daemon=True).start()
        buffer = b""
        started = time.monotonic()
        waiting = False
        session.settimeout(0.5)
        while True:
            try:
                chunk = session.recv(4096)
            except TimeoutError:
                if self._aborted.is_set():
                    raise BoardUnreachable(self.board.name, "aborted") from None
                if not waiting and time.monotonic() - started > AGENT_START_TIMEOUT_S:
                    raise BoardUnreachable(self.board.name, "the agent did not start within "
                                                            f"{AGENT_START_TIMEOUT_S:.0f} s") from None
                continue
            if not chunk:
                raise self._agent_exit()
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                bodies = unframed(line.decode(errors="replace"))
                if not bodies:
                    continue  # the login shell's own output (a banner): not the agent's
                event = json.loads(bodies[0])
                if event.get("event") == "listening":
                    session.settimeout(None)
                    return int(event["port"])
                if event.get("event") == "waiting":
                    waiting = True
                    if self.on_note:
                        self.on_note(f"waiting for the board lock, held by {describe_holder(event)}")
                elif event.get("event") == "busy":
                    raise BoardBusy(self.board.name, f"in use by {describe_holder(event)}; "
                                                     "not waiting for it (--lock fail)")

    def _agent_exit(self) -> Exception:
        """Why the agent session ended before the agent listened."""
        session = self._session
        assert session is not None
        if self._aborted.is_set() or not (self._conn and self._conn.transport and self._conn.transport.is_active()):
            return BoardUnreachable(self.board.name, "the connection dropped while the agent started")
        code = session.recv_exit_status()
        time.sleep(0.05)  # let the stderr drain catch the last lines
        stderr = " | ".join(list(self._stderr)[-3:]) or "no output"
        if code == EXIT_BUSY:
            return BoardBusy(self.board.name, "in use by another orchestrator")
        return BoardFault(self.board.name, f"the agent exited with code {code} as it started "
                                           f"(python {self.board.python}): {stderr}", stderr=stderr)

    def _drain_stderr(self, session: paramiko.Channel) -> None:
        """Keep the last lines the agent wrote to stderr (for error messages), so its pipe never fills."""
        stream = session.makefile_stderr("r")
        try:
            for line in stream:
                self._stderr.append(str(line).rstrip())
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the session ended: nothing more to keep


def describe_holder(event: dict[str, Any]) -> str:
    """`root@ws1 (pid 4242) since 12:01:07`, from a lock holder record."""
    since = event.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(float(since))) if since else ""
    return f"{event.get('holder', 'another orchestrator')} (agent pid {event.get('pid', '?')}){when}"
