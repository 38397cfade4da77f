"""A sweep: build a recipe's variants, run every (variant x device x run config) job, record each result.

Every finished job is committed before the next starts, so an interrupt or a
crash keeps everything measured so far.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Engine

from orchestrator.artifacts import ArtifactStore
from orchestrator.build.pipeline import BuiltVariant, build_recipe
from orchestrator.errors import Interrupted
from orchestrator.fleet.devices import DeviceSpec
from orchestrator.fleet.local import LocalTransport
from orchestrator.jobs import Job, job_spec, plan_jobs
from orchestrator.recipes import LoadedRecipe
from orchestrator.results.store import ResultsStore


@dataclass
class SweepReport:
    """What a sweep did: its id and how many jobs ended in each status."""

    sweep_id: int
    jobs_total: int
    statuses: dict[str, int] = field(default_factory=dict)
    status: str = "running"

    @property
    def jobs_done(self) -> int:
        return sum(self.statuses.values())


class SweepObserver(Protocol):
    """Progress events of a sweep (the CLI draws bars from them; tests may record them)."""

    def build_started(self, total: int) -> None: ...
    def variant_built(self, variant: BuiltVariant) -> None: ...
    def bench_started(self, total: int) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def job_finished(self, job: Job, result: dict[str, Any]) -> None: ...


class NullObserver:
    def build_started(self, total: int) -> None: ...
    def variant_built(self, variant: BuiltVariant) -> None: ...
    def bench_started(self, total: int) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def job_finished(self, job: Job, result: dict[str, Any]) -> None: ...


def run_sweep(loaded: LoadedRecipe, devices: list[DeviceSpec], engine: Engine, store: ArtifactStore,
              observer: SweepObserver | None = None, kind: str = "manual") -> SweepReport:
    """Build, benchmark and record one recipe on the given devices."""
    observer = observer or NullObserver()
    recipe = loaded.recipe
    built = build_recipe(loaded, store, engine, observer)
    variants = built.variants
    evaluation = built.builder.evaluation_set() if recipe.benchmark.accuracy == "full_test_set" else None
    results = ResultsStore(engine)
    jobs = plan_jobs(recipe, variants, devices)
    report = SweepReport(sweep_id=results.start_sweep(recipe.name, loaded.path, loaded.sha256,
                                                      [d.name for d in devices], len(jobs), kind=kind),
                         jobs_total=len(jobs))
    observer.bench_started(len(jobs))
    try:
        for device in devices:
            transport = LocalTransport(store.root)
            device_id = results.upsert_device(device.name, device.kind, transport.info())
            for job in (j for j in jobs if j.device == device):
                observer.job_started(job)
                spec_json = job_spec(recipe, job, evaluation).to_json()
                result = json.loads(transport.run(spec_json))
                results.record_result(report.sweep_id, device_id, job.variant.sha256,
                                      json.loads(spec_json), result)
                report.statuses[result["status"]] = report.statuses.get(result["status"], 0) + 1
                observer.job_finished(job, result)
            transport.close()
    except KeyboardInterrupt:
        report.status = "interrupted"
        results.finish_sweep(report.sweep_id, report.status)
        raise Interrupted(f"sweep {report.sweep_id} interrupted after {report.jobs_done} of {report.jobs_total} "
                          "jobs; every result measured so far is kept") from None
    report.status = "finished"
    results.finish_sweep(report.sweep_id, report.status)
    return report
