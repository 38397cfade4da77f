"""A streaming sweep: boards measure while the rest of the recipe builds; `local` waits for the build's end.

The build is real (the tiny recipe without its int8 variants, from an empty store); the boards are simulated
(fleet/simulated.py), the `local` device among them, so no board's timing depends on this machine's load. The order
of what the sweep told its observer (all in the sweep's thread) says what overlapped; no assertion depends on how
long anything took.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.artifacts import ArtifactStore
from orchestrator.builder.pipeline import BuiltVariant, FailedVariant
from orchestrator.fleet.devices import DeviceSpec
from orchestrator.fleet.simulated import SimulatedTransport
from orchestrator.lab.jobs import Job
from orchestrator.lab.sweep import SweepObserver, SweepOptions, SweepReport, run_sweep
from orchestrator.recipes import load_recipe
from orchestrator.results.db import open_database
from tests.support import TINY_RECIPE, onnx_models

pytestmark = pytest.mark.slow

DEVICES = [DeviceSpec("sim1", "simulated"), DeviceSpec("sim2", "simulated"), DeviceSpec("local", "local")]
RECIPE = TINY_RECIPE.replace("quantize: [none, int8_static]", "quantize: [none]")
VARIANTS = 4


class Timeline(SweepObserver):
    """What the sweep told its observer, in order: (what, device or variant name, when)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, float]] = []
        self.totals: dict[str, int] = {}

    def note(self, what: str, name: str) -> None:
        self.seen.append((what, name, time.monotonic()))

    def variant_built(self, variant: BuiltVariant) -> None:
        self.note("built", variant.name)

    def variant_failed(self, variant: FailedVariant) -> None:
        self.note("failed", variant.name)

    def build_finished(self) -> None:
        self.note("build finished", "")

    def bench_started(self, total: int) -> None:
        self.totals["all"] = total

    def board_planned(self, device: str, total: int) -> None:
        self.totals[device] = total

    def job_started(self, job: Job) -> None:
        self.note("job started", job.device.name)

    def job_finished(self, job: Job, result: dict[str, Any]) -> None:
        self.note("job finished", job.device.name)

    def first(self, what: str, name: str | None = None) -> int:
        return next(i for i, (kind, who, _) in enumerate(self.seen) if kind == what and name in (None, who))

    def last(self, what: str) -> int:
        return max(i for i, (kind, _, _) in enumerate(self.seen) if kind == what)


def streamed(tmp_path: Path, **options: Any) -> tuple[SweepReport, Timeline, Path]:
    """The recipe swept cold (nothing built yet) on two simulated boards and a simulated `local`."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    db = tmp_path / "results.db"
    timeline = Timeline()
    report = run_sweep(load_recipe(recipe), DEVICES, open_database(str(db)), ArtifactStore(tmp_path / "artifacts"),
                       observer=timeline,
                       options=SweepOptions(make_transport=lambda device, note: SimulatedTransport(device.name, 0.2),
                                            **options))
    return report, timeline, db


def test_boards_measure_while_the_rest_builds_and_local_waits_for_the_build(tmp_path: Path):
    report, timeline, db = streamed(tmp_path)
    assert report.status == "finished" and report.statuses == {"ok": VARIANTS * len(DEVICES)}
    assert report.jobs_total == VARIANTS * len(DEVICES) and timeline.totals["all"] == report.jobs_total
    assert all(timeline.totals[device.name] == VARIANTS for device in DEVICES)
    # Boards started measuring before the last variant was built...
    assert timeline.first("job started", "sim1") < timeline.last("built")
    assert timeline.first("job started", "sim2") < timeline.last("built")
    assert timeline.first("job finished") < timeline.last("built")
    # ...and this machine only once the build was over (a build would disturb its timings).
    assert timeline.first("build finished") < timeline.first("job started", "local")
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT status, jobs_total FROM sweeps").fetchall() == [
            ("finished", VARIANTS * len(DEVICES))]
        ok = connection.execute("SELECT count(*) FROM results WHERE status = 'ok'").fetchone()[0]
        assert ok == VARIANTS * len(DEVICES)
        # The database's clock agrees: a board's first result was recorded before the last variant was.
        first_result = connection.execute("SELECT min(r.created_at) FROM results r JOIN devices d "
                                          "ON d.id = r.device_id WHERE d.name = 'sim1'").fetchone()[0]
        last_variant = connection.execute("SELECT max(created_at) FROM variants").fetchone()[0]
    assert first_result < last_variant


def test_overlap_local_lets_this_machine_measure_during_the_build_and_a_resume_skips_everything(tmp_path: Path):
    report, timeline, _ = streamed(tmp_path, overlap_local=True)
    assert report.statuses == {"ok": VARIANTS * len(DEVICES)}
    assert timeline.first("job started", "local") < timeline.last("built")

    again, timeline, _ = streamed(tmp_path)  # everything measured: the resume runs nothing, contacts no board
    assert (again.jobs_total, again.jobs_skipped, again.statuses, again.boards) == (0, VARIANTS * len(DEVICES), {}, {})
    assert "job started" not in {kind for kind, _, _ in timeline.seen}


FLAT = """\
name: flat
model: {onnx: flat.onnx}
dataset: {name: image_folder, root: images, image_size: 32, test_fraction: 0.25}
variants:
  input_size: [40, 32]
  quantize: [none, int8_static]
  calibration_samples: 16
benchmark:
  threads: [1, 2]
"""


def test_variants_that_fail_to_build_first_hold_up_no_other(tmp_path: Path):
    # The 40px variants come first and cannot build (the model's flatten is fixed at 32 px): their jobs are
    # recorded as errors once the sweep has a row, and the 32px variants are measured everywhere.
    onnx_models.write_colour_folder(tmp_path / "images")
    onnx_models.fixed_flatten(tmp_path / "flat.onnx", onnx_models.trained(pooled=False))
    (tmp_path / "flat.yaml").write_text(FLAT)
    timeline = Timeline()
    report = run_sweep(load_recipe(tmp_path / "flat.yaml"), DEVICES, open_database(str(tmp_path / "results.db")),
                       ArtifactStore(tmp_path / "artifacts"), observer=timeline,
                       options=SweepOptions(make_transport=lambda device, note: SimulatedTransport(device.name, 0.1)))
    jobs_per_variant = 2 * len(DEVICES)  # two thread counts
    assert [failure.name for failure in report.failed_builds] == ["40px/fp32", "40px/int8_static"]
    assert report.statuses == {"ok": 2 * jobs_per_variant, "error": 2 * jobs_per_variant}
    assert report.jobs_total == 4 * jobs_per_variant and timeline.totals["all"] == 2 * jobs_per_variant
    assert timeline.last("failed") < timeline.first("built")
    with sqlite3.connect(tmp_path / "results.db") as connection:
        errors = connection.execute("SELECT error FROM results WHERE status = 'error'").fetchall()
        assert connection.execute("SELECT jobs_total FROM sweeps").fetchall() == [(4 * jobs_per_variant,)]
    assert len(errors) == 2 * jobs_per_variant
    assert all(error.startswith("build failed at resize_input") for (error,) in errors)
