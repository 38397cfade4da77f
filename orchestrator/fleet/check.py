"""`orch devices check`: can each board run jobs, and if not, the exact command that fixes it.

A check connects (host key checked), deploys the agent if needed, runs
`python -m agent info` on the board, and compares what it finds with what orch
needs (Python >= 3.8, numpy and onnxruntime no older than runtimes.MIN_NUMPY and
MIN_ONNXRUNTIME) and with the inventory's wishes (providers, power meter).
Boards are checked in parallel; one result per board.
"""

from __future__ import annotations

import json
import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agent import unframed
from orchestrator.errors import BoardFault, BoardUnreachable, HostKeyError
from orchestrator.fleet.deploy import RemoteLayout, agent_bundle, deploy
from orchestrator.fleet.inventory import BoardSpec
from orchestrator.fleet.ssh import SshSettings, open_connection, ssh_faults
from orchestrator.runtimes import MIN_NUMPY, MIN_ONNXRUNTIME, Runtime, version_tuple

MIN_PYTHON = (3, 8)
MIN_FREE_DISK_MB = 500.0
INFO_TIMEOUT_S = 120


@dataclass
class Problem:
    """Something that keeps a board from running jobs as asked, and the command that fixes it."""

    what: str
    fix: str


@dataclass
class BoardCheck:
    """What a check found on one board: the agent's `info` (empty when it could not run) and any problems."""

    device: str
    info: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def ssh_command(board: BoardSpec, remote: str) -> str:
    """The ssh command line that runs `remote` on the board, as a user would type it."""
    words = ["ssh"] + (["-p", str(board.port)] if board.port else []) + (["-i", board.key] if board.key else [])
    return shlex.join([*words, (f"{board.user}@" if board.user else "") + board.host, remote])


def check_boards(boards: list[BoardSpec], settings: SshSettings) -> list[BoardCheck]:
    """Check every board (in parallel); one BoardCheck per board, in order."""
    if not boards:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(boards))) as pool:
        return list(pool.map(lambda board: check_board(board, settings), boards))


def check_board(board: BoardSpec, settings: SshSettings) -> BoardCheck:
    """Connect, deploy, run `agent info` and judge what it says."""
    check = BoardCheck(board.name)
    try:
        conn = open_connection(board, settings)
    except HostKeyError as exc:
        check.problems.append(Problem(str(exc), f"orch devices trust {board.name}"))
        return check
    except BoardFault as exc:
        key = f"{board.key}.pub" if board.key else "~/.ssh/id_ed25519.pub"
        login = (f"{board.user}@" if board.user else "") + board.host
        check.problems.append(Problem(str(exc), shlex.join(["ssh-copy-id", "-i", key]
                                                           + (["-p", str(board.port)] if board.port else [])
                                                           + [login])))
        return check
    except BoardUnreachable as exc:
        check.problems.append(Problem(f"{exc}", f"check that the board is on and that "
                                                f"`{ssh_command(board, 'true')}` works"))
        return check
    layout = RemoteLayout(board.cache_dir)
    try:
        with ssh_faults(board.name):
            deploy(conn.sftp(), layout, agent_bundle(), board.name)
            folder = layout.agent_dir(agent_bundle().version)
            info_command = [board.python, "-m", "agent", "info", "--cache", "../artifacts"]
            done = conn.run(f"cd {shlex.quote(folder)} && exec {shlex.join(info_command)}", hide=True, warn=True,
                            timeout=INFO_TIMEOUT_S, in_stream=False)
    except (BoardUnreachable, BoardFault) as exc:
        check.problems.append(Problem(str(exc), f"check that `{ssh_command(board, 'true')}` works"))
        return check
    finally:
        conn.close()
    if done.exited != 0:
        stderr = " | ".join(done.stderr.strip().splitlines()[-3:]) or "no output"
        missing = re.search(r"No module named '(\w+)", stderr)
        fix = (ssh_command(board, f"{board.python} -m pip install --user {missing.group(1)}") if missing else
               f"install Python >= 3.8 on the board (`{ssh_command(board, 'sudo apt-get install -y python3')}`) "
               f"or set `python:` for {board.name} in the inventory")
        check.problems.append(Problem(f"`{board.python} -m agent info` failed (exit {done.exited}): {stderr}", fix))
        return check
    bodies = unframed(done.stdout)  # whatever the login shell printed of its own is not the agent's
    if not bodies:
        check.problems.append(Problem(f"`{board.python} -m agent info` printed no answer: "
                                      f"{' | '.join(done.stdout.strip().splitlines()[-3:]) or 'nothing'}",
                                      f"check that `{ssh_command(board, board.python + ' -V')}` works"))
        return check
    check.info = json.loads(bodies[-1])
    check.problems.extend(judge(board, check.info))
    return check


def _old_software(board: BoardSpec, info: dict[str, Any]) -> list[Problem]:
    """An onnxruntime or numpy older than orch supports, and what still works there."""
    problems = []
    runtime = Runtime.from_info(info)
    version = str(info.get("onnxruntime") or "")
    if version and version_tuple(version) < version_tuple(MIN_ONNXRUNTIME):
        works = (f"what works there: variants it loads ({runtime.describe()}; build them for it with "
                 "`target_runtime: auto`); the rest are refused before sending") if runtime else \
            "its agent cannot say what it loads: every variant is sent, and may fail to load"
        problems.append(Problem(f"onnxruntime {version} is older than the oldest orch supports "
                                f"({MIN_ONNXRUNTIME}); {works}",
                                ssh_command(board, f"{board.python} -m pip install --user "
                                                   f"'onnxruntime>={MIN_ONNXRUNTIME}'")))
    numpy = str(info.get("numpy") or "")
    if numpy and version_tuple(numpy) < version_tuple(MIN_NUMPY):
        problems.append(Problem(f"numpy {numpy} is older than the oldest orch supports ({MIN_NUMPY})",
                                ssh_command(board, f"{board.python} -m pip install --user 'numpy>={MIN_NUMPY}'")))
    return problems


def judge(board: BoardSpec, info: dict[str, Any]) -> list[Problem]:
    """What in a board's `agent info` keeps it from running jobs as the inventory asks."""
    problems: list[Problem] = []
    python = str(info.get("python", "0"))
    if tuple(int(part) for part in python.split(".")[:2] if part.isdigit()) < MIN_PYTHON:
        problems.append(Problem(f"Python {python} is too old (orch's agent needs >= 3.8)",
                                f"install a newer Python and set `python:` for {board.name} in the inventory"))
    missing = [package for package in ("numpy", "onnxruntime") if not info.get(package)]
    if missing:
        pip = f"{board.python} -m pip install --user {' '.join(missing)}"
        problems.append(Problem(f"missing {', '.join(missing)} ({info.get('import_error', 'not importable')})",
                                ssh_command(board, pip) + ("  (Jetson: use NVIDIA's onnxruntime-gpu wheel for "
                                                           "its JetPack)" if "onnxruntime" in missing else "")))
    available = list(info.get("providers_available") or [])
    unavailable = [p for p in board.providers or () if p not in available]
    if unavailable and "onnxruntime" not in missing:
        problems.append(Problem(f"providers {', '.join(unavailable)} are not in this onnxruntime "
                                f"(it has {', '.join(available) or 'none'})",
                                f"install an onnxruntime build with them, or edit `providers:` of {board.name}"))
    problems.extend(_old_software(board, info))
    free_mb = info.get("disk_free_mb")
    if isinstance(free_mb, int | float) and free_mb < MIN_FREE_DISK_MB:
        problems.append(Problem(f"only {free_mb:.0f} MB free under {info.get('cache_dir')}",
                                ssh_command(board, f"du -sh {shlex.quote(board.cache_dir)}/artifacts")
                                + "  (then delete old artifacts or point `cache_dir:` at a bigger disk)"))
    wanted = (board.power or {}).get("type")
    if wanted and wanted != "auto" and wanted not in (info.get("power_meters_known") or []):
        known = ", ".join(info.get("power_meters_known") or [])
        problems.append(Problem(f"power meter type {wanted!r} is unknown to the agent",
                                f"edit `power:` of {board.name} (known: {known})"))
    return problems
