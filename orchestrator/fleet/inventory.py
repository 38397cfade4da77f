"""The board inventory: devices.yaml, validated, with errors that name file, line and key.

    devices:
      jetson-nano:
        host: 192.168.1.20          # a host name, an address, or a Host alias of ~/.ssh/config
        user: orch
        key: ~/.ssh/orch_ed25519
        python: /usr/bin/python3
        tags: [jetson, nightly]
        providers: [CUDAExecutionProvider, CPUExecutionProvider]
        power: {type: ina3221}
        thermal: {max_c: 60}

Every name and path in it ends up in a remote command or a remote file path, so
each is checked against a conservative pattern here (and quoted again where used).
The trusted host keys live next to the inventory, in `known_hosts`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.errors import InventoryError
from orchestrator.recipes.schema import MeterSpec, ThermalGate
from orchestrator.yamlfile import YamlDocument, read_yaml

NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
HOST = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}\Z")
USER = re.compile(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")
REMOTE_PATH = re.compile(r"\A[A-Za-z0-9_./+-]+\Z")
PROVIDER = re.compile(r"\A[A-Za-z0-9]+ExecutionProvider\Z")
RESERVED_NAMES = {"local"}
DEFAULT_CACHE_DIR = ".cache/orch-agent"


def check_name(name: str, what: str = "device name") -> str:
    """`name` if it is a usable device or tag name (letters, digits, `_.-`; no shell metacharacters)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"{what} {name!r} must be 1-63 letters, digits, '_', '.' or '-', starting with a "
                         "letter or digit")
    return name


def _remote_path(path: str, what: str) -> str:
    if path.startswith("~/"):
        path = path[2:]  # remote paths are relative to the login folder already
    if not path or not REMOTE_PATH.match(path) or path.startswith("-") or ".." in path.split("/"):
        raise ValueError(f"{what} {path!r} must be a plain path (letters, digits, '_./+-', no '..')")
    return path.rstrip("/") or "/"


class BoardSpec(BaseModel):
    """One board of the inventory.

    name: what --devices calls it; host: host name, address or ~/.ssh/config alias (which may set
    HostName, User, Port, IdentityFile, ProxyJump); port, user, key: override the SSH config;
    python: the board's interpreter (>= 3.8, with numpy and onnxruntime); cache_dir: where the agent
    and artifacts live on the board (relative to the login folder unless absolute); tags: for
    `--devices tag:NAME`; providers: preferred onnxruntime providers, in order (used when a recipe
    names none); power: the board's power meter spec, e.g. {type: ina3221} (a recipe cannot swap it for
    another: orchestrator/lab/settings.py); thermal: the board's thermal ceiling {max_c, wait_timeout_s}.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    host: str
    port: int | None = Field(None, ge=1, le=65535)
    user: str | None = None
    key: str | None = None
    python: str = "python3"
    cache_dir: str = DEFAULT_CACHE_DIR
    tags: tuple[str, ...] = ()
    providers: tuple[str, ...] | None = None
    power: MeterSpec | None = None
    thermal: ThermalGate | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        check_name(name)
        if name in RESERVED_NAMES or name.startswith("tag:"):
            raise ValueError(f"device name {name!r} is reserved")
        return name

    @field_validator("host")
    @classmethod
    def _host(cls, host: str) -> str:
        if not HOST.match(host):
            raise ValueError(f"host {host!r} must be a host name, an IPv4 address or an ssh config alias")
        return host

    @field_validator("user")
    @classmethod
    def _user(cls, user: str | None) -> str | None:
        if user is not None and not USER.match(user):
            raise ValueError(f"user {user!r} is not a plain login name")
        return user

    @field_validator("python")
    @classmethod
    def _python(cls, python: str) -> str:
        return _remote_path(python, "python")

    @field_validator("cache_dir")
    @classmethod
    def _cache_dir(cls, cache_dir: str) -> str:
        return _remote_path(cache_dir, "cache_dir")

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_name(tag, "tag") for tag in tags)

    @field_validator("providers")
    @classmethod
    def _providers(cls, providers: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for provider in providers or ():
            if not PROVIDER.match(provider):
                raise ValueError(f"provider {provider!r} is not an onnxruntime provider name (…ExecutionProvider)")
        return providers

    @property
    def target(self) -> str:
        """user@host:port as far as the inventory says (the SSH config may say more)."""
        return (f"{self.user}@" if self.user else "") + self.host + (f":{self.port}" if self.port else "")


def default_inventory_path() -> Path:
    """~/.config/orch/devices.yaml (under $XDG_CONFIG_HOME when set)."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config_home) / "orch" / "devices.yaml"


class Inventory:
    """The boards of one devices.yaml (a missing file is an empty inventory)."""

    def __init__(self, path: Path, boards: dict[str, BoardSpec] | None = None):
        self.path = Path(path)
        self.boards: dict[str, BoardSpec] = dict(boards or {})

    @property
    def known_hosts(self) -> Path:
        """orch's own trusted host keys: `known_hosts` next to the inventory."""
        return self.path.parent / "known_hosts"

    def get(self, name: str) -> BoardSpec:
        if name not in self.boards:
            known = ", ".join(sorted(self.boards)) or "none"
            raise InventoryError(str(self.path), f"no device {name!r} (devices here: {known})")
        return self.boards[name]

    def with_tag(self, tag: str) -> list[BoardSpec]:
        return [board for board in self.boards.values() if tag in board.tags]

    def add(self, board: BoardSpec, replace: bool = False) -> None:
        if board.name in self.boards and not replace:
            raise InventoryError(str(self.path), f"device {board.name!r} already exists (remove it first)")
        self.boards[board.name] = board

    def remove(self, name: str) -> BoardSpec:
        board = self.get(name)
        del self.boards[name]
        return board

    def save(self) -> None:
        """Write the inventory back (comments in the file are not kept)."""
        body = {"devices": {name: board.model_dump(mode="json", exclude_none=True, exclude_defaults=True,
                                                   exclude={"name"})
                            for name, board in sorted(self.boards.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(yaml.safe_dump(body, sort_keys=False, default_flow_style=None))
        os.replace(tmp, self.path)


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate devices.yaml; a missing file is an empty inventory."""
    path = Path(path)
    if not path.exists():
        return Inventory(path)
    document = read_yaml(path, InventoryError, "the inventory", entries={"devices": "device"})
    data = document.data
    if data is None:
        return Inventory(path)
    if not isinstance(data, dict) or set(data) - {"devices"} or not isinstance(data.get("devices") or {}, dict):
        raise InventoryError(document.path, "an inventory is a mapping `devices: {NAME: {host: ..., ...}}`", line=1)
    boards: dict[str, BoardSpec] = {}
    for name, fields in (data.get("devices") or {}).items():
        if not isinstance(fields, dict):
            raise document.error_at(["devices", str(name)], "a device is a mapping (host:, user:, ...)", at_key=True)
        boards[str(name)] = board_from_fields(document, str(name), fields)
    return Inventory(path, boards)


def board_from_fields(source: YamlDocument | str, name: str, fields: dict[str, Any]) -> BoardSpec:
    """A validated BoardSpec; an InventoryError names the key (and its line, when `source` is the parsed file)."""
    document = source if isinstance(source, YamlDocument) else YamlDocument(source, None, None, "", InventoryError)
    try:
        return BoardSpec.model_validate({**fields, "name": name})
    except ValidationError as exc:
        if tuple(exc.errors()[0]["loc"]) == ("name",):  # the device's own name: its key in the file
            message = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise document.error_at(["devices", name], message, at_key=True) from None
        raise document.validation_error(exc, prefix=("devices", name)) from None
