"""The fleet's logic without boards: inventory, --devices, the lifecycle, retries, the bundle, the scheduler."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
import rpyc

from agent.service import AgentService
from orchestrator.errors import DeviceError, IllegalTransition, InventoryError
from orchestrator.fleet.deploy import agent_bundle
from orchestrator.fleet.devices import resolve_devices
from orchestrator.fleet.inventory import Inventory, load_inventory
from orchestrator.fleet.scheduler import (
    BoardFinished,
    BoardState,
    JobFinished,
    QueuedJob,
    RetryPolicy,
    run_boards,
    transition,
)
from orchestrator.fleet.simulated import SimulatedTransport
from tests.support import ORCH, run_env

EXAMPLE = """\
devices:
  jetson-nano:
    host: 192.168.1.20
    user: orch
    key: ~/.ssh/orch_ed25519
    python: /usr/bin/python3
    tags: [jetson, nightly]
    providers: [CUDAExecutionProvider, CPUExecutionProvider]
    power: {type: ina3221}
    thermal: {max_c: 60}
  rpi5:
    host: rpi5-lab
    cache_dir: ~/orch-cache
    tags: [rpi, nightly]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(text)
    return path


def test_the_documented_example_inventory_loads(tmp_path: Path):
    inventory = load_inventory(write(tmp_path, EXAMPLE))
    jetson, rpi = inventory.get("jetson-nano"), inventory.get("rpi5")
    assert jetson.port is None and jetson.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert jetson.power == {"type": "ina3221"} and jetson.thermal and jetson.thermal.max_c == 60
    assert rpi.cache_dir == "orch-cache" and rpi.python == "python3"  # remote paths are relative to the login
    assert inventory.known_hosts == tmp_path / "known_hosts"
    assert load_inventory(tmp_path / "missing.yaml").boards == {}


@pytest.mark.parametrize(("entry", "fragments"), [
    ("  'rpi;touch /tmp/pwned':\n    host: h\n", ["devices.yaml:2", "device name 'rpi;touch /tmp/pwned'"]),
    ("  'x$(id)':\n    host: h\n", ["device name 'x$(id)'"]),
    ("  local:\n    host: h\n", ["reserved"]),
    ("  rpi:\n    host: 'h; reboot'\n", ["devices.yaml:3", "devices.rpi.host"]),
    ("  rpi:\n    host: h\n    python: 'python3 -c evil'\n", ["devices.rpi.python", "plain path"]),
    ("  rpi:\n    host: h\n    cache_dir: '../../etc'\n", ["devices.rpi.cache_dir"]),
    ("  rpi:\n    host: h\n    user: 'root`id`'\n", ["devices.rpi.user"]),
    ("  rpi:\n    host: h\n    tags: ['a b']\n", ["devices.rpi.tags"]),
    ("  rpi:\n    host: h\n    port: 70000\n", ["devices.yaml:4", "devices.rpi.port"]),
    ("  rpi:\n    host: h\n    colour: red\n", ["devices.rpi.colour", "unknown key"]),
    ("  rpi:\n    host: h\n  rpi:\n    host: g\n", ["devices.yaml:4", "duplicate device"]),
])
def test_bad_inventory_entries_are_rejected_with_file_line_and_key(tmp_path: Path, entry: str,
                                                                     fragments: list[str]):
    with pytest.raises(InventoryError) as caught:
        load_inventory(write(tmp_path, "devices:\n" + entry))
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_devices_take_names_tags_and_local(tmp_path: Path):
    inventory = load_inventory(write(tmp_path, EXAMPLE))
    assert [d.name for d in resolve_devices("local,tag:nightly", inventory)] == ["local", "jetson-nano", "rpi5"]
    assert [d.name for d in resolve_devices("rpi5,tag:rpi,jetson-nano", inventory)] == ["rpi5", "jetson-nano"]
    assert resolve_devices("rpi5", inventory)[0].board == inventory.get("rpi5")
    with pytest.raises(DeviceError, match="unknown device 'jetsn'; known devices: local, jetson-nano, rpi5"):
        resolve_devices("jetsn", inventory)
    with pytest.raises(DeviceError, match="no device has tag 'imx'"):
        resolve_devices("tag:imx", inventory)
    with pytest.raises(DeviceError, match="unknown device 'a;b'"):
        resolve_devices("a;b", inventory)


def test_add_and_remove_round_trip(tmp_path: Path):
    from orchestrator.fleet.inventory import board_from_fields

    inventory = Inventory(tmp_path / "sub" / "devices.yaml")
    inventory.add(board_from_fields("x", "imx8", {"host": "imx8.lab", "port": 2200, "tags": ["imx"]}))
    inventory.save()
    again = load_inventory(tmp_path / "sub" / "devices.yaml")
    assert again.get("imx8").port == 2200 and again.get("imx8").tags == ("imx",)
    with pytest.raises(InventoryError, match="already exists"):
        again.add(again.get("imx8"))
    again.remove("imx8")
    assert again.boards == {}


def test_the_cli_rejects_a_shell_metacharacter_name_in_one_line(tmp_path: Path):
    env = dict(run_env(tmp_path), ORCH_INVENTORY=str(tmp_path / "devices.yaml"))
    done = subprocess.run([ORCH, "devices", "add", "pi;reboot", "--host", "pi.lab"], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 2 and "device name 'pi;reboot'" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "devices.yaml").exists()
    write(tmp_path, "devices:\n  'pi&&reboot':\n    host: h\n")
    listed = subprocess.run([ORCH, "devices", "list"], capture_output=True, text=True, env=env)
    assert listed.returncode == 2 and "devices.yaml:2" in listed.stderr


def test_the_lifecycle_refuses_illegal_moves():
    state = BoardState.UNKNOWN
    for target in (BoardState.REACHABLE, BoardState.DEPLOYED, BoardState.BUSY, BoardState.DEPLOYED,
                   BoardState.FAILED, BoardState.UNKNOWN, BoardState.FAILED, BoardState.DOWN):
        state = transition("b", state, target)
    with pytest.raises(IllegalTransition, match="from down to unknown"):
        transition("b", state, BoardState.UNKNOWN)
    with pytest.raises(IllegalTransition):
        transition("b", BoardState.UNKNOWN, BoardState.BUSY)  # no job before the agent is up


def test_backoff_doubles_up_to_its_cap():
    policy = RetryPolicy(attempts=5, backoff_s=1.0, factor=2.0, backoff_max_s=5.0)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


def test_the_bundle_ships_agent_and_rpyc_but_never_the_classic_server():
    bundle = agent_bundle()
    paths = {path for path, _ in bundle.files}
    assert {"agent/service.py", "agent/__main__.py", "rpyc/__init__.py", "rpyc/cli/__init__.py"} <= paths
    assert not any("classic" in path and "cli" in path for path in paths)
    assert not any("__pycache__" in path for path in paths)
    assert bundle.version == agent_bundle.__wrapped__().version  # content-derived: stable
    assert not issubclass(AgentService, (rpyc.SlaveService, rpyc.ClassicService))


def test_one_failing_board_never_costs_another_its_results():
    from orchestrator.fleet.devices import DeviceSpec

    good, bad = DeviceSpec("good", "simulated"), DeviceSpec("bad", "simulated")
    queues = [(device, [QueuedJob(f"v{i}", f"v{i}", "{}", []) for i in range(3)]) for device in (good, bad)]
    attempts: list[float] = []

    def make(device: DeviceSpec, note: object) -> SimulatedTransport:
        if device is bad:
            attempts.append(time.monotonic())
        return SimulatedTransport(device.name, job_s=0.05, faults=1 if device is bad else 0)

    events: list[object] = []
    outcomes = run_boards(queues, make, RetryPolicy(attempts=3, backoff_s=0.05), events.append)
    assert outcomes["good"].state is BoardState.RELEASED and outcomes["good"].jobs_run == 3
    assert outcomes["bad"].state is BoardState.DOWN and outcomes["bad"].faults == 3
    assert "simulated: connection refused" in outcomes["bad"].reason and len(attempts) == 3
    assert attempts[2] - attempts[1] >= 0.09  # the second wait is twice the first
    finished = [e for e in events if isinstance(e, JobFinished)]
    assert len(finished) == 3 and all(e.item.job.startswith("v") for e in finished)
    not_run = next(e for e in events if isinstance(e, BoardFinished) and e.device is bad)
    assert len(not_run.not_run) == 3  # handed back to be recorded as not run


def test_an_interrupt_stops_every_board_and_keeps_what_arrived():
    from orchestrator.fleet.devices import DeviceSpec

    devices = [DeviceSpec(f"b{i}", "simulated") for i in range(3)]
    queues = [(device, [QueuedJob("v", "v", "{}", []) for _ in range(50)]) for device in devices]
    seen: list[object] = []

    def handle(event: object) -> None:
        seen.append(event)
        if sum(isinstance(e, JobFinished) for e in seen) == 3:
            raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_boards(queues, lambda d, n: SimulatedTransport(d.name, job_s=0.05), RetryPolicy(), handle)
    assert time.monotonic() - started < 5
    assert not [t for t in threading.enumerate() if t.name.startswith("board-")]
