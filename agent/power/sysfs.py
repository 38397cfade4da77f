"""Small readers shared by the sysfs meters and by telemetry: rooted paths, values, commands."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import List, Optional

from agent.power.base import MeterError

# Where a board keeps the tools orch runs (tegrastats in /usr/bin, nvpmodel in
# /usr/sbin, vcgencmd in /opt/vc/bin on older Raspberry Pi OS). The agent may
# run with a minimal PATH (a service), so these are tried after PATH.
COMMAND_DIRS = ("usr/bin", "usr/sbin", "bin", "sbin", "opt/vc/bin")


def rooted(root: str, path: str) -> str:
    """`path` (absolute on the board) under `root`."""
    return os.path.join(root, path.lstrip("/"))


def read_text(path: str) -> Optional[str]:
    """A small file's text without trailing NULs and whitespace; None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace").strip("\x00\n\r\t ")
    except OSError:
        return None


def read_int(path: str) -> Optional[int]:
    """A file holding one integer; None when unreadable or not an integer."""
    text = read_text(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def find_command(root: str, name: str) -> Optional[str]:
    """The path of the board tool `name`: on PATH or in the usual folders under `root`.

    With a fake root (tests) only the folders under it count, never the host's PATH.
    """
    if os.path.abspath(root) == "/":
        found = shutil.which(name)
        if found:
            return found
    for folder in COMMAND_DIRS:
        candidate = os.path.join(root, folder, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def run_command(argv: List[str], timeout_s: float = 5.0) -> Optional[str]:
    """stdout of a short command, or None when it is missing, fails or hangs (telemetry never stops a run)."""
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              timeout=timeout_s, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", "replace")


class SysfsValue:
    """One sysfs attribute kept open and re-read with pread at offset 0 (cheap at 100 Hz)."""

    def __init__(self, path: str, denied_message: Optional[str] = None) -> None:
        self.path = path
        # What to tell the user when this file is not readable by them (RAPL: the remedy).
        self.denied_message = denied_message or f"cannot open {path}: permission denied"
        self._fd: Optional[int] = None

    def open(self) -> int:
        """Open the file (once) and return its descriptor; MeterError names it when that fails."""
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except PermissionError:
                raise MeterError(self.denied_message) from None
            except OSError as exc:
                raise MeterError(f"cannot open {self.path}: {exc.strerror}") from exc
        return self._fd

    def read_int(self) -> int:
        """The file's integer value now."""
        fd = self.open()
        try:
            raw = os.pread(fd, 64, 0)
        except PermissionError:
            raise MeterError(self.denied_message) from None
        except OSError as exc:
            raise MeterError(f"cannot read {self.path}: {exc.strerror}") from exc
        try:
            return int(raw.decode("ascii", "replace").strip("\x00\n "))
        except ValueError:
            raise MeterError(f"{self.path} does not hold an integer: {raw!r}") from None

    def close(self) -> None:
        """Close the file if open."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
