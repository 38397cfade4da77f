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
import socket
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from agent.spec import ThermalGate
from orchestrator.artifacts import ArtifactStore
from orchestrator.build.pipeline import BuiltVariant, build_recipe
from orchestrator.errors import DeviceError, Interrupted
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
from orchestrator.jobs import Job, job_spec, plan_jobs
from orchestrator.recipes import LoadedRecipe, Recipe
from orchestrator.results.schema import Device, Result, Sweep
from orchestrator.results.store import ResultsStore


@dataclass
class SweepOptions:
    """How a sweep runs its jobs.

    skip_done: run only jobs with no ok result yet for the same recipe, variant, device, thread count,
        providers and graph optimization (so re-running a sweep resumes it); False runs every job (--force)
    ssh: how boards are reached (needed when a device is an inventory board)
    wait_for_lock: wait for a board that another orchestrator holds; False: that board is down for this sweep
    retry: retries of transient board faults before a board is marked down
    make_transport: builds each device's transport (default: local or SSH by the device's kind)
    """

    skip_done: bool = True
    ssh: SshSettings | None = None
    wait_for_lock: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    make_transport: TransportFactory | None = None


@dataclass
class JobTiming:
    """Where one job's time went: the orchestrator's wall time for it, the agent's for its process."""

    device: str
    wall_s: float
    agent_wall_s: float | None
    bytes_sent: int


@dataclass
class SweepReport:
    """What a sweep did: its id, how many jobs ended in each status, and how each board fared."""

    sweep_id: int
    jobs_total: int
    statuses: dict[str, int] = field(default_factory=dict)
    status: str = "running"
    jobs_skipped: int = 0
    boards: dict[str, BoardOutcome] = field(default_factory=dict)
    timings: list[JobTiming] = field(default_factory=list)

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


class SweepObserver(Protocol):
    """Progress events of a sweep (the CLI draws bars from them; tests may record them)."""

    def build_started(self, total: int) -> None: ...
    def variant_built(self, variant: BuiltVariant) -> None: ...
    def bench_started(self, total: int) -> None: ...
    def board_planned(self, device: str, total: int) -> None: ...
    def board_changed(self, device: str, state: str, note: str) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def job_finished(self, job: Job, result: dict[str, Any]) -> None: ...


class NullObserver:
    def build_started(self, total: int) -> None: ...
    def variant_built(self, variant: BuiltVariant) -> None: ...
    def bench_started(self, total: int) -> None: ...
    def board_planned(self, device: str, total: int) -> None: ...
    def board_changed(self, device: str, state: str, note: str) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def job_finished(self, job: Job, result: dict[str, Any]) -> None: ...


def run_sweep(loaded: LoadedRecipe, devices: list[DeviceSpec], engine: Engine, store: ArtifactStore,
              observer: SweepObserver | None = None, kind: str = "manual",
              options: SweepOptions | None = None) -> SweepReport:
    """Build, benchmark and record one recipe on the given devices."""
    observer = observer or NullObserver()
    options = options or SweepOptions()
    if options.ssh is None and options.make_transport is None and any(d.kind == "ssh" for d in devices):
        raise DeviceError("boards need SSH settings (SweepOptions.ssh)")
    built = build_recipe(loaded, store, engine, observer)
    evaluation = built.builder.evaluation_set() if loaded.recipe.benchmark.accuracy == "full_test_set" else None
    return benchmark(loaded, built.variants, evaluation, devices, engine, store, observer, kind, options)


def benchmark(loaded: LoadedRecipe, variants: list[BuiltVariant], evaluation: str | None,
              devices: list[DeviceSpec], engine: Engine, store: ArtifactStore, observer: SweepObserver,
              kind: str, options: SweepOptions) -> SweepReport:
    """Run and record the jobs of built variants on the devices (a sweep without its build)."""
    recipe = loaded.recipe
    queued = [queue_job(recipe, job, evaluation) for job in plan_jobs(recipe, variants, devices)]
    pending = not_measured_yet(engine, recipe.name, queued) if options.skip_done else queued
    results = ResultsStore(engine)
    report = SweepReport(sweep_id=results.start_sweep(recipe.name, loaded.path, loaded.sha256,
                                                      [d.name for d in devices], len(pending), kind=kind),
                         jobs_total=len(pending), jobs_skipped=len(queued) - len(pending))
    queues = [(device, [q for q in pending if q.job.device == device]) for device in devices]
    queues = [(device, items) for device, items in queues if items]
    observer.bench_started(len(pending))
    for device, items in queues:
        observer.board_planned(device.name, len(items))
    holder = (f"{getpass.getuser()}@{socket.gethostname()} (orch pid {os.getpid()}, "
              f"sweep {report.sweep_id} of {recipe.name})")
    make_transport = options.make_transport or default_transports(store, options, holder)
    recorder = Recorder(results, engine, report, observer)
    try:
        report.boards = run_boards(queues, make_transport, options.retry, recorder.handle)
    except KeyboardInterrupt:
        report.status = "interrupted"
        results.finish_sweep(report.sweep_id, report.status)
        raise Interrupted(f"sweep {report.sweep_id} interrupted after {report.jobs_done} of {report.jobs_total} "
                          "jobs; every result measured so far is kept") from None
    report.status = "finished"
    results.finish_sweep(report.sweep_id, report.status)
    return report


def queue_job(recipe: Recipe, job: Job, evaluation: str | None) -> QueuedJob:
    """A job with its agent spec (the board's preferences filling what the recipe leaves open) and files."""
    board = job.device.board
    spec = job_spec(recipe, job, evaluation, device_power=board.power if board else None)
    if board is not None:
        if board.providers and "providers" not in recipe.benchmark.model_fields_set:
            spec.providers = list(board.providers)
        if board.thermal is not None and recipe.benchmark.thermal.max_c is None:
            spec.thermal = ThermalGate(board.thermal.max_c, board.thermal.wait_timeout_s)
    files = [f"{job.variant.sha256}.onnx"] + ([f"{evaluation}.npz"] if evaluation else [])
    return QueuedJob(job, spec.to_json(), files)


def _resume_key(device: str, variant: str, spec: dict[str, Any]) -> tuple[str, str, int, str, str]:
    return device, variant, int(spec["intra_op_threads"]), ",".join(spec["providers"]), spec["graph_optimization"]


def not_measured_yet(engine: Engine, recipe_name: str, queued: list[QueuedJob]) -> list[QueuedJob]:
    """The jobs with no ok result yet (the n-th repeat of a job is done when n ok results exist)."""
    query = (select(Device.name, Result.variant_sha256, Result.threads, Result.providers,
                    Result.graph_optimization, func.count())
             .join(Device, Device.id == Result.device_id).join(Sweep, Sweep.id == Result.sweep_id)
             .where(Sweep.recipe_name == recipe_name, Result.status == "ok")
             .group_by(Device.name, Result.variant_sha256, Result.threads, Result.providers,
                       Result.graph_optimization))
    with Session(engine) as session:
        ok_counts = {tuple(row[:5]): int(row[5]) for row in session.execute(query)}
    return [q for q in queued
            if ok_counts.get(_resume_key(q.job.device.name, q.job.variant.sha256, json.loads(q.spec_json)), 0)
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

    def __init__(self, results: ResultsStore, engine: Engine, report: SweepReport, observer: SweepObserver):
        self.results, self.engine, self.report, self.observer = results, engine, report, observer
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
                self.record(item, {"schema": 1, "status": "error", "reasons": [],
                                   "error": f"not run: {event.device.name} is down: {event.outcome.reason}"})

    def record(self, item: QueuedJob, result: dict[str, Any]) -> None:
        job = item.job
        self.results.record_result(self.report.sweep_id, self.device_id(job.device), job.variant.sha256,
                                   json.loads(item.spec_json), result)
        status = str(result.get("status", "error"))
        self.report.statuses[status] = self.report.statuses.get(status, 0) + 1
        self.observer.job_finished(job, result)

    def device_id(self, device: DeviceSpec) -> int:
        """The device's row; a board never reached keeps what an earlier sweep learnt about it."""
        if device.name not in self.device_ids:
            with Session(self.engine) as session:
                known = session.scalar(select(Device.id).where(Device.name == device.name))
            self.device_ids[device.name] = known if known is not None else self.results.upsert_device(
                device.name, device.kind, {})
        return self.device_ids[device.name]

