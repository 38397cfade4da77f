"""A sweep: build a recipe's variants, run every (variant x device x run config) job, record each result.

A sweep streams: each variant's jobs go to the boards' queues as soon as it is built, so boards measure while
the rest builds (lab/streaming.py runs the build in a thread of its own). The `local` device is this machine,
whose timings a build would disturb: its jobs wait for the build to end, unless `overlap_local`. A variant that
fails to build is recorded (each of its jobs an error saying why) and never holds up the others.

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
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from orchestrator.artifacts import ArtifactStore
from orchestrator.builder.executors import BuildExecutor
from orchestrator.builder.pipeline import Builder, BuildOutcome, BuiltVariant, FailedVariant, build_recipe
from orchestrator.errors import DeviceError, Interrupted
from orchestrator.fleet.devices import DeviceSpec
from orchestrator.fleet.local import LocalTransport
from orchestrator.fleet.scheduler import (
    BoardPool,
    QueuedJob,
    RetryPolicy,
    Transport,
    TransportFactory,
    run_boards,
)
from orchestrator.fleet.ssh import SshSettings
from orchestrator.lab.jobs import Job, plan_jobs, queue_job
from orchestrator.lab.pipelines import ship_source
from orchestrator.lab.recording import JobTiming, Recorder, RecordingBuild, SweepObserver, SweepReport
from orchestrator.lab.settings import providers_for
from orchestrator.lab.streaming import (
    BuildBegan,
    BuildEnded,
    BuildThread,
    PostingBuild,
    VariantReady,
    VariantUnbuilt,
)
from orchestrator.lab.targets import Preflight, board_infos, resolve_target
from orchestrator.recipes import LoadedRecipe, Recipe
from orchestrator.results.mapping import series_identity
from orchestrator.results.queries import ok_results_by_series
from orchestrator.results.store import ResultsStore
from orchestrator.runtimes import Runtime

# What a sweep records and reports lives in lab/recording.py; it is imported from here as well.
__all__ = ["JobTiming", "Recorder", "RecordingBuild", "StreamingSweep", "SweepObserver", "SweepOptions", "SweepReport",
           "benchmark", "build_and_record", "run_sweep"]


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
    stream: queue each variant's jobs as soon as it is built (boards measure while the rest builds); False builds
        every variant before any job runs (the sequential sweep, kept to compare with)
    overlap_local: let the `local` device (this machine) measure while building (its timings share the CPU with
        the build); by default its jobs wait for the build to end
    build_executor: where the build runs its steps (builder/executors.py: inline, local processes or a Ray
        cluster; None: inline)
    """

    skip_done: bool = True
    ssh: SshSettings | None = None
    wait_for_lock: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    make_transport: TransportFactory | None = None
    frames_dir: Path | None = None
    stream: bool = True
    overlap_local: bool = False
    build_executor: BuildExecutor | None = None


def build_and_record(loaded: LoadedRecipe, engine: Engine, store: ArtifactStore,
                     observer: SweepObserver | None = None, evaluation: bool = False,
                     target: Runtime | None = None, executor: BuildExecutor | None = None) -> BuildOutcome:
    """Build a recipe's variants (reusing the cache) for the `target` onnxruntime if one is given, with `executor`
    (None: inline), recording each in the results database as it is built."""
    recording = RecordingBuild(ResultsStore(engine), loaded.recipe.name, observer or SweepObserver())
    result = build_recipe(loaded, store, recording, evaluation=evaluation, target=target, executor=executor)
    (observer or SweepObserver()).build_finished()
    return result


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
    if options.stream:
        report = StreamingSweep(loaded, devices, engine, store, observer, kind, options).run(target)
    else:
        built = build_and_record(loaded, engine, store, observer,
                                 evaluation=loaded.recipe.benchmark.accuracy == "full_test_set", target=target,
                                 executor=options.build_executor)
        if loaded.recipe.benchmark.accuracy == "full_test_set" and built.variants and built.evaluation is None:
            raise no_test_split(loaded)
        report = benchmark(loaded, built.variants, built.evaluation, devices, engine, store, observer, kind,
                           options, failures=built.failures)
    report.target = target
    return report


def no_test_split(loaded: LoadedRecipe) -> Exception:
    """The located error of benchmark.accuracy full_test_set on a data set with nothing to score against."""
    return loaded.error_at(("benchmark", "accuracy"), "is full_test_set, but the data set has no labelled test "
                                                      "split to score on the devices (an unlabelled folder, or "
                                                      "detection data without model.detection): set "
                                                      "accuracy: none to measure without it")


def job_inputs(loaded: LoadedRecipe, store: ArtifactStore, target: Runtime | None,
               first: BuiltVariant) -> tuple[str | None, dict[str, Any] | None]:
    """What every job of a sweep needs besides its variant, from the recipe and its data (`first`: the first
    variant built, which tells whether the recipe's model is a detector): the evaluation set's sha256
    (benchmark.accuracy full_test_set) and the pipeline source; the recipe's errors about either, located."""
    evaluation = None
    if loaded.recipe.benchmark.accuracy == "full_test_set":
        evaluation = Builder(loaded, store, target).evaluation_set()
        if evaluation is None:
            raise no_test_split(loaded)
    return evaluation, pipeline_source(loaded, [first], store)


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
    make_transport = options.make_transport or default_transports(store, options,
                                                                   lock_holder(report.sweep_id, recipe.name))
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


def lock_holder(sweep_id: int, recipe_name: str) -> str:
    """Who holds a board's lock during a sweep, as another orchestrator waiting for it is told."""
    return f"{getpass.getuser()}@{socket.gethostname()} (orch pid {os.getpid()}, sweep {sweep_id} of {recipe_name})"


class StreamingSweep:
    """A streaming sweep in the sweep's thread (see the module docstring). The build thread posts each variant;
    this records it, queues its jobs on the boards at once (the `local` device's when the build is over, unless
    overlap_local) and records every result as it comes. The sweep's row starts with the first variant built (or
    the build's end), so a recipe error found at the first variant leaves no sweep behind, as before any build."""

    def __init__(self, loaded: LoadedRecipe, devices: list[DeviceSpec], engine: Engine, store: ArtifactStore,
                 observer: SweepObserver, kind: str, options: SweepOptions):
        self.loaded, self.devices, self.engine, self.store = loaded, devices, engine, store
        self.observer, self.kind, self.options = observer, kind, options
        self.results = ResultsStore(engine)
        self.report = SweepReport(sweep_id=0, jobs_total=0)
        self.recorder = Recorder(self.results, engine, self.report, observer,
                                 options.frames_dir or store.root.parent / "frames")
        make_transport = options.make_transport or (lambda device, note: default_transports(
            store, options, lock_holder(self.report.sweep_id, loaded.recipe.name))(device, note))
        self.pool = BoardPool(make_transport, options.retry, admit=Preflight(store))
        bench = loaded.recipe.benchmark
        # Jobs of one variant on one device: latency jobs, and a detector's pipeline jobs in each mode.
        self.per_variant = len(bench.threads) * bench.repeat * (1 + len(bench.pipeline.mode if bench.pipeline else []))
        self.expected: dict[str, int] = {device.name: 0 for device in devices}  # jobs still to run, per device
        self.shown: dict[str, int] = {}  # the totals the observer was last told, by device ("" for all)
        self.held: list[tuple[DeviceSpec, list[QueuedJob[Job]]]] = []  # the local device's, until the build ends
        self.waiting: list[FailedVariant] = []  # failed before the sweep's row existed
        self.unbuilt = 0
        self.ok_counts: dict[tuple[str, str, str], int] | None = None
        self.started = self.building = False
        self.error: BaseException | None = None
        self.cancel = threading.Event()

    def run(self, target: Runtime | None) -> SweepReport:
        """Build for `target` and measure at once; the report of the sweep (Interrupted on Ctrl-C, every result
        measured so far kept; a build's error is raised once the variants built before it are measured)."""
        executor = self.options.build_executor
        thread = BuildThread(lambda observer: build_recipe(self.loaded, self.store, observer, target=target,
                                                           executor=executor),
                             PostingBuild(self.pool.post, lambda first: job_inputs(self.loaded, self.store, target,
                                                                                   first), self.cancel))
        self.building = True
        thread.start()
        try:
            self.report.boards = self.pool.run(self.handle)
        except KeyboardInterrupt:
            self.cancel.set()
            raise self.interrupted() from None
        except BaseException:
            self.cancel.set()  # the build stops at its next variant
            raise
        thread.join()
        self.finish("finished" if self.error is None else "failed")
        if self.error is not None:
            raise self.error
        return self.report

    def handle(self, event: object) -> None:
        if isinstance(event, BuildBegan):
            self.observer.build_started(event.total)
            self.expected = {device.name: event.total * self.per_variant for device in self.devices}
        elif isinstance(event, VariantReady):
            self.variant_ready(event)
        elif isinstance(event, VariantUnbuilt):
            self.variant_unbuilt(event.failure)
        elif isinstance(event, BuildEnded):
            self.build_ended(event.error)
        else:
            self.recorder.handle(event)  # type: ignore[arg-type]  # the boards' events

    def variant_ready(self, event: VariantReady) -> None:
        """Record a built variant and queue its jobs not measured yet."""
        recipe = self.loaded.recipe
        self.results.upsert_variant(recipe.name, event.variant)
        self.observer.variant_built(event.variant)
        queued = [queue_job(recipe, job, event.evaluation, event.source)
                  for job in plan_jobs(recipe, [event.variant], self.devices)]
        if self.ok_counts is None:  # as they were before this sweep measured anything
            self.ok_counts = ok_results_by_series(self.engine, recipe.name)
        pending = not_measured_yet(self.engine, recipe.name, queued, self.ok_counts) if self.options.skip_done \
            else queued
        self.report.jobs_skipped += len(queued) - len(pending)
        by_device = {device.name: [q for q in pending if q.job.device.name == device.name] for device in self.devices}
        for device in self.devices:
            self.expected[device.name] -= self.per_variant - len(by_device[device.name])
        self.start()
        for device in self.devices:
            if by_device[device.name]:
                self.queue(device, by_device[device.name])
        self.totals_changed()

    def queue(self, device: DeviceSpec, items: list[QueuedJob[Job]]) -> None:
        if device.name not in self.shown:
            self.shown[device.name] = self.expected[device.name]
            self.observer.board_planned(device.name, self.expected[device.name])
        if self.building and device.kind == "local" and not self.options.overlap_local:
            if not self.held:
                self.observer.board_changed(device.name, "waiting", "for the build to end")
            self.held.append((device, items))  # builds would disturb this machine's timings
        else:
            self.pool.add(device, items)

    def variant_unbuilt(self, failure: FailedVariant) -> None:
        """Record a variant that failed to build, and each of its jobs as an error saying why."""
        self.results.record_failed_variant(self.loaded.recipe.name, failure)
        self.observer.variant_failed(failure)
        self.report.failed_builds.append(failure)
        for device in self.devices:
            self.expected[device.name] -= self.per_variant
        if self.started:
            self.record_unbuilt(failure)
        else:
            self.waiting.append(failure)
        self.totals_changed()

    def record_unbuilt(self, failure: FailedVariant) -> None:
        for device, variant_id, spec, reason in unbuilt_jobs(self.loaded.recipe, [failure], self.devices):
            self.recorder.record_unbuilt(device, variant_id, spec, reason)
            self.unbuilt += 1

    def build_ended(self, error: BaseException | None) -> None:
        """Release the local device's jobs and close the boards' queues (a failed build's variants built before
        it are still measured)."""
        self.building, self.error = False, error
        if error is None:
            self.start()
            self.observer.build_finished()
        for device, items in self.held:
            self.pool.add(device, items)
        self.held = []
        self.pool.close()

    def start(self) -> None:
        """The sweep's row, once: the first variant is built or the build is over."""
        if self.started:
            return
        self.started = True
        recipe = self.loaded.recipe
        self.report.sweep_id = self.results.start_sweep(recipe.name, self.loaded.path, self.loaded.sha256,
                                                        [d.name for d in self.devices], self.jobs_total, kind=self.kind)
        for failure in self.waiting:
            self.record_unbuilt(failure)
        self.waiting = []
        self.totals_changed()

    @property
    def jobs_total(self) -> int:
        """Jobs still expected to run, and the error results of variants not built: the sweep's jobs as far as
        known (exact once the build is over)."""
        bench = self.loaded.recipe.benchmark
        waiting = len(self.waiting) * len(self.devices) * len(bench.threads) * bench.repeat
        return sum(self.expected.values()) + self.unbuilt + waiting

    def totals_changed(self) -> None:
        """Tell the observer of totals that changed (all jobs, and the bars of boards that have jobs)."""
        self.report.jobs_total = self.jobs_total
        if not self.started:
            return
        totals = {"": sum(self.expected.values()), **{name: self.expected[name] for name in self.shown if name}}
        for name, total in totals.items():
            if self.shown.get(name) == total:
                continue
            self.shown[name] = total
            if name:
                self.observer.board_planned(name, total)
            else:
                self.observer.bench_started(total)

    def finish(self, status: str) -> None:
        self.report.status = status
        if self.started:
            self.results.finish_sweep(self.report.sweep_id, status, jobs_total=self.report.jobs_total)

    def interrupted(self) -> Interrupted:
        """The sweep marked interrupted; the error saying so (every result measured so far is kept)."""
        self.finish("interrupted")
        if not self.started:
            return Interrupted("sweep interrupted while building, before any job ran")
        return Interrupted(f"sweep {self.report.sweep_id} interrupted after {self.report.jobs_done} of "
                           f"{self.report.jobs_total} jobs; every result measured so far is kept")


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


def not_measured_yet(engine: Engine, recipe_name: str, queued: list[QueuedJob[Job]],
                     ok_counts: dict[tuple[str, str, str], int] | None = None) -> list[QueuedJob[Job]]:
    """The jobs whose series (results/mapping.py: device, variant, run configuration) has fewer ok results from
    this recipe's sweeps than the job's repeat number: the n-th repeat of a job is done when n ok results exist.
    `ok_counts`: those counts taken earlier (results/queries.py ok_results_by_series), else read now."""
    ok_counts = ok_results_by_series(engine, recipe_name) if ok_counts is None else ok_counts
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
