"""A real local Ray cluster on 127.0.0.1 for the build executor's tests and benchmark: a head started as this user,
optionally with worker nodes started as another Unix user (created if missing), each node with its own temporary
folder. Every process a node starts stays in the session its `ray start` was given, and stopping the cluster kills
exactly those sessions' processes (never a `ray stop`, which would stop every Ray on the machine).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
REPO = Path(__file__).resolve().parents[2]
WORKER_USER = "orch-ray-worker"


_HANDED_OUT: set[int] = set()  # ports this process has given a Ray component: never given twice


def free_port() -> int:
    """A free port on 127.0.0.1 that no earlier call returned: the OS may hand a port just released out again,
    and two Ray components on one port make `ray start` fail."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def ensure_user(name: str = WORKER_USER) -> pwd.struct_passwd:
    """The Unix user worker nodes run as (created without a home or a login shell when missing; needs root)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
        return pwd.getpwnam(name)


@contextmanager
def interpreter_reachable() -> Iterator[None]:
    """Let other users traverse (not list) the folders above this Python (a pyenv under /root), for the duration."""
    changed: list[tuple[Path, int]] = []
    for folder in [*Path(os.path.realpath(sys.executable)).parents, *Path(sys.prefix).resolve().parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH and folder not in [path for path, _ in changed]:
            changed.append((folder, mode))
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    try:
        yield
    finally:
        for folder, mode in changed:
            folder.chmod(stat.S_IMODE(mode))


def _session_pids(session: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == session and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


@dataclass
class RayCluster:
    """A running cluster: its head's address, its nodes' sessions (one per `ray start`)."""

    root: Path
    port: int = field(default_factory=free_port)
    sessions: list[int] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, args: list[str], temp_dir: Path, user: str | None = None) -> None:
        settings = {"PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0", "HOME": str(temp_dir.parent)}
        env = dict(os.environ, **settings)
        ports = ["--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                 "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]
        command = [RAY, "start", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}", "--disable-usage-stats",
                   *ports, *args]
        if user is not None:
            command = ["runuser", "-u", user, "--", "env", *(f"{k}={v}" for k, v in settings.items()), *command]
        started = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        self.sessions.append(started.pid)
        output, _ = started.communicate(timeout=120)
        if started.returncode != 0:
            raise RuntimeError(f"ray start failed ({started.returncode}):\n{output[-3000:]}")

    def start_head(self, cpus: int) -> None:
        temp = self.root / "head" / "ray"
        temp.mkdir(parents=True)
        self._start(["--head", f"--port={self.port}", f"--num-cpus={cpus}", "--include-dashboard=false",
                     f"--dashboard-port={free_port()}"], temp)

    def add_worker(self, cpus: int, user: str) -> None:
        account = pwd.getpwnam(user)
        home = self.root / f"worker-{len(self.sessions)}"
        (home / "ray").mkdir(parents=True)
        for path in (home, home / "ray"):
            os.chown(path, account.pw_uid, account.pw_gid)
            path.chmod(0o700)
        self._start([f"--address={self.address}", f"--num-cpus={cpus}"], home / "ray", user)

    def stop(self) -> None:
        """Kill every process the nodes started (their sessions), then wait until none is left."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for session in self.sessions:
                for pid in _session_pids(session):
                    with suppress(ProcessLookupError):
                        os.kill(pid, sig)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and any(_session_pids(s) for s in self.sessions):
                time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def ray_cluster(head_cpus: int, workers: tuple[tuple[int, str], ...] = ()) -> Iterator[RayCluster]:
    """A cluster whose head has `head_cpus` CPUs, plus one worker node per (cpus, user); stopped on exit. Its
    folders live in a fresh short folder under /tmp (socket paths have a length limit) that other users may
    traverse to reach their own node's folder."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="orch-ray-", dir="/tmp"))
    root.chmod(0o711)
    cluster = RayCluster(root)
    try:
        cluster.start_head(head_cpus)
        for cpus, user in workers:
            cluster.add_worker(cpus, user)
        yield cluster
    finally:
        cluster.stop()
