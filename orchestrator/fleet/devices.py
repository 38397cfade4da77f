"""Device names a user can pass to --devices, and what each one is."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.errors import DeviceError
from orchestrator.fleet.inventory import BoardSpec, Inventory


@dataclass(frozen=True)
class DeviceSpec:
    """A device a sweep can run on.

    name: what the user calls it (`local` is this workstation)
    kind: which transport reaches it (`local`: a child process on this machine; `ssh`: a board)
    board: the inventory entry of an `ssh` device
    """

    name: str
    kind: str
    board: BoardSpec | None = field(default=None, compare=False, repr=False)


LOCAL = DeviceSpec(name="local", kind="local")


def known_devices(inventory: Inventory | None = None) -> dict[str, DeviceSpec]:
    devices = {LOCAL.name: LOCAL}
    for board in (inventory.boards.values() if inventory else ()):
        devices[board.name] = DeviceSpec(board.name, "ssh", board)
    return devices


def resolve_devices(names: str, inventory: Inventory | None = None) -> list[DeviceSpec]:
    """The devices a --devices value names (names, `tag:NAME`, `local`), in order, without repeats."""
    known = known_devices(inventory)
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    if not wanted:
        raise DeviceError(f"--devices is empty; known devices: {', '.join(known)}")
    resolved: list[DeviceSpec] = []
    for name in wanted:
        if name.startswith("tag:"):
            tag = name.removeprefix("tag:")
            tagged = [known[board.name] for board in (inventory.with_tag(tag) if inventory else [])]
            if not tagged:
                raise DeviceError(f"no device has tag {tag!r}"
                                  + (f" in {inventory.path}" if inventory else ""))
            matches = tagged
        elif name in known:
            matches = [known[name]]
        else:
            raise DeviceError(f"unknown device {name!r}; known devices: {', '.join(known)}")
        resolved.extend(device for device in matches if device not in resolved)
    return resolved
