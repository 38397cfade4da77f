"""Device names a user can pass to --devices, and what each one is."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.errors import DeviceError


@dataclass(frozen=True)
class DeviceSpec:
    """A device a sweep can run on.

    name: what the user calls it (`local` is this workstation)
    kind: which transport reaches it (`local`: a child process on this machine)
    """

    name: str
    kind: str


LOCAL = DeviceSpec(name="local", kind="local")


def known_devices() -> dict[str, DeviceSpec]:
    return {LOCAL.name: LOCAL}


def resolve_devices(names: str) -> list[DeviceSpec]:
    """The devices named in a comma-separated --devices value, in order, without repeats."""
    known = known_devices()
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    if not wanted:
        raise DeviceError(f"--devices is empty; known devices: {', '.join(known)}")
    resolved: list[DeviceSpec] = []
    for name in wanted:
        if name not in known:
            raise DeviceError(f"unknown device {name!r}; known devices: {', '.join(known)}")
        if known[name] not in resolved:
            resolved.append(known[name])
    return resolved
