"""Fleet scheduling: efficiency with 8 simulated boards, and per-job orchestration overhead over real SSH on loopback.

Targets (issue 5): ideal makespan / measured makespan >= 0.9 with 8 boards whose
jobs take a fixed 1 s; per-job orchestration overhead (everything but the agent's
job process) under 0.5 s on loopback.

Both run the sweep's real scheduling and recording path (lab/sweep.py benchmark(): one
worker thread per board, every result committed to a SQLite file as it arrives).
The simulated boards are fleet/simulated.py; the SSH figure uses a real sshd on
127.0.0.2 (tests/support/sshd.py, needs root) and the real agent deployed through it.
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from orchestrator.artifacts import ArtifactStore
from orchestrator.builder.pipeline import BuiltVariant
from orchestrator.fleet.devices import DeviceSpec, resolve_devices
from orchestrator.fleet.inventory import load_inventory
from orchestrator.fleet.simulated import SimulatedTransport
from orchestrator.lab.sweep import SweepObserver, SweepOptions, SweepReport, benchmark
from orchestrator.recipes import LoadedRecipe, load_recipe
from orchestrator.results.db import open_database
from orchestrator.results.store import ResultsStore

REPO = Path(__file__).resolve().parent.parent
BOARDS = 8
JOBS_PER_BOARD = 5
JOB_S = 1.0
SSH_JOBS = 12

RECIPE = """\
name: bench-scheduler
model: {{onnx: model.onnx}}
dataset: {{name: digits, image_size: 8}}
variants: {{}}
benchmark:
  warmup: {{min_iters: 5, min_s: 0.01}}
  measure: {{min_iters: 64, min_s: {measure_s}, max_s: 10}}
  accuracy: none
  power_idle_s: 0
"""

def _variant(name: str, sha256: str, size: int) -> BuiltVariant:
    return BuiltVariant(name=name, sha256=sha256, axes={}, lineage=[], file_size_bytes=size, steps_run=0,
                        meta={"input": {"name": "input", "shape": [1, 16], "dtype": "float32"}})

def _recipe(folder: Path, measure_s: float) -> LoadedRecipe:
    path = folder / "bench.yaml"
    path.write_text(RECIPE.format(measure_s=measure_s))
    return load_recipe(path)

def _run(loaded: LoadedRecipe, variants: list[BuiltVariant], devices: list[DeviceSpec], folder: Path,
         store: ArtifactStore, options: SweepOptions) -> tuple[SweepReport, float]:
    engine = open_database(str(folder / "results.db"))
    for variant in variants:
        ResultsStore(engine).upsert_variant(loaded.recipe.name, variant)
    started = time.perf_counter()
    report = benchmark(loaded, variants, None, devices, engine, store, SweepObserver(), "manual", options)
    return report, time.perf_counter() - started

def scheduling_efficiency(folder: Path) -> Iterator[tuple[str, float, str]]:
    loaded = _recipe(folder, measure_s=0.1)
    variants = [_variant(f"v{index}", hashlib.sha256(b"%d" % index).hexdigest(), 1) for index in range(JOBS_PER_BOARD)]
    devices = [DeviceSpec(f"sim{index}", "simulated") for index in range(BOARDS)]
    options = SweepOptions(skip_done=False, make_transport=lambda device, note: SimulatedTransport(device.name, JOB_S))
    report, makespan_s = _run(loaded, variants, devices, folder, ArtifactStore(folder), options)
    if report.statuses != {"ok": BOARDS * JOBS_PER_BOARD}:
        raise RuntimeError(f"simulated sweep: {report.statuses}")
    ideal_s = JOBS_PER_BOARD * JOB_S
    yield f"{BOARDS} simulated boards x {JOBS_PER_BOARD} jobs of {JOB_S:g} s: makespan", makespan_s, "s"
    yield "scheduling efficiency (ideal / measured makespan)", ideal_s / makespan_s, "ratio (target >= 0.9)"

def _tiny_model() -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 4)).astype("float32"), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["output"])], "bench",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])], [weights])
    return bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())

def ssh_overhead(folder: Path) -> Iterator[tuple[str, float, str]]:
    from tests.support.sshd import Fleet, sshd_available

    if not sshd_available():
        print("(skipped: the SSH figure needs root and OpenSSH's sshd)")
        return
    fleet = Fleet(folder / "fleet", ["127.0.0.2"])
    try:
        store = ArtifactStore(folder / "artifacts")
        sha256 = store.put(_tiny_model(), ".onnx")
        loaded = _recipe(folder, measure_s=0.2)
        variants = [_variant(f"matmul-{index}", sha256, 1) for index in range(SSH_JOBS)]
        devices = resolve_devices("board1", load_inventory(fleet.inventory))
        report, makespan_s = _run(loaded, variants, devices, folder, store,
                                  SweepOptions(skip_done=False, ssh=fleet.settings()))
    finally:
        fleet.stop()
    if report.statuses != {"ok": SSH_JOBS}:
        raise RuntimeError(f"SSH sweep: {report.statuses}")
    per_job = [t.wall_s - (t.agent_wall_s or 0.0) for t in report.timings]
    agent_s = [t.agent_wall_s or 0.0 for t in report.timings]
    yield "SSH loopback: agent job process wall time, median (start-up, session, gates)", \
        statistics.median(agent_s), "s"
    yield "per-job orchestration overhead over SSH, median (orch wall - agent job process)", \
        statistics.median(per_job), "s (target < 0.5)"
    yield f"per-job overhead amortized over {SSH_JOBS} jobs (incl. connect, deploy, agent start, lock, DB)", \
        (makespan_s - sum(agent_s)) / SSH_JOBS, "s"

def run() -> Iterator[tuple[str, float, str]]:
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        (Path(tmp) / "sim").mkdir()
        (Path(tmp) / "ssh").mkdir()
        yield from scheduling_efficiency(Path(tmp) / "sim")
        yield from ssh_overhead(Path(tmp) / "ssh")
