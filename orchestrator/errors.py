"""The project's exceptions and exit codes. Only the CLI's single exit point (cli/__init__.py) turns them into
a message and an exit code, by the table below.

    exit code  meaning                                          raised as
    0          ok                                               -
    1          a failure found or met: a confirmed regression,  OrchError (and FailureFound)
               a board down, a variant that did not build
    2          bad input: a file, flag, key or value            UserError and its children
    3          a sweep measured every job it could, but some    JobsInvalid
               results are `invalid` (their reasons say why)
    4          a sweep's jobs ended in `error` (no              JobsFailed
               measurement; each result says why)
    130        interrupted (Ctrl-C); what was measured is kept  Interrupted

A sweep with several of these exits with the first that applies in the order 1, 4, 3.

The board agent's own errors (agent/spec.py SpecError, agent/bench.py ArtifactError) never leave the board as
exceptions: they become error results (agent/result.py).
"""

from __future__ import annotations

from enum import IntEnum


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none (for one-line errors)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class ExitCode(IntEnum):
    """What `orch` exits with (the table in the module docstring and docs/architecture.md)."""

    OK = 0
    FAILURE = 1
    BAD_INPUT = 2
    JOBS_INVALID = 3
    JOBS_FAILED = 4
    INTERRUPTED = 130


class OrchError(Exception):
    """A failure orch cannot recover from; the message says what and where."""

    exit_code = ExitCode.FAILURE


class UserError(OrchError):
    """Bad input from the user: a file, a flag or a value that cannot be used as given."""

    exit_code = ExitCode.BAD_INPUT


class FailureFound(OrchError):
    """A command that ran to its end and found a failure (a confirmed regression, a board down); already reported."""


class JobsFailed(FailureFound):
    """A sweep ran, and some of its jobs ended in `error`: nothing was measured for them (already reported)."""

    exit_code = ExitCode.JOBS_FAILED


class JobsInvalid(FailureFound):
    """A sweep ran, and some of its results are `invalid`: measured, but their reasons say they cannot be trusted
    (already reported)."""

    exit_code = ExitCode.JOBS_INVALID


class Interrupted(OrchError):
    """The user stopped a long operation (Ctrl-C); the message says what was kept."""

    exit_code = ExitCode.INTERRUPTED


# -- bad input, located in a file --------------------------------------------------------------------------------

class LocatedError(UserError):
    """Bad input in a file; the message reads `file:line:col key: message` with whatever of those is known."""

    def __init__(self, path: str, message: str, line: int | None = None, column: int | None = None,
                 key: str | None = None):
        self.path, self.message, self.line, self.column, self.key = path, message, line, column, key
        where = path if line is None else f"{path}:{line}" + (f":{column}" if column else "")
        super().__init__(f"{where} {key}: {message}" if key else f"{where}: {message}")


class RecipeError(LocatedError):
    """A recipe that cannot be read or does not validate; the message names file, line and key."""


class InventoryError(LocatedError):
    """A devices.yaml that cannot be read or does not validate; the message names file, line and key."""


class SettingsError(LocatedError):
    """A settings file (regress settings) that cannot be read or does not validate."""


class DashboardError(LocatedError):
    """A dashboard file (dashboards/*.yaml) that cannot be read or does not validate."""


# -- bad input, elsewhere -----------------------------------------------------------------------------------------

class DeviceError(UserError):
    """An unknown or unusable device name."""


class DatasetError(UserError):
    """A data set that is missing or does not have the expected on-disk layout."""


class WeightsError(UserError):
    """A weights file that is missing, truncated, corrupt or does not fit the model."""


class ModelSourceError(UserError):
    """An ONNX model that does not load, or a step that the model's source cannot take."""


class ExecutorError(UserError):
    """A build executor (--build-executor, ORCH_BUILD_EXECUTOR) that is not one of the accepted forms, or that
    needs a package that is not installed."""


class DatabaseError(UserError):
    """A results database that cannot be opened, is not orch's, or rejected a query."""


# -- failures -----------------------------------------------------------------------------------------------------

class BuildError(OrchError):
    """A build step that failed on valid input."""


class ClusterUnreachable(OrchError):
    """A build cluster (Ray) that did not answer at its address, or refused this workstation."""


class IllegalTransition(OrchError):
    """A board lifecycle move that the state machine does not allow (a bug, never bad input)."""


# -- boards: each names its device; BoardUnreachable is the only transient one (retried with backoff) ------------

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
