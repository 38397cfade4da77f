"""Re-running one series' newest job on its own board: the hook `orch regress` confirms regressions with."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.artifacts import ArtifactStore
from orchestrator.errors import OrchError
from orchestrator.fleet.devices import resolve_devices
from orchestrator.fleet.inventory import Inventory
from orchestrator.results.findings import SeriesRef
from orchestrator.results.regress import Rerun
from orchestrator.sweep import SweepOptions, default_transports


def board_rerun(store: ArtifactStore, inventory: Inventory, options: SweepOptions) -> Rerun:
    """A regress `rerun` hook: run the series' newest job spec again on the same device and return its result.

    A device that is gone from the inventory, or a board that cannot be reached, gives None: the
    finding then stays a suspect rather than being confirmed or cleared on no evidence.
    """
    make_transport = default_transports(store, options, holder="orch regress")

    def rerun(ref: SeriesRef) -> dict[str, Any] | None:
        spec = ref.spec or {}
        if not spec.get("artifact_sha256"):
            return None
        try:
            (device,) = resolve_devices(ref.device, inventory)
        except OrchError:
            return None
        files = [f"{spec['artifact_sha256']}.onnx"]
        if spec.get("evaluation"):
            files.append(f"{spec['evaluation']['sha256']}.npz")
        transport = make_transport(device, lambda *_: None)
        try:
            transport.connect()
            transport.start()
            transport.ensure_files(files)
            result: dict[str, Any] = json.loads(transport.run(json.dumps(spec)))
            return result
        except (OrchError, OSError, ValueError):
            return None
        finally:
            transport.close()

    return rerun
