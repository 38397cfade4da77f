"""Sweeps over boards: real sshd processes on 127.0.0.2-4, the real agent deployed into each board's cache.

Each board is a real OpenSSH server with its own host key and agent cache
folder; boards die by SIGKILL of their sshd and every process under it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.fleet.scheduler import BoardState
from orchestrator.fleet.transport import SshTransport
from orchestrator.lab.sweep import SweepObserver
from tests.support import ORCH, orch, run_env
from tests.support.fleet import QUICK_RETRY, recipe, rows, sweep
from tests.support.sshd import Fleet, SshdBoard, descendants, sshd_available

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sshd_available(), reason="needs root and OpenSSH's sshd (.ci/run installs it)")]

ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    boards = Fleet(tmp_path / "fleet", ADDRESSES)
    yield boards
    boards.stop()


def statuses_by_device(db: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for device, status in rows(db, "SELECT d.name, r.status FROM results r JOIN devices d ON d.id = r.device_id "
                                   "ORDER BY r.id"):
        found.setdefault(device, []).append(status)
    return found


def test_three_boards_then_a_resweep_that_sends_no_bytes(tmp_path: Path, fleet: Fleet, built_tiny):
    store = built_tiny[2]
    env = fleet.env(run_env(tmp_path))
    env["ORCH_ARTIFACTS"] = str(store.root)
    fast = recipe(tmp_path)
    done = orch("sweep", str(fast), "--devices", "tag:sim", env=env)
    assert done.returncode == 0, done.stderr
    assert "6 ok" in done.stdout, done.stdout
    db = tmp_path / "results.db"
    assert statuses_by_device(db) == {name: ["ok", "ok"] for name in ("board1", "board2", "board3")}
    sha256s = {row[0] for row in rows(db, "SELECT variant_sha256 FROM results")}
    for board in fleet.boards:
        cached = {p.name for p in (board.cache_dir / "artifacts").iterdir()}
        assert {f"{sha}.onnx" for sha in sha256s} <= cached and any(n.endswith(".npz") for n in cached)
        assert not [n for n in cached if n.endswith(".part")]
        [agent_dir] = board.cache_dir.glob("agent-*")
        assert (agent_dir / "MANIFEST.json").exists() and (agent_dir / "rpyc" / "__init__.py").exists()
    info = json.loads(rows(db, "SELECT info FROM devices WHERE name = 'board2'")[0][0])
    assert info["onnxruntime"] and info["cache_dir"] == str(fleet.board("board2").cache_dir / "artifacts")

    again = orch("sweep", str(fast), "--devices", "tag:sim", env=env)  # re-running resumes: nothing left
    assert again.returncode == 0 and "0 jobs" in again.stdout and "6 already measured" in again.stdout

    forced = sweep(fleet, fast, store, db, skip_done=False)
    assert forced.statuses == {"ok": 6}
    assert forced.bytes_sent == 0 and sum(b.deploy_bytes_sent for b in forced.boards.values()) == 0

    key_text = fleet.boards[0].client_key.read_text()
    key_body = "".join(key_text.strip().splitlines()[1:-1])
    with sqlite3.connect(db) as connection:
        dump = "\n".join(connection.iterdump())
    for secret in (key_body[:40], "PRIVATE KEY"):
        assert secret not in dump and secret not in done.stdout + done.stderr


class KillBoardAfterFirstResult(SweepObserver):
    def __init__(self, board: SshdBoard):
        self.board, self.killed = board, False

    def job_finished(self, job: Any, result: dict[str, Any]) -> None:
        if job.device.name == self.board.name and not self.killed:
            self.killed = True
            self.board.stop()


def test_a_board_that_dies_is_retried_then_down_and_resume_completes_it(tmp_path: Path, fleet: Fleet,
                                                                          built_tiny):
    store, db = built_tiny[2], tmp_path / "results.db"
    fast = recipe(tmp_path, measure_s=0.3, threads="[1, 2]")
    victim = fleet.board("board2")
    report = sweep(fleet, fast, store, db, observer=KillBoardAfterFirstResult(victim))
    [down] = report.down
    assert down.device == "board2" and down.reason.startswith(f"{QUICK_RETRY.attempts} faults in a row")
    assert report.boards["board1"].state is BoardState.RELEASED and report.boards["board3"].jobs_run == 4
    found = statuses_by_device(db)
    assert found["board1"] == found["board3"] == ["ok"] * 4
    assert found["board2"] == ["ok", "error", "error", "error"]
    errors = rows(db, "SELECT error FROM results WHERE status = 'error'")
    assert all("not run: board2 is down" in error for (error,) in errors)

    victim.start()  # the board comes back (same address, same host key)
    resumed = sweep(fleet, fast, store, db)
    assert (resumed.jobs_total, resumed.jobs_skipped, resumed.statuses) == (3, 9, {"ok": 3})
    assert list(resumed.boards) == ["board2"]


def _cmdline(pid: int | str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def job_processes(board: SshdBoard) -> list[int]:
    """Pids of `agent bench` job processes reading this board's cache (orphans included)."""
    return [int(pid) for pid in os.listdir("/proc") if pid.isdigit()
            if {"agent", "bench"} <= set(words := _cmdline(pid)) and str(board.cache_dir) in " ".join(words)]


def agent_processes(board: SshdBoard) -> list[int]:
    """Pids of `agent serve` processes under this board's sshd."""
    return [pid for pid in descendants(board.process.pid) if {"agent", "serve"} <= set(_cmdline(pid))] \
        if board.process else []


def parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


class KillDuringJobs(SweepObserver):
    """Kill the first job's process, then the agent itself during the second job."""

    def __init__(self, board: SshdBoard):
        self.board, self.labels, self.threads = board, [], []

    def job_started(self, job: Any) -> None:
        if job.label in self.labels:
            return  # a retry of a job already seen
        self.labels.append(job.label)
        action = {1: "bench", 2: "serve"}.get(len(self.labels))
        if action:
            thread = threading.Thread(target=self.kill, args=(action,))
            thread.start()
            self.threads.append(thread)

    def kill(self, what: str) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            jobs = job_processes(self.board)
            if jobs:
                time.sleep(0.3)  # inside the job now
                os.kill(jobs[0] if what == "bench" else parent(jobs[0]), signal.SIGKILL)
                return
            time.sleep(0.05)
        raise AssertionError(f"no job process showed up to kill ({what})")


def test_killing_the_job_or_the_agent_mid_job(tmp_path: Path, fleet: Fleet, built_tiny):
    store, db = built_tiny[2], tmp_path / "results.db"
    fast = recipe(tmp_path, measure_s=1.5, threads="[1, 2]")
    board = fleet.board("board1")
    killer = KillDuringJobs(board)
    report = sweep(fleet, fast, store, db, devices="board1", observer=killer)
    for thread in killer.threads:
        thread.join()
    # The killed job is an error and is not retried: a job that crashes would crash again.
    # The killed agent is a fault of the board: its job is retried with a fresh agent and succeeds.
    assert statuses_by_device(db)["board1"] == ["error", "ok", "ok", "ok"]
    assert "exited with code -9" in rows(db, "SELECT error FROM results WHERE status = 'error'")[0][0]
    assert report.boards["board1"].faults == 1 and report.boards["board1"].state is BoardState.RELEASED
    time.sleep(0.5)
    assert job_processes(board) == []  # the orphaned job died with its agent
    assert agent_processes(board) == []  # and the agent ended with the sweep


class HeldTransport(SshTransport):
    """The real SSH transport, whose first job waits until the test lets it go (the board stays locked)."""

    release = threading.Event()

    def run(self, spec_json: str, progress: Any = None) -> str:
        self.release.wait(timeout=120)
        return super().run(spec_json, progress)


def test_two_sweeps_on_one_board_are_serialized_by_its_lock(tmp_path: Path, fleet: Fleet, built_tiny):
    store, fast = built_tiny[2], recipe(tmp_path)
    board = fleet.board("board1")
    options = {"make_transport": lambda device, note: HeldTransport(device.board, fleet.settings(), store.root,
                                                                    holder="sweep A of the test")}
    first = threading.Thread(target=sweep, args=(fleet, fast, store, tmp_path / "a.db", "board1"), kwargs=options)
    first.start()
    deadline = time.monotonic() + 60
    while len(agent_processes(board)) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # until sweep A's agent holds the board
    env = fleet.env(run_env(tmp_path))
    env.update(ORCH_ARTIFACTS=str(store.root), ORCH_DB=str(tmp_path / "b.db"))
    second = subprocess.Popen([ORCH, "sweep", str(fast), "--devices", "board1", "--lock", "wait"], env=env,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    third = orch("sweep", str(fast), "--devices", "board1", "--lock", "fail",
                 env=dict(env, ORCH_DB=str(tmp_path / "c.db")))
    assert third.returncode == 1, third.stderr
    assert "board1 is down" in third.stderr and "in use by sweep A of the test" in third.stderr
    while len(agent_processes(board)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # sweep B's agent is up, waiting for the lock
    assert len(agent_processes(board)) == 2 and second.poll() is None
    HeldTransport.release.set()
    first.join(timeout=120)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "2 ok" in out
    a_last = rows(tmp_path / "a.db", "SELECT max(created_at) FROM results")[0][0]
    b_first = rows(tmp_path / "b.db", "SELECT min(created_at) FROM results")[0][0]
    assert a_last < b_first  # B measured only after A let the board go
    assert rows(tmp_path / "c.db", "SELECT count(*) FROM results WHERE status = 'ok'")[0][0] == 0
