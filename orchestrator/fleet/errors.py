"""Exceptions of the board fleet (children of orchestrator/errors.py's; cli.py turns them into exit codes).

Each names the device. `BoardUnreachable` is the only transient one: the
scheduler retries it with backoff; every other board fault is final for the sweep.
"""

from __future__ import annotations

from orchestrator.errors import DeviceError, OrchError, UserError


class InventoryError(UserError):
    """A devices.yaml that cannot be read or does not validate; the message names file, line and key."""

    def __init__(self, path: str, message: str, line: int | None = None, key: str | None = None):
        self.path, self.line, self.key = path, line, key
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where} {key}: {message}" if key else f"{where}: {message}")


class HostKeyError(DeviceError):
    """A board whose SSH host key is unknown or differs from the trusted one: refused, never retried."""

    def __init__(self, device: str, message: str):
        self.device, self.detail = device, message
        super().__init__(f"{device}: {message}")


class BoardFault(OrchError):
    """A board that cannot be used as it is (login refused, agent will not start, lock held): not retried."""

    def __init__(self, device: str, message: str, stderr: str = ""):
        self.device, self.stderr, self.detail = device, stderr, message
        super().__init__(f"{device}: {message}")


class BoardBusy(BoardFault):
    """A board locked by another orchestrator while this one was told not to wait."""


class BoardUnreachable(OrchError):
    """A board that dropped the connection or did not answer: transient, retried with backoff."""

    def __init__(self, device: str, message: str):
        self.device, self.detail = device, message
        super().__init__(f"{device}: {message}")


class IllegalTransition(OrchError):
    """A board lifecycle move that the state machine does not allow (a bug, never bad input)."""
