"""The project's exceptions. Only cli.py turns them into messages and exit codes.

UserError and its children mean bad input (exit code 2); OrchError means a
failure orch could not recover from (exit code 1).
"""

from __future__ import annotations


class OrchError(Exception):
    """A failure orch cannot recover from; the message says what and where."""


class UserError(OrchError):
    """Bad input from the user: a file, a flag or a value that cannot be used as given."""


class RecipeError(UserError):
    """A recipe that cannot be read or does not validate; the message names file, line and key."""

    def __init__(self, path: str, message: str, line: int | None = None, column: int | None = None,
                 key: str | None = None):
        self.path, self.line, self.column, self.key = path, line, column, key
        where = path if line is None else f"{path}:{line}" + (f":{column}" if column else "")
        super().__init__(f"{where} {key}: {message}" if key else f"{where}: {message}")


class DeviceError(UserError):
    """An unknown or unusable device name."""


class DatasetError(UserError):
    """A data set that is missing or does not have the expected on-disk layout."""


class WeightsError(UserError):
    """A weights file that is missing, truncated, corrupt or does not fit the model."""


class ModelSourceError(UserError):
    """An ONNX model that does not load, or a step that the model's source cannot take."""


class BuildError(OrchError):
    """A build step that failed on valid input."""


class DatabaseError(UserError):
    """A results database that cannot be opened, is not orch's, or rejected a query."""


class Interrupted(OrchError):
    """The user stopped a long operation (Ctrl-C); the message says what was kept."""
