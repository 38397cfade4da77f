"""SSH to boards with fabric, host keys checked: an unknown or changed key is refused, never added.

fabric 3 accepts any host key by default (AutoAddPolicy, no known_hosts
loaded). Every connection made here, and every ProxyJump hop in front of it,
loads orch's known_hosts (next to the inventory) plus the user's
~/.ssh/known_hosts, and refuses what they do not vouch for. Accepting a new key
is `orch devices trust NAME`: `fetch_host_key` then `trust_host_key`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from fabric import Config, Connection

from orchestrator.errors import BoardFault, BoardUnreachable, HostKeyError
from orchestrator.fleet.inventory import BoardSpec, Inventory


@dataclass(frozen=True)
class SshSettings:
    """How orch reaches boards.

    known_hosts: orch's own trusted host keys (only `orch devices trust` writes it)
    extra_known_hosts: more known_hosts files to trust, read only (by default ~/.ssh/known_hosts)
    ssh_config: the OpenSSH client config to read; None: ~/.ssh/config and /etc/ssh/ssh_config
    connect_timeout_s: TCP connect and SSH banner timeout
    """

    known_hosts: Path
    extra_known_hosts: tuple[Path, ...] = ()
    ssh_config: Path | None = None
    connect_timeout_s: float = 10.0

    @property
    def known_hosts_files(self) -> list[Path]:
        return [path for path in (self.known_hosts, *self.extra_known_hosts) if path.exists()]


def default_settings(inventory: Inventory) -> SshSettings:
    """orch's known_hosts next to the inventory, plus ~/.ssh/known_hosts; the user's SSH config."""
    return SshSettings(known_hosts=inventory.known_hosts,
                       extra_known_hosts=(Path(os.path.expanduser("~/.ssh/known_hosts")),))


def fingerprint(key: paramiko.PKey) -> str:
    """The key's SHA256 fingerprint as OpenSSH prints it (SHA256:base64, unpadded)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class RefuseUnknownHostKey(paramiko.RejectPolicy):
    """Refuse a host key that no known_hosts file lists, saying how to trust it on purpose."""

    def __init__(self, device: str, settings: SshSettings):
        self.device, self.settings = device, settings

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyError(self.device, f"host key of {hostname} ({key.get_name()} {fingerprint(key)}) is not in "
                                        f"{self.settings.known_hosts} or ~/.ssh/known_hosts; refusing to connect. "
                                        f"Check it and accept it with `orch devices trust {self.device}`")


def connection(board: BoardSpec, settings: SshSettings) -> Connection:
    """A fabric Connection to the board (not yet open) that checks host keys on every hop."""
    config = Config(runtime_ssh_path=str(settings.ssh_config)) if settings.ssh_config else Config()
    connect_kwargs: dict[str, object] = {"banner_timeout": settings.connect_timeout_s,
                                         "auth_timeout": settings.connect_timeout_s}
    if board.key:
        connect_kwargs["key_filename"] = [os.path.expanduser(board.key)]
    conn = Connection(board.host, user=board.user, port=board.port, config=config, connect_kwargs=connect_kwargs,
                      connect_timeout=int(settings.connect_timeout_s))
    hop: object = conn
    while isinstance(hop, Connection):  # the board, then each ProxyJump gateway in front of it
        hop.client.set_missing_host_key_policy(RefuseUnknownHostKey(board.name, settings))
        for path in settings.known_hosts_files:
            hop.client.load_system_host_keys(str(path))
        hop = hop.gateway
    return conn


@contextmanager
def ssh_faults(device: str) -> Iterator[None]:
    """Turn paramiko/socket/rpyc failures into the fleet's errors: which are final, which are retried."""
    try:
        yield
    except paramiko.BadHostKeyException as exc:
        name = exc.hostname
        raise HostKeyError(device, f"host key of {name} has CHANGED: trusted {fingerprint(exc.expected_key)}, "
                                   f"offered {exc.key.get_name()} {fingerprint(exc.key)}; refusing to connect. If "
                                   f"the board was reinstalled, remove the old key (ssh-keygen -R '{name}' -f FILE) "
                                   f"and run `orch devices trust {device}`") from None
    except paramiko.AuthenticationException as exc:
        raise BoardFault(device, f"SSH login refused ({exc}); is the key in the board's authorized_keys?") from None
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise BoardUnreachable(device, describe(exc)) from exc


def describe(exc: BaseException) -> str:
    """A short account of a connection failure."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        where = ", ".join(f"{address[0]}:{address[1]}" for address in exc.errors)
        causes = {getattr(cause, "strerror", None) or str(cause) for cause in exc.errors.values()}
        return f"cannot connect to {where} ({'; '.join(sorted(causes))})"
    text = str(exc).strip() or "connection closed"
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def open_connection(board: BoardSpec, settings: SshSettings) -> Connection:
    """An open, host-key-checked connection to the board."""
    conn = connection(board, settings)
    try:
        with ssh_faults(board.name):
            conn.open()
    except BaseException:
        conn.close()
        raise
    return conn


@dataclass
class HostKeyOffer:
    """The host key a board offers and what orch's known_hosts say about it.

    status: `new` (no trusted key of this type), `trusted` (matches), `changed` (differs from the trusted one)
    """

    device: str
    name: str
    key: paramiko.PKey
    status: str
    trusted_fingerprints: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


def fetch_host_key(board: BoardSpec, settings: SshSettings) -> HostKeyOffer:
    """The host key the board presents (no login is attempted), compared with the trusted keys."""
    conn = connection(board, settings)
    with ssh_faults(board.name):
        sock = conn.open_gateway() if conn.gateway else socket.create_connection(
            (conn.host, int(conn.port)), timeout=settings.connect_timeout_s)
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=settings.connect_timeout_s)
            key = transport.get_remote_server_key()
        finally:
            transport.close()
            conn.close()
    name = known_hosts_name(conn.host, int(conn.port))
    trusted = paramiko.HostKeys()
    for path in settings.known_hosts_files:
        trusted.load(str(path))
    known = trusted.lookup(name) or {}
    same_type = known.get(key.get_name())
    status = "new" if same_type is None else ("trusted" if same_type == key else "changed")
    return HostKeyOffer(board.name, name, key, status, [fingerprint(k) for k in known.values()])


def trust_host_key(offer: HostKeyOffer, settings: SshSettings) -> bool:
    """Add the offered key to orch's known_hosts; False when it was trusted already. A changed key is refused."""
    if offer.status == "changed":
        raise HostKeyError(offer.device, f"{offer.name} offers {offer.fingerprint} but "
                                         f"{', '.join(offer.trusted_fingerprints)} is trusted; refusing to replace it. "
                                         f"If the board was reinstalled, remove the old key first "
                                         f"(ssh-keygen -R '{offer.name}' -f {settings.known_hosts})")
    if offer.status == "trusted":
        return False
    settings.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    line = f"{offer.name} {offer.key.get_name()} {offer.key.get_base64()}\n"
    descriptor = os.open(settings.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a") as known_hosts:
        known_hosts.write(line)
    return True


def require_open(conn: Connection, device: str) -> paramiko.Transport:
    """The live paramiko transport of an open connection."""
    transport = conn.transport
    if transport is None or not transport.is_active():
        raise BoardUnreachable(device, "the SSH connection is closed")
    return transport

