"""A sweep: build a recipe's variants, run every (variant x device x run config) job, record each result.

Jobs run on all devices at once, one at a time per device (fleet/scheduler.py).
Every finished job is committed as soon as it arrives, so an interrupt, a crash
or a board that drops out keeps everything measured so far. Re-running a sweep
resumes it: only jobs without an ok result yet are run, unless forced.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from agent.result import error_result
from orchestrator.artifacts import ArtifactStore
from orchestrator.builder.pipeline import BuildOutcome, BuiltVariant, FailedVariant, build_recipe
from orchestrator.errors import DeviceError, FailureFound, Interrupted, JobsFailed, JobsInvalid
from orchestrator.fleet.devices import DeviceSpec
from orchestrator.fleet.local import LocalTransport
from orchestrator.fleet.scheduler import (
    BoardChanged,
    BoardFinished,
    BoardOutcome,
    BoardReady,
    BoardState,
    Event,
    JobFinished,
    JobStarted,
    QueuedJob,
    RetryPolicy,
    Transport,
    TransportFactory,
    run_boards,
)
from orchestrator.fleet.ssh import SshSettings
from orchestrator.lab.jobs import Job, plan_jobs, queue_job
from orchestrator.lab.pipelines import save_frames, ship_source
from orchestrator.lab.settings import providers_for
from orchestrator.lab.targets import Preflight, board_infos, resolve_target
from orchestrator.recipes import LoadedRecipe, Recipe
from orchestrator.results.mapping import series_identity
from orchestrator.results.queries import ok_results_by_series
from orchestrator.results.store import ResultsStore
from orchestrator.runtimes import Runtime

NUMBER = re.compile(r"-?\d+(\.\d+)?")


@dataclass
class SweepOptions:
    """How a sweep runs its jobs.

    skip_done: run only jobs whose series has no ok result yet from this recipe's sweeps (so re-running a
        sweep resumes it); False runs every job (--force)
    ssh: how boards are reached (needed when a device is an inventory board)
    wait_for_lock: wait for a board that another orchestrator holds; False: that board is down for this sweep
    retry: retries of transient board faults before a board is marked down
    make_transport: builds each device's transport (default: local or SSH by the device's kind)
    frames_dir: where the annotated frames of pipeline jobs are written, a folder per result (default: `frames`
        beside the artifact store)
    """

    skip_done: bool = True
    ssh: SshSettings | None = None
    wait_for_lock: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    make_transport: TransportFactory | None = None
    frames_dir: Path | None = None


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


def build_and_record(loaded: LoadedRecipe, engine: Engine, store: ArtifactStore,
                     observer: SweepObserver | None = None, evaluation: bool = False,
                     target: Runtime | None = None) -> BuildOutcome:
    """Build a recipe's variants (reusing the cache) for the `target` onnxruntime if one is given, recording each
    in the results database as it is built."""
    recording = RecordingBuild(ResultsStore(engine), loaded.recipe.name, observer or SweepObserver())
    return build_recipe(loaded, store, recording, evaluation=evaluation, target=target)


def run_sweep(loaded: LoadedRecipe, devices: list[DeviceSpec], engine: Engine, store: ArtifactStore,
              observer: SweepObserver | None = None, kind: str = "manual",
              options: SweepOptions | None = None) -> SweepReport:
    """Build (for the recipe's target runtime, lab/targets.py), benchmark and record one recipe on the given
    devices."""
    observer = observer or SweepObserver()
    options = options or SweepOptions()
    if options.ssh is None and options.make_transport is None and any(d.kind == "ssh" for d in devices):
        raise DeviceError("boards need SSH settings (SweepOptions.ssh)")
    pipeline_source_path(loaded)  # before anything is built: a missing source is the recipe's error
    target = resolve_target(loaded, lambda: ask_boards(devices, engine, store, options),
                            lambda: LocalTransport(store.root).info())
    built = build_and_record(loaded, engine, store, observer,
                             evaluation=loaded.recipe.benchmark.accuracy == "full_test_set", target=target)
    if loaded.recipe.benchmark.accuracy == "full_test_set" and built.variants and built.evaluation is None:
        raise loaded.error_at(("benchmark", "accuracy"), "is full_test_set, but the data set has no labelled test "
                                                         "split to score on the devices (an unlabelled folder, or "
                                                         "detection data without model.detection): set "
                                                         "accuracy: none to measure without it")
    report = benchmark(loaded, built.variants, built.evaluation, devices, engine, store, observer, kind, options,
                       failures=built.failures)
    report.target = target
    return report


def ask_boards(devices: list[DeviceSpec], engine: Engine, store: ArtifactStore,
               options: SweepOptions) -> dict[str, dict[str, Any] | str]:
    """Every device's agent `info` before anything is built (recorded with the device), or why it had none."""
    make_transport = options.make_transport or default_transports(store, options, "orch sweep (asking its runtime)")
    answers = board_infos(devices, make_transport)
    results = ResultsStore(engine)
    for device in devices:
        info = answers.get(device.name)
        if isinstance(info, dict):
            results.upsert_device(device.name, device.kind, info)
    return answers


def benchmark(loaded: LoadedRecipe, variants: list[BuiltVariant], evaluation: str | None,
              devices: list[DeviceSpec], engine: Engine, store: ArtifactStore, observer: SweepObserver,
              kind: str, options: SweepOptions, failures: list[FailedVariant] | None = None) -> SweepReport:
    """Run and record the jobs of built variants on the devices (a sweep without its build); the jobs of
    variants that failed to build are recorded as errors saying why."""
    recipe = loaded.recipe
    source = pipeline_source(loaded, variants, store)
    queued = [queue_job(recipe, job, evaluation, source) for job in plan_jobs(recipe, variants, devices)]
    pending = not_measured_yet(engine, recipe.name, queued) if options.skip_done else queued
    unbuilt = unbuilt_jobs(recipe, failures or [], devices)
    results = ResultsStore(engine)
    report = SweepReport(sweep_id=results.start_sweep(recipe.name, loaded.path, loaded.sha256,
                                                      [d.name for d in devices], len(pending) + len(unbuilt),
                                                      kind=kind),
                         jobs_total=len(pending) + len(unbuilt), jobs_skipped=len(queued) - len(pending),
                         failed_builds=list(failures or []))
    queues = [(device, [q for q in pending if q.job.device == device]) for device in devices]
    queues = [(device, items) for device, items in queues if items]
    observer.bench_started(len(pending))
    for device, items in queues:
        observer.board_planned(device.name, len(items))
    holder = (f"{getpass.getuser()}@{socket.gethostname()} (orch pid {os.getpid()}, "
              f"sweep {report.sweep_id} of {recipe.name})")
    make_transport = options.make_transport or default_transports(store, options, holder)
    recorder = Recorder(results, engine, report, observer, options.frames_dir or store.root.parent / "frames")
    for device, variant_id, spec, reason in unbuilt:
        recorder.record_unbuilt(device, variant_id, spec, reason)
    try:
        report.boards = run_boards(queues, make_transport, options.retry, recorder.handle, admit=Preflight(store))
    except KeyboardInterrupt:
        report.status = "interrupted"
        results.finish_sweep(report.sweep_id, report.status)
        raise Interrupted(f"sweep {report.sweep_id} interrupted after {report.jobs_done} of {report.jobs_total} "
                          "jobs; every result measured so far is kept") from None
    report.status = "finished"
    results.finish_sweep(report.sweep_id, report.status)
    return report


def pipeline_source(loaded: LoadedRecipe, variants: list[BuiltVariant], store: ArtifactStore
                    ) -> dict[str, Any] | None:
    """benchmark.pipeline's source, put in the artifact store for the boards (None without pipeline jobs); a
    pipeline on a recipe none of whose variants is a detector is a located error."""
    pipeline = loaded.recipe.benchmark.pipeline
    if pipeline is None:
        return None
    if variants and not any("detector" in variant.meta for variant in variants):
        raise loaded.error_at(("benchmark", "pipeline"), "runs detectors, and this recipe's model is not one "
                                                         "(give model.detection, on detection data)")
    return ship_source(store, pipeline_source_path(loaded) or pipeline.source)


def pipeline_source_path(loaded: LoadedRecipe) -> Path | None:
    """The file or folder benchmark.pipeline.source names on this machine (None: no pipeline, or a camera); a
    located error when it is not there."""
    pipeline = loaded.recipe.benchmark.pipeline
    if pipeline is None or pipeline.camera:
        return None
    path = loaded.resolve(pipeline.source)
    if not (path.is_dir() or path.is_file()):
        raise loaded.error_at(("benchmark", "pipeline", "source"),
                              f"{path} is not an image folder or a video file on this machine")
    return path


def unbuilt_jobs(recipe: Recipe, failures: list[FailedVariant],
                 devices: list[DeviceSpec]) -> list[tuple[DeviceSpec, str, dict[str, Any], str]]:
    """The jobs of variants that failed to build: (device, variant id, run configuration, why), one per job the
    variant would have had (device x thread count x repeat)."""
    bench = recipe.benchmark
    return [(device, failure.key,
             {"providers": providers_for(bench, device.board.providers if device.board else None),
              "intra_op_threads": threads, "inter_op_threads": 1, "graph_optimization": bench.graph_optimization},
             f"build failed at {failure.step}: {failure.reason}")
            for failure in failures for device in devices for threads in bench.threads
            for _ in range(bench.repeat)]


def not_measured_yet(engine: Engine, recipe_name: str, queued: list[QueuedJob[Job]]) -> list[QueuedJob[Job]]:
    """The jobs whose series (results/mapping.py: device, variant, run configuration) has fewer ok results from
    this recipe's sweeps than the job's repeat number: the n-th repeat of a job is done when n ok results exist."""
    ok_counts = ok_results_by_series(engine, recipe_name)
    return [q for q in queued
            if ok_counts.get(series_identity(q.job.device.name, q.job.variant.sha256, json.loads(q.spec_json)), 0)
            < q.job.repeat]


def default_transports(store: ArtifactStore, options: SweepOptions, holder: str) -> TransportFactory:
    """Local devices run jobs as child processes; boards through SSH."""

    def make(device: DeviceSpec, on_note: Any) -> Transport:
        if device.kind == "local":
            return LocalTransport(store.root)
        from orchestrator.fleet.transport import SshTransport

        if device.board is None or options.ssh is None:
            raise DeviceError(f"{device.name}: not an inventory board, or no SSH settings")
        return SshTransport(device.board, options.ssh, store.root, holder=holder,
                            wait_for_lock=options.wait_for_lock, on_note=on_note)

    return make


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
