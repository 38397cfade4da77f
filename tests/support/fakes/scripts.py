"""Board tools as small executable scripts: tegrastats, vcgencmd, nvpmodel, a watts printer."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def write_script(path: Path, body: str) -> Path:
    """An executable Python script at `path` run by this interpreter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{body}")
    os.chmod(path, 0o755)
    return path


def tegrastats(path: Path, lines: list[str]) -> Path:
    """A fake `tegrastats [--interval ms]`: prints `lines` in turn, one per interval (default 1000 ms).

    Lines that start with a JetPack 5+ date get the current date and time, as the real tool prints.
    """
    return write_script(path, f"""\
import re, sys, time
LINES = {lines!r}
args = sys.argv[1:]
interval_ms = int(args[args.index("--interval") + 1]) if "--interval" in args else 1000
DATE = re.compile(r"^\\d\\d-\\d\\d-\\d{{4}} \\d\\d:\\d\\d:\\d\\d ")
count = 0
while True:
    line = LINES[count % len(LINES)]
    if DATE.match(line):
        line = time.strftime("%m-%d-%Y %H:%M:%S ") + line[20:]
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()
    count += 1
    time.sleep(interval_ms / 1000.0)
""")


def vcgencmd(path: Path, answers: dict[str, str]) -> Path:
    """A fake `vcgencmd <command>` printing answers[command]; an unknown command fails as the real one does."""
    return write_script(path, f"""\
import sys
ANSWERS = {answers!r}
command = sys.argv[1] if len(sys.argv) > 1 else ""
if command not in ANSWERS:
    print('error=2 error_msg="Command not registered"')
    sys.exit(255)
sys.stdout.write(ANSWERS[command])
""")


def nvpmodel(path: Path, name: str, mode_id: int) -> Path:
    """A fake `nvpmodel -q` printing `NV Power Mode: <name>` and the id on the next line."""
    return write_script(path, f"""\
import sys
if "-q" not in sys.argv[1:]:
    sys.exit(1)
print("NV Power Mode: {name}")
print({mode_id})
""")


def watts_printer(path: Path, watts: list[str], interval_s: float) -> Path:
    """A user program for the `command` meter: prints each entry of `watts` (any text) in turn."""
    return write_script(path, f"""\
import sys, time
VALUES = {watts!r}
count = 0
while True:
    sys.stdout.write(VALUES[count % len(VALUES)] + "\\n")
    sys.stdout.flush()
    count += 1
    time.sleep({interval_s!r})
""")
