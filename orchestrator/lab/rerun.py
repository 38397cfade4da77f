"""Re-running one series' newest job on its own board: the hook `orch regress` confirms regressions with.

A re-run goes through the same scheduler as a sweep (fleet/scheduler.py): the board's lifecycle, its lock,
retries of transient faults, and the same list of files the job needs (lab/jobs.py).
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.artifacts import ArtifactStore
from orchestrator.errors import OrchError
from orchestrator.fleet.devices import resolve_devices
from orchestrator.fleet.inventory import Inventory
from orchestrator.fleet.scheduler import Event, JobFinished, QueuedJob, run_boards
from orchestrator.lab.jobs import job_files
from orchestrator.lab.sweep import SweepOptions, default_transports
from orchestrator.lab.targets import Preflight
from orchestrator.results.findings import SeriesRef
from orchestrator.results.regress import Rerun


def scheduled_rerun(store: ArtifactStore, inventory: Inventory, options: SweepOptions) -> Rerun:
    """A regress `rerun` hook: run the series' newest job spec again on the same device and return its result.

    A device that is gone from the inventory, a spec with no artifact, or a board that goes down gives None:
    the finding then stays a suspect rather than being confirmed or cleared on no evidence.
    """
    make_transport = options.make_transport or default_transports(store, options, holder="orch regress")

    def rerun(ref: SeriesRef) -> dict[str, Any] | None:
        spec = ref.spec or {}
        if not spec.get("artifact_sha256"):
            return None
        try:
            (device,) = resolve_devices(ref.device, inventory)
        except OrchError:
            return None
        item = QueuedJob(ref, f"{ref.device}: {ref.variant} (re-run)", json.dumps(spec), job_files(spec))
        results: list[dict[str, Any]] = []

        def keep_result(event: Event) -> None:
            if isinstance(event, JobFinished):
                results.append(event.result)

        run_boards([(device, [item])], make_transport, options.retry, keep_result, admit=Preflight(store))
        return results[0] if results else None

    return rerun
