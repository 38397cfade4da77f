"""Who may talk to whom: host keys checked against known_hosts, the trust flow, and the agent's restricted service."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rpyc
from rpyc.core.stream import SocketStream

from agent import unframed
from agent.service import EXIT_BUSY, PROTOCOL_CONFIG
from agent.spec import InputSpec, JobSpec
from tests.support import REPO, orch, run_env
from tests.support.fleet import recipe, rows, sweep
from tests.support.sshd import Fleet, sshd_available

needs_sshd = pytest.mark.skipif(not sshd_available(), reason="needs root and OpenSSH's sshd (.ci/run installs it)")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    boards = Fleet(tmp_path / "fleet", ["127.0.0.2", "127.0.0.3"])
    yield boards
    boards.stop()


def fingerprint_of(public_key: Path) -> str:
    done = subprocess.run(["ssh-keygen", "-lf", str(public_key)], capture_output=True, text=True, check=True)
    return done.stdout.split()[1]


@needs_sshd
@pytest.mark.slow
def test_an_unknown_host_is_refused_until_trusted_on_purpose(tmp_path: Path, fleet: Fleet, built_tiny):
    fleet.known_hosts.write_text("")
    board = fleet.board("board1")
    env = fleet.env(run_env(tmp_path))
    env["ORCH_ARTIFACTS"] = str(built_tiny[2].root)
    refused = orch("sweep", str(recipe(tmp_path)), "--devices", "board1", env=env)
    assert refused.returncode == 1
    assert "board1 is down" in refused.stderr and "not in" in refused.stderr
    assert "orch devices trust board1" in refused.stderr
    assert not board.cache_dir.exists()  # nothing deployed, nothing run
    assert rows(tmp_path / "results.db", "SELECT count(*) FROM results WHERE status = 'ok'") == [(0,)]

    declined = orch("devices", "trust", "board1", env=env, stdin="n\n")
    assert declined.returncode == 1 and fleet.known_hosts.read_text() == ""
    assert fingerprint_of(Path(f"{board.host_key}.pub")) in declined.stdout  # shown before asking

    trusted = orch("devices", "trust", "board1", "--yes", env=env)
    assert trusted.returncode == 0, trusted.stderr
    assert fleet.known_hosts.read_text() == board.known_hosts_line
    assert orch("devices", "trust", "board1", "--yes", env=env).stdout.strip().endswith("already trusted")

    checked = orch("devices", "check", "board1", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    import onnxruntime

    assert onnxruntime.__version__ in checked.stdout and "CPUExecutionProvider" in checked.stdout


@needs_sshd
def test_a_changed_host_key_is_refused(tmp_path: Path, fleet: Fleet, built_tiny):
    board1, board2 = fleet.boards
    impostor = board2.known_hosts_line.split(" ", 1)[1]  # board2's key, claimed for board1's address
    fleet.known_hosts.write_text(board1.known_hosts_line.split(" ", 1)[0] + " " + impostor)
    report = sweep(fleet, recipe(tmp_path), built_tiny[2], tmp_path / "results.db", devices="board1")
    [down] = report.down
    assert "has CHANGED" in down.reason and down.faults == 1  # refused at once, never retried
    assert not board1.cache_dir.exists()
    env = fleet.env(run_env(tmp_path))
    replaced = orch("devices", "trust", "board1", "--yes", env=env)
    assert replaced.returncode == 2 and "refusing to replace it" in replaced.stderr
    assert fleet.known_hosts.read_text().count("\n") == 1  # nothing added


@needs_sshd
def test_check_prints_the_command_that_fixes_a_missing_python(tmp_path: Path, fleet: Fleet):
    fleet.write_inventory(board1={"python": "/opt/no-such-python3"})
    done = orch("devices", "check", "board1", env=fleet.env(run_env(tmp_path)))
    assert done.returncode == 1
    assert "fix: install Python >= 3.8 on the board" in done.stdout
    assert f"ssh -p {fleet.board('board1').port}" in done.stdout


# -- the agent's service, on this machine ------------------------------------------------------------------


class Serve:
    """`python -m agent serve` as the orchestrator starts it (over SSH, stdin carrying the token)."""

    def __init__(self, cache: Path, token: str = "ab" * 32, lock: str = "wait"):
        self.token = token
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent", "serve", "--cache", str(cache / "artifacts"),
             "--lock-file", str(cache / "board.lock"), "--lock", lock],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps({"token": token, "holder": "test"}) + "\n")
        self.process.stdin.flush()
        self.event = json.loads(unframed(self.process.stdout.readline())[0])

    def connect(self, token: str | None = None) -> Any:
        sock = socket.create_connection(("127.0.0.1", self.event["port"]))
        sock.sendall(((token or self.token) + "\n").encode())
        return rpyc.connect_stream(SocketStream(sock), rpyc.VoidService, config=dict(PROTOCOL_CONFIG))

    def stop(self) -> int:
        assert self.process.stdin
        self.process.stdin.close()
        return self.process.wait(timeout=20)


def test_the_agent_serves_only_its_three_calls_on_loopback_with_the_token(tmp_path: Path):
    serve = Serve(tmp_path)
    try:
        assert serve.event["event"] == "listening"
        port = serve.event["port"]
        with pytest.raises(OSError):  # loopback's 127.0.0.1 only: not even 127.0.0.2 on the same host
            socket.create_connection(("127.0.0.2", port), timeout=2)
        with pytest.raises(EOFError):
            serve.connect(token="cd" * 32).root.info()

        conn = serve.connect()
        info = json.loads(conn.root.info())
        assert info["python"] and "disk_free_mb" in info and "power_meter_detected" in info
        sha = "ab" * 32
        (tmp_path / "artifacts" / f"{sha}.onnx").write_bytes(b"these bytes do not hash to their name")
        assert conn.root.has_artifact(sha, ".onnx") is False
        spec = JobSpec(artifact_sha256=sha, inputs=[InputSpec("input", [1, 1, 8, 8])]).to_json()
        result = json.loads(conn.root.run(spec, None))
        assert result["status"] == "error" and "refusing to run it" in result["error"]
        for forbidden in ("runner", "cache_dir", "_conn", "exposed_run.__globals__"):
            with pytest.raises(AttributeError):
                obj = conn.root
                for part in forbidden.split("."):
                    obj = getattr(obj, part)
        with pytest.raises(AttributeError):
            conn.root.getmodule("os")  # no classic service: nothing to import with
        assert "not JSON" in json.loads(conn.root.run("{not json", None))["error"]
        with pytest.raises(TypeError):
            conn.root.run({"artifact_sha256": sha}, None)  # a live dict proxy is refused: JSON text only
        conn.close()
    finally:
        serve.stop()


def test_a_second_agent_on_a_locked_board_waits_or_fails(tmp_path: Path):
    holder = Serve(tmp_path)
    try:
        refused = Serve(tmp_path, lock="fail")
        assert refused.event["event"] == "busy" and refused.event["holder"] == "test"
        assert refused.process.wait(timeout=20) == EXIT_BUSY
        waiting = Serve(tmp_path, lock="wait")
        assert waiting.event["event"] == "waiting"
        assert holder.stop() == 0  # the first session ends: the lock is free
        assert json.loads(unframed(waiting.process.stdout.readline())[0])["event"] == "listening"  # type: ignore[union-attr]
        assert waiting.stop() == 0
    finally:
        if holder.process.poll() is None:
            holder.stop()
