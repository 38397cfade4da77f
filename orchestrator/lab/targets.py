"""The onnxruntime a sweep builds for, and the pre-flight that keeps a board from being sent what it cannot load.

`target_runtime: auto` asks every board of the sweep for its runtime (its agent's `info`, agent/runtime.py)
before anything is built, and builds for the oldest (runtimes.oldest); a release ("1.16") is built for as
orch knows it; absent, nothing is targeted. Whatever was built, each board's pre-flight compares every
variant with that board's runtime before sending it (runtimes.refusal): a variant the board cannot load is
recorded for it as `error: refused before sending: ...`, and the board goes on with the rest.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orchestrator.artifacts import ArtifactStore
from orchestrator.errors import OrchError
from orchestrator.fleet.devices import DeviceSpec
from orchestrator.fleet.scheduler import QueuedJob, TransportFactory
from orchestrator.recipes import LoadedRecipe
from orchestrator.runtimes import Requirements, Runtime, oldest, refusal, requirements


def board_infos(devices: list[DeviceSpec], make_transport: TransportFactory) -> dict[str, dict[str, Any] | str]:
    """Each device's agent `info` (or why it could not be had), asked of all devices at once."""

    def ask(device: DeviceSpec) -> dict[str, Any] | str:
        transport = make_transport(device, lambda note: None)
        try:
            transport.connect()
            transport.start()
            return transport.info()
        except (OrchError, OSError) as exc:
            return str(exc)
        finally:
            transport.close()

    if not devices:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(devices))) as pool:
        return dict(zip((d.name for d in devices), pool.map(ask, devices), strict=True))


def resolve_target(loaded: LoadedRecipe, infos: Callable[[], dict[str, dict[str, Any] | str]],
                   local: Callable[[], dict[str, Any]]) -> Runtime | None:
    """The runtime the recipe's `variants.target_runtime` names: `auto` is the oldest of the boards' (`infos`,
    asked only then; boards that could not be asked are left out) or, with no board, this machine's (`local`)."""
    setting = loaded.recipe.variants.target_runtime
    if setting is None:
        return None
    if setting != "auto":
        return Runtime.from_version(setting)
    answers = infos()
    runtimes = [r for info in answers.values() if isinstance(info, dict) and (r := Runtime.from_info(info))]
    if not answers:
        runtimes = [r for r in [Runtime.from_info(local())] if r is not None]
    return oldest(runtimes)


class Preflight:
    """The scheduler's admission check (fleet/scheduler.py `admit`): why a board cannot load a job's variant,
    or None. What a variant needs is read from its artifact once, whichever board asks first."""

    def __init__(self, store: ArtifactStore):
        self.store = store
        self._needs: dict[str, Requirements] = {}
        self._lock = threading.Lock()

    def __call__(self, device: DeviceSpec, info: dict[str, Any], item: QueuedJob[Any]) -> str | None:
        runtime = Runtime.from_info(info)
        if runtime is None:  # an agent that does not say what it loads: let the board itself decide
            return None
        spec = json.loads(item.spec_json)
        return refusal(self.needs(spec["artifact_sha256"]), runtime, list(spec.get("providers") or []),
                       device.name)

    def needs(self, sha256: str) -> Requirements:
        with self._lock:
            if sha256 not in self._needs:
                import onnx

                self._needs[sha256] = requirements(onnx.load(str(self.store.path(sha256, ".onnx"))))
            return self._needs[sha256]
