"""Deploying the agent to a board: the `agent` package and the pure-Python `rpyc` it serves with.

Layout on the board, under the board's cache_dir (relative paths are under the login folder):
  agent-<version>/agent/..., agent-<version>/rpyc/...   one folder per agent version, written once
  agent-<version>/MANIFEST.json                          the bundle's files and their sha256
  artifacts/<sha256>.onnx|.npz                           the content-addressed artifact cache
  board.lock                                             flock'd by the agent serving a sweep

The version is the sha256 of every bundled file, so any change to the agent
makes a new folder and an unchanged agent is never sent twice. A folder is
uploaded under a temporary name and renamed into place: a board never runs a
half-copied agent. Everything goes by SFTP: no remote shell command is built.
rpyc imports plumbum only in its command-line tools, which are not shipped.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import paramiko
import rpyc

import agent
from orchestrator.errors import BoardFault

BUNDLED_PACKAGES = (agent, rpyc)
# rpyc's command-line servers (rpyc/cli/rpyc_classic.py, ...) need plumbum and include the classic
# server the agent must never run: only the package marker that `import rpyc` needs is shipped.
SKIPPED = {"rpyc/cli/rpyc_classic.py", "rpyc/cli/rpyc_registry.py"}


@dataclass(frozen=True)
class AgentBundle:
    """The files that make up one agent version: (path inside the version folder, bytes)."""

    version: str
    files: tuple[tuple[str, bytes], ...]

    @property
    def size_bytes(self) -> int:
        return sum(len(data) for _, data in self.files)

    def manifest(self) -> bytes:
        return json.dumps({"version": self.version,
                           "files": {path: hashlib.sha256(data).hexdigest() for path, data in self.files}},
                          indent=1, sort_keys=True).encode()


@lru_cache(maxsize=1)
def agent_bundle() -> AgentBundle:
    """The agent package and rpyc as installed here, with the version that names them."""
    files: list[tuple[str, bytes]] = []
    for package in BUNDLED_PACKAGES:
        root = Path(str(package.__file__)).parent
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(root.parent).as_posix()
            if "__pycache__" not in relative and relative not in SKIPPED:
                files.append((relative, path.read_bytes()))
    digest = hashlib.sha256()
    for relative_path, data in files:
        digest.update(relative_path.encode() + b"\0" + hashlib.sha256(data).digest())
    return AgentBundle(version=f"{agent.__version__}-{digest.hexdigest()[:12]}", files=tuple(files))


@dataclass(frozen=True)
class RemoteLayout:
    """Paths on one board (see the module docstring)."""

    root: str

    def agent_dir(self, version: str) -> str:
        return f"{self.root}/agent-{version}"

    @property
    def artifacts(self) -> str:
        return f"{self.root}/artifacts"

    @property
    def lock_file(self) -> str:
        return f"{self.root}/board.lock"


def exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.stat(path)
        return True
    except FileNotFoundError:
        return False


def makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    """mkdir -p over SFTP."""
    prefix = "/" if path.startswith("/") else ""
    for part in [p for p in path.split("/") if p]:
        prefix = f"{prefix}{part}" if prefix in ("", "/") else f"{prefix}/{part}"
        if not exists(sftp, prefix):
            try:
                sftp.mkdir(prefix)
            except OSError:
                if not exists(sftp, prefix):  # another orchestrator made it meanwhile: fine
                    raise


def remove_tree(sftp: paramiko.SFTPClient, path: str) -> None:
    for entry in sftp.listdir_attr(path):
        child = f"{path}/{entry.filename}"
        if stat.S_ISDIR(entry.st_mode or 0):
            remove_tree(sftp, child)
        else:
            sftp.remove(child)
    sftp.rmdir(path)


def check_private(sftp: paramiko.SFTPClient, path: str, device: str) -> None:
    """Refuse a folder orch would run code from that is a symlink, not the login's own, or writable by others:
    whoever else can write there could plant an agent version that orch would then run."""
    try:
        info = sftp.lstat(path)
    except FileNotFoundError:
        return
    owner = sftp.stat(".").st_uid  # the login folder's owner: the login itself
    fix = f"chown it to the login user and `chmod go-w {path}` on the board, or point `cache_dir:` elsewhere"
    if stat.S_ISLNK(info.st_mode or 0) or not stat.S_ISDIR(info.st_mode or 0):
        raise BoardFault(device, f"{path} is not a plain folder (a symlink or a file); {fix}")
    if info.st_uid != owner:
        raise BoardFault(device, f"{path} belongs to uid {info.st_uid}, not to the login (uid {owner}); {fix}")
    if (info.st_mode or 0) & 0o022:
        raise BoardFault(device, f"{path} is writable by group or others (mode {(info.st_mode or 0) & 0o777:o}); "
                                 f"{fix}")


def deploy(sftp: paramiko.SFTPClient, layout: RemoteLayout, bundle: AgentBundle | None = None,
           device: str = "board") -> int:
    """Make sure the board holds this agent version in a folder only its login can write; returns the bytes sent
    (0 when it was there). A folder of this version whose manifest differs is refused, never run."""
    bundle = bundle or agent_bundle()
    final = layout.agent_dir(bundle.version)
    check_private(sftp, layout.root, device)
    if exists(sftp, f"{final}/MANIFEST.json"):
        check_private(sftp, final, device)
        with sftp.open(f"{final}/MANIFEST.json", "rb") as manifest:
            if manifest.read(1 << 20) != bundle.manifest():
                raise BoardFault(device, f"{final}/MANIFEST.json is not this orch's agent {bundle.version}; remove "
                                         f"{final} on the board (orch deploys it again)")
        return 0
    makedirs(sftp, layout.root)
    if stat.S_IMODE(sftp.stat(layout.root).st_mode or 0) & 0o022:
        sftp.chmod(layout.root, 0o700)
    staging = f"{layout.root}/.agent-{bundle.version}.{secrets.token_hex(4)}.part"
    sent = 0
    try:
        sftp.mkdir(staging)
        folders = {"/".join(path.split("/")[:depth]) for path, _ in bundle.files
                   for depth in range(1, path.count("/") + 1)}
        for folder in sorted(folders, key=lambda f: f.count("/")):
            sftp.mkdir(f"{staging}/{folder}")  # parents first: the staging folder is new and empty
        for relative_path, data in bundle.files:
            sftp.putfo(io.BytesIO(data), f"{staging}/{relative_path}", file_size=len(data), confirm=True)
            sent += len(data)
        sftp.putfo(io.BytesIO(bundle.manifest()), f"{staging}/MANIFEST.json")
        try:
            sftp.posix_rename(staging, final)
        except OSError:
            if not exists(sftp, f"{final}/MANIFEST.json"):  # not a concurrent deploy of the same version
                raise
            remove_tree(sftp, staging)
    except BaseException:
        if exists(sftp, staging):
            remove_tree(sftp, staging)
        raise
    return sent
