"""Real OpenSSH servers on 127.0.0.x standing in for boards (tests and benchmarks).

Each `SshdBoard` is a real `sshd -D` with a throwaway host key, authorizing one
throwaway client key, as root (PermitRootLogin prohibit-password). A board's
"disk" is its own agent cache folder under the test's tmp dir. Stopping a board
kills its sshd and everything it started (sessions, the agent, a running job),
as pulling a board's power would; starting it again brings back the same host key.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


def sshd_available() -> bool:
    return os.path.exists(SSHD) and os.path.exists(SSH_KEYGEN) and os.geteuid() == 0


def keygen(path: Path, comment: str) -> Path:
    """A new ed25519 key pair at path (private) and path.pub."""
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def known_hosts_line(address: str, port: int, host_key_pub: Path) -> str:
    """The known_hosts line of a host key, as ssh writes it for a non-standard port."""
    key_type, key_b64 = host_key_pub.read_text().split()[:2]
    name = address if port == 22 else f"[{address}]:{port}"
    return f"{name} {key_type} {key_b64}\n"


def descendants(pid: int) -> list[int]:
    """Every live process below pid (children first found by /proc ppid links)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class SshdBoard:
    """One simulated board: a real sshd on `address:port` and the agent cache folder it uses."""

    name: str
    address: str
    folder: Path
    client_key: Path
    port: int = 0
    process: subprocess.Popen | None = None
    banner: str | None = None  # printed on stdout by the login shell before every command, as some .bashrc do
    host_key: Path = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.address)
        self.host_key = keygen(self.folder / "ssh_host_ed25519_key", f"host-{self.name}")
        (self.folder / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        self.config = self.folder / "sshd_config"
        self.config.write_text("\n".join([
            f"ListenAddress {self.address}", f"Port {self.port}", f"HostKey {self.host_key}",
            f"PidFile {self.folder / 'sshd.pid'}", f"AuthorizedKeysFile {self.folder / 'authorized_keys'}",
            "PermitRootLogin prohibit-password", "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "AllowTcpForwarding local",
            "X11Forwarding no", "PermitTTY no", "UseDNS no", "MaxStartups 50", "MaxSessions 20",
            "Subsystem sftp internal-sftp", "LogLevel ERROR", *self._banner_setting(), ""]))

    def _banner_setting(self) -> list[str]:
        """A login that prints a banner on stdout before every command it runs (as a chatty ~/.bashrc does),
        made with ForceCommand so no real account is touched; SFTP still gets a clean channel."""
        if self.banner is None:
            return []
        wrapper = self.folder / "chatty_shell.sh"
        wrapper.write_text("#!/bin/sh\n"
                           'case "$SSH_ORIGINAL_COMMAND" in internal-sftp|*sftp-server*) '
                           f"exec {SFTP_SERVER} ;; esac\n"
                           f"echo {shlex.quote(self.banner)}\n"
                           'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n')
        wrapper.chmod(0o755)
        return [f"ForceCommand {wrapper}"]

    @property
    def cache_dir(self) -> Path:
        """Where orch deploys the agent and caches artifacts on this board."""
        return self.folder / "orch-agent"

    @property
    def known_hosts_line(self) -> str:
        return known_hosts_line(self.address, self.port, Path(f"{self.host_key}.pub"))

    def inventory_entry(self, **extra: object) -> dict[str, object]:
        """This board as a devices.yaml entry."""
        import sys

        entry: dict[str, object] = {"host": self.address, "port": self.port, "user": "root",
                                    "key": str(self.client_key), "python": sys.executable,
                                    "cache_dir": str(self.cache_dir), "tags": ["sim"]}
        entry.update(extra)
        return entry

    def start(self) -> SshdBoard:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        log = open(self.folder / "sshd.log", "ab")  # noqa: SIM115 (the child keeps it open)
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log,
                                        start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd {self.name} exited: {(self.folder / 'sshd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection((self.address, self.port), timeout=0.5) as probe:
                    if probe.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd {self.name} did not start listening on {self.address}:{self.port}")

    def stop(self) -> None:
        """Kill sshd and every process it started (sessions, the agent, its jobs), like a power cut."""
        if self.process is None:
            return
        victims = [self.process.pid, *descendants(self.process.pid)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None


def start_boards(root: Path, addresses: list[str], names: list[str] | None = None,
                 banner: str | None = None) -> list[SshdBoard]:
    """Started sshd boards, one per address, sharing one client key (root/client_key)."""
    root.mkdir(parents=True, exist_ok=True)
    client_key = root / "client_key"
    if not client_key.exists():
        keygen(client_key, "orch-test-client")
    names = names or [f"board{index + 1}" for index in range(len(addresses))]
    return [SshdBoard(name, address, root / name, client_key, banner=banner).start()
            for name, address in zip(names, addresses, strict=True)]


class Fleet:
    """Simulated boards plus the files orch reads about them: devices.yaml, known_hosts, an empty ssh_config."""

    def __init__(self, root: Path, addresses: list[str], banner: str | None = None):
        self.root = root
        self.boards = start_boards(root, addresses, banner=banner)
        self.inventory = root / "devices.yaml"
        self.known_hosts = root / "known_hosts"
        self.ssh_config = root / "ssh_config"
        self.ssh_config.write_text("")  # the tests never read the user's ~/.ssh/config
        self.write_inventory()
        self.trust_all()

    def board(self, name: str) -> SshdBoard:
        return next(board for board in self.boards if board.name == name)

    def write_inventory(self, **entries: dict[str, object]) -> Path:
        """devices.yaml with every board (per-board overrides by name); extra names add raw entries."""
        import yaml

        devices: dict[str, object] = {board.name: board.inventory_entry(**entries.pop(board.name, {}))
                                      for board in self.boards}
        devices.update(entries)
        self.inventory.write_text(yaml.safe_dump({"devices": devices}))
        return self.inventory

    def trust_all(self) -> None:
        self.known_hosts.write_text("".join(board.known_hosts_line for board in self.boards))

    def settings(self):  # noqa: ANN201 (orchestrator imports stay inside the helpers)
        from orchestrator.fleet.ssh import SshSettings

        return SshSettings(known_hosts=self.known_hosts, ssh_config=self.ssh_config, connect_timeout_s=5.0)

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """Environment for the `orch` script: this inventory, and a HOME without the user's SSH files."""
        home = self.root / "home"
        home.mkdir(exist_ok=True)
        return dict(base, ORCH_INVENTORY=str(self.inventory), HOME=str(home))

    def stop(self) -> None:
        for board in self.boards:
            board.stop()
