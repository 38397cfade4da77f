"""What a sweep records and tells as it runs: its report (SweepReport), the observer of its progress
(SweepObserver), the build observer that records each variant (RecordingBuild), and the Recorder that files each
result the boards send back, in the sweep's thread (lab/sweep.py runs the sweep)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from agent.result import error_result
from orchestrator.builder.pipeline import BuiltVariant, FailedVariant
from orchestrator.errors import FailureFound, JobsFailed, JobsInvalid
from orchestrator.fleet.devices import DeviceSpec
from orchestrator.fleet.scheduler import (
    BoardChanged,
    BoardFinished,
    BoardOutcome,
    BoardReady,
    BoardState,
    Event,
    JobFinished,
    JobsNotRun,
    JobStarted,
    QueuedJob,
)
from orchestrator.lab.jobs import Job
from orchestrator.lab.pipelines import save_frames
from orchestrator.results.store import ResultsStore
from orchestrator.runtimes import Runtime

NUMBER = re.compile(r"-?\d+(\.\d+)?")

@dataclass
class JobTiming:
    """Where one job's time went: the orchestrator's wall time for it, the agent's for its process."""

    device: str
    wall_s: float
    agent_wall_s: float | None
    bytes_sent: int


@dataclass
class SweepReport:
    """What a sweep did: its id, how many jobs ended in each status, how each board fared, which variants did not
    build, and the onnxruntime it built for (None: none was targeted)."""

    sweep_id: int
    jobs_total: int
    statuses: dict[str, int] = field(default_factory=dict)
    status: str = "running"
    jobs_skipped: int = 0
    boards: dict[str, BoardOutcome] = field(default_factory=dict)
    timings: list[JobTiming] = field(default_factory=list)
    failed_builds: list[FailedVariant] = field(default_factory=list)
    target: Runtime | None = None
    # Why results were not ok: (status, reason with its numbers blanked) -> (how many, the first one as written).
    reasons: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)

    def failure(self) -> FailureFound | None:
        """What the sweep's exit code says (orchestrator/errors.py), the first that applies: a board down or a
        variant not built, then jobs that ended in error, then invalid results; None when every job is ok."""
        problems = [f"{board.device} is down: {board.reason}" for board in self.down]
        problems += [f"{len(self.failed_builds)} variants did not build"] if self.failed_builds else []
        if problems:
            return FailureFound("; ".join(problems))
        if self.statuses.get("error"):
            return JobsFailed(f"{self.statuses['error']} jobs ended in error: nothing was measured for them")
        if self.statuses.get("invalid"):
            return JobsInvalid(f"{self.statuses['invalid']} results are invalid: measured, but not to be trusted")
        return None

    def note_reasons(self, result: dict[str, Any]) -> None:
        """Count why an invalid or error result is not ok, jobs with the same reason but other numbers together."""
        status = str(result.get("status", "error"))
        if status == "ok":
            return
        found = [str(reason) for reason in result.get("reasons") or []] if status == "invalid" else \
            [str(result.get("error") or "no reason given")]
        for reason in found:
            key = (status, NUMBER.sub("#", reason))
            count, first = self.reasons.get(key, (0, reason))
            self.reasons[key] = (count + 1, first)

    @property
    def jobs_done(self) -> int:
        return sum(self.statuses.values())

    @property
    def down(self) -> list[BoardOutcome]:
        return [outcome for outcome in self.boards.values() if outcome.state is BoardState.DOWN]

    @property
    def bytes_sent(self) -> int:
        """Artifact bytes sent to boards (agent deployment not counted)."""
        return sum(outcome.bytes_sent for outcome in self.boards.values())


class SweepObserver:
    """Progress events of a sweep, each a no-op here: the CLI draws bars from them (ui.SweepProgress), tests
    record or act on them; subclasses override what they need."""

    def build_started(self, total: int) -> None: ...
    def variant_built(self, variant: BuiltVariant) -> None: ...
    def variant_failed(self, variant: FailedVariant) -> None: ...
    def build_finished(self) -> None: ...
    # bench_started and board_planned give the jobs to run, all devices' and one device's; a streaming sweep calls
    # them again whenever it learns a total changed (jobs already measured, variants that did not build).
    def bench_started(self, total: int) -> None: ...
    def board_planned(self, device: str, total: int) -> None: ...
    def board_changed(self, device: str, state: str, note: str) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def job_finished(self, job: Job, result: dict[str, Any]) -> None: ...


class RecordingBuild:
    """A build observer that records each variant in the results database as it is built, then tells `observer`."""

    def __init__(self, results: ResultsStore, recipe_name: str, observer: SweepObserver):
        self.results, self.recipe_name, self.observer = results, recipe_name, observer

    def build_started(self, total: int) -> None:
        self.observer.build_started(total)

    def variant_built(self, variant: BuiltVariant) -> None:
        self.results.upsert_variant(self.recipe_name, variant)
        self.observer.variant_built(variant)

    def variant_failed(self, variant: FailedVariant) -> None:
        self.results.record_failed_variant(self.recipe_name, variant)
        self.observer.variant_failed(variant)


class Recorder:
    """Handles scheduler events in the sweep's thread: records each result at once, tells the observer."""

    def __init__(self, results: ResultsStore, engine: Engine, report: SweepReport, observer: SweepObserver,
                 frames_dir: Path = Path("frames")):
        self.results, self.engine, self.report, self.observer = results, engine, report, observer
        self.frames_dir = frames_dir
        self.device_ids: dict[str, int] = {}

    def handle(self, event: Event) -> None:
        if isinstance(event, BoardChanged):
            self.observer.board_changed(event.device.name, event.state.value, event.note)
        elif isinstance(event, BoardReady):
            self.device_ids[event.device.name] = self.results.upsert_device(
                event.device.name, event.device.kind, event.info)
        elif isinstance(event, JobStarted):
            self.observer.job_started(event.item.job)
        elif isinstance(event, JobFinished):
            self.record(event.item, event.result)
            self.report.timings.append(JobTiming(event.item.job.device.name, event.wall_s, event.agent_wall_s,
                                                 event.bytes_sent))
        elif isinstance(event, BoardFinished):
            for item in event.not_run:
                self.record(item, error_result(f"not run: {event.device.name} is down: {event.outcome.reason}"))
        elif isinstance(event, JobsNotRun):
            for item in event.items:
                self.record(item, error_result(f"not run: {event.device.name} is down: {event.reason}"))

    def record(self, item: QueuedJob[Job], result: dict[str, Any]) -> None:
        job = item.job
        if job.pipeline:
            folder = (f"{job.variant.name}-{job.pipeline}-x{job.threads}" + (f"-{job.repeat}" if job.repeats > 1
                                                                             else "")).replace("/", "_")
            result = save_frames(result, self.frames_dir / f"sweep-{self.report.sweep_id}" / job.device.name / folder)
        self.results.record_result(self.report.sweep_id, self.device_id(job.device), job.variant.sha256,
                                   json.loads(item.spec_json), result)
        status = str(result.get("status", "error"))
        self.report.statuses[status] = self.report.statuses.get(status, 0) + 1
        self.report.note_reasons(result)
        self.observer.job_finished(job, result)

    def record_unbuilt(self, device: DeviceSpec, variant_id: str, spec: dict[str, Any], reason: str) -> None:
        """Record the error result of one job whose variant did not build."""
        self.results.record_result(self.report.sweep_id, self.device_id(device), variant_id, spec,
                                   error_result(reason))
        self.report.statuses["error"] = self.report.statuses.get("error", 0) + 1

    def device_id(self, device: DeviceSpec) -> int:
        """The device's row; a board never reached keeps what an earlier sweep learnt about it."""
        if device.name not in self.device_ids:
            self.device_ids[device.name] = self.results.ensure_device(device.name, device.kind)
        return self.device_ids[device.name]
