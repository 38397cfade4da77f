"""Streaming sweeps: boards measure while the rest builds; makespan against max(build, measure), and the quickstart.

(1) A recipe of 10 variants whose every export also sleeps EXPORT_S (a build of known cost: the export step's
run is wrapped for this process only), on 2 simulated boards whose jobs take JOB_S each (fleet/simulated.py), so
measuring one variant costs a board what building it costs. The streaming sweep runs from an empty store:
makespan / max(build, measure), target <= 1.15, with the build's time taken in the same run (from its start to
the build's end: the machine may be shared) and, for comparison, the build alone (another empty store). The
sequential sweep (SweepOptions.stream off: build everything, then measure) is timed the same way for contrast.

(3) `recipes/quickstart.yaml` on `local`, cold (empty store and database), in a fresh process each, sequential
(as before streaming) and streaming, interleaved, the best of QUICKSTART_ROUNDS each: `local` waits for the build
either way, so the target is the same time within 5 %.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from orchestrator.artifacts import ArtifactStore
from orchestrator.builder import STEPS
from orchestrator.builder.pipeline import build_recipe
from orchestrator.fleet.devices import DeviceSpec
from orchestrator.fleet.simulated import SimulatedTransport
from orchestrator.lab.sweep import SweepObserver, SweepOptions, run_sweep
from orchestrator.recipes import load_recipe
from orchestrator.results.db import open_database

REPO = Path(__file__).resolve().parent.parent
VARIANTS = 10
EXPORT_S = 1.0
JOB_S = 1.0
BOARDS = 2
QUICKSTART_ROUNDS = 2

RECIPE = """\
name: bench-streaming
model: {arch: digits_cnn, options: {width: 8}}
dataset: {name: digits, image_size: 16}
train: {epochs: 1, lr: 0.05, batch_size: 64, seed: 0}
variants:
  prune: {method: [l1], ratio: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]}
benchmark:
  threads: [1]
  accuracy: none
"""

QUICKSTART = """\
import sys
from pathlib import Path
from orchestrator.artifacts import ArtifactStore
from orchestrator.fleet.devices import LOCAL
from orchestrator.lab.sweep import SweepObserver, SweepOptions, run_sweep
from orchestrator.recipes import load_recipe
from orchestrator.results.db import open_database
folder = Path(sys.argv[1])
report = run_sweep(load_recipe(Path(sys.argv[2])), [LOCAL], open_database(str(folder / "results.db")),
                   ArtifactStore(folder / "artifacts"), options=SweepOptions(stream=sys.argv[3] == "stream"))
sys.exit(0 if report.statuses == {"ok": report.jobs_total} else 1)
"""


def slowed_export(delay_s: float) -> Callable[[], None]:
    """Make every export of this process also sleep delay_s; returns what undoes it."""
    step: Any = STEPS.get("export")
    run = step.run

    def slow(ctx: Any, parent: Any, params: dict[str, Any]) -> Any:
        time.sleep(delay_s)
        return run(ctx, parent, params)

    step.run = slow
    return lambda: delattr(step, "run")


class BuildClock(SweepObserver):
    """When the sweep's build ended."""

    ended = 0.0

    def build_finished(self) -> None:
        self.ended = time.perf_counter()


def simulated_sweep(folder: Path, stream: bool) -> tuple[float, float]:
    """(makespan, the build's part of it) of the recipe swept from an empty store on the simulated boards."""
    recipe = folder / "bench.yaml"
    recipe.write_text(RECIPE)
    devices = [DeviceSpec(f"sim{index}", "simulated") for index in range(BOARDS)]
    options = SweepOptions(stream=stream, make_transport=lambda device, note: SimulatedTransport(device.name, JOB_S))
    clock = BuildClock()
    started = time.perf_counter()
    report = run_sweep(load_recipe(recipe), devices, open_database(str(folder / "results.db")),
                       ArtifactStore(folder / "artifacts"), observer=clock, options=options)
    makespan_s = time.perf_counter() - started
    if report.statuses != {"ok": VARIANTS * BOARDS}:
        raise RuntimeError(f"simulated sweep: {report.statuses}")
    return makespan_s, clock.ended - started


def build_alone(folder: Path) -> float:
    recipe = folder / "bench.yaml"
    recipe.write_text(RECIPE)
    started = time.perf_counter()
    built = build_recipe(load_recipe(recipe), ArtifactStore(folder / "artifacts"))
    if len(built.variants) != VARIANTS:
        raise RuntimeError(f"built {len(built.variants)} variants")
    return time.perf_counter() - started


def makespan(folder: Path) -> Iterator[tuple[str, float, str]]:
    undo = slowed_export(EXPORT_S)
    try:
        build_alone(folder / "warm-up")  # imports and the data set's first load, out of the figures
        build_s = build_alone(folder / "build")
        streaming_s, streaming_build_s = simulated_sweep(folder / "streaming", stream=True)
        sequential_s, _ = simulated_sweep(folder / "sequential", stream=False)
    finally:
        undo()
    measure_s = VARIANTS * JOB_S
    yield f"build alone ({VARIANTS} variants, each export + {EXPORT_S:g} s)", build_s, "s"
    yield f"measure alone ({VARIANTS} jobs of {JOB_S:g} s per board, {BOARDS} simulated boards)", measure_s, "s"
    yield "streaming sweep: makespan", streaming_s, "s"
    yield "streaming sweep: its build's part (start to last variant)", streaming_build_s, "s"
    yield "streaming makespan / max(its build, measure)", streaming_s / max(streaming_build_s, measure_s), \
        "ratio (target <= 1.15)"
    yield "streaming makespan / max(build alone, measure)", streaming_s / max(build_s, measure_s), "ratio"
    yield "sequential sweep (build, then measure): makespan / max(build alone, measure)", \
        sequential_s / max(build_s, measure_s), "ratio"


def quickstart(folder: Path, mode: str, round_: int) -> float:
    workdir = folder / f"quickstart-{mode}-{round_}"
    workdir.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", QUICKSTART, str(workdir), str(REPO / "recipes" / "quickstart.yaml"), mode],
                   env=env, check=True, cwd=REPO)
    return time.perf_counter() - started


def quickstart_cold(folder: Path) -> Iterator[tuple[str, float, str]]:
    times: dict[str, list[float]] = {"sequential": [], "stream": []}
    for round_ in range(QUICKSTART_ROUNDS):  # interleaved, the best of each: a shared machine's load comes and goes
        for mode, found in times.items():
            found.append(quickstart(folder, mode, round_))
    before, after = min(times["sequential"]), min(times["stream"])
    yield f"quickstart cold sweep on local, sequential (before), best of {QUICKSTART_ROUNDS}", before, "s"
    yield f"quickstart cold sweep on local, streaming (after), best of {QUICKSTART_ROUNDS}", after, "s"
    yield "after / before", after / before, "ratio (target 0.95 to 1.05)"


def run() -> Iterator[tuple[str, float, str]]:
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        for name in ("warm-up", "build", "streaming", "sequential"):
            (Path(tmp) / name).mkdir()
        yield from makespan(Path(tmp))
        yield from quickstart_cold(Path(tmp))
