"""One build step as a unit of work that runs anywhere: what travels to a worker and what comes back.

A worker never reads the workstation's paths. Everything a step needs travels with it: the recipe's data
(`Shipment`: the data set's splits as arrays, images already re-read at the sizes the recipe asks for, a
detector's evaluation set) once per build, and per step its parameters and its parent node as bytes (a
weights-only checkpoint, or the ONNX file) (`StepJob`). The worker runs the step against a store in a
temporary folder of its own and sends back the output as bytes with its meta (`StepDone`); the workstation
writes them into its own store (temporary name, then rename). `run_step_job` is the same function for every
executor (builder/executors.py) and for the steps the workstation runs itself.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.artifacts import ArtifactStore, sha256_bytes
from orchestrator.builder import BuildStep, OnnxNode, TorchNode, checkpoint
from orchestrator.builder.context import BuildContext
from orchestrator.datasets import Splits
from orchestrator.errors import BuildError, ModelSourceError, first_line
from orchestrator.recipes import LoadedRecipe, Step
from orchestrator.runtimes import Runtime

# Model sources that read the user's files (an ONNX file, a weights file): always run on the workstation.
WORKSTATION_STEPS = frozenset({"import_onnx", "import_weights"})


def needs_workstation(step: Step) -> bool:
    """True for a step that reads the workstation's files or models: a model source read from a file, or
    distillation (its teacher is the workstation's base model or a weights file)."""
    distill = step.params.get("distill")
    return step.name in WORKSTATION_STEPS or bool(isinstance(distill, dict) and distill.get("teacher"))


@dataclass(frozen=True)
class Payload:
    """A node as it travels: ONNX bytes, or a checkpoint's tensors and its JSON sidecar; with its meta.

    kind: "onnx" or "torch"
    data: the ONNX file, or the checkpoint's tensors (checkpoint.py)
    meta: the node's meta, lineage included
    sha256: the ONNX file's sha256 (onnx only)
    sidecar: the checkpoint's structure-and-meta JSON (torch only)
    """

    kind: str
    data: bytes
    meta: dict[str, Any]
    sha256: str | None = None
    sidecar: bytes | None = None


@dataclass(frozen=True)
class Shipment:
    """What every step of one build may need besides its parent, sent to each worker once.

    loaded: the recipe (its path is only named in messages, never read)
    target: the onnxruntime the variants are built for, if any
    splits: the data set's splits as arrays (without `at_size`, which re-reads the workstation's files)
    resized: (split, size) -> images re-read at that size, for data sets that keep their files
    detection_set: a detector's test split as boards score it, when the recipe scores average precision
    preprocess: an ONNX source's pre-processing (BuildContext.preprocess), worked out on the workstation
    """

    loaded: LoadedRecipe
    target: Runtime | None
    splits: Splits
    resized: dict[tuple[str, int], Any] = field(default_factory=dict)
    detection_set: Any = None
    preprocess: Any = None


@dataclass(frozen=True)
class StepJob:
    """One step to run: its lineage key, the step and its implementation, its parent (None for the first)."""

    key: str
    step: Step
    impl: BuildStep
    parent: Payload | None


@dataclass(frozen=True)
class StepDone:
    """What came back from one step: its output, or why it failed (one line, and the exception's class name)."""

    key: str
    payload: Payload | None = None
    failure: str | None = None
    error: str | None = None


class WorkerContext(BuildContext):
    """A BuildContext whose data came in a Shipment and whose store is a temporary folder of the worker's."""

    def __init__(self, shipment: Shipment, store: ArtifactStore):
        super().__init__(shipment.loaded, store, shipment.target)
        self.__dict__["splits"] = shipment.splits
        self.__dict__["preprocess"] = shipment.preprocess
        self._resized.update(shipment.resized)
        if shipment.detection_set is not None:
            self.__dict__["detection_set"] = shipment.detection_set

    def images(self, split: str, size: int | None) -> Any:
        if size is not None and size != self.recipe.dataset.image_size and (split, size) not in self._resized \
                and self.recipe.dataset.root is not None:
            raise BuildError(f"{split} images at {size} px were not shipped to this worker: build this recipe "
                             "with --build-executor inline")
        return super().images(split, size)

    def teacher(self, source: str) -> Any:
        raise BuildError("distillation runs on the workstation, not on a build worker")


def make_shipment(context: BuildContext, sizes: set[int], detection: bool) -> Shipment:
    """The recipe's data for workers: its splits as arrays, re-read at `sizes` when the data set keeps files."""
    splits = context.splits
    resized = {(split, size): splits.at_size(split, size) for split in ("train", "test") for size in sorted(sizes)
               if splits.at_size is not None and size != context.recipe.dataset.image_size}
    return Shipment(context.loaded, context.target, dataclasses.replace(splits, at_size=None), resized,
                    context.detection_set if detection else None, context.preprocess)


def worker_identity() -> dict[str, Any]:
    """Which process ran a step: host, pid, uid (kept in the step's lineage record)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "uid": os.getuid()}


def set_threads(threads: int) -> None:
    """Torch's intra-op threads in this worker (so that workers together do not oversubscribe the cores); torch
    is not imported for it (a step that never needs torch does not pay for importing it): one not imported yet
    reads OMP_NUM_THREADS when it is."""
    os.environ["OMP_NUM_THREADS"] = str(max(1, threads))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(max(1, threads))


def run_step_job(job: StepJob, make_context: Callable[[ArtifactStore], BuildContext],
                 identity: dict[str, Any] | None = None) -> StepDone:
    """Run one step in a temporary store; its output as a Payload, or its failure as one line."""
    from orchestrator.builder.pipeline import adopt

    with tempfile.TemporaryDirectory(prefix="orch-step-") as folder:
        store = ArtifactStore(folder)
        context = make_context(store)
        try:
            parent = _unpack(job.parent, context, store)
            started = time.perf_counter()
            node = job.impl.run(context, parent, job.step.params)
        except (BuildError, ModelSourceError) as exc:
            return StepDone(job.key, failure=first_line(exc), error=type(exc).__name__)
        adopt(node, parent, job.step, job.impl.version, job.key, time.perf_counter() - started,
              {"worker": identity or worker_identity()})
        return StepDone(job.key, payload=_pack(node, store))


def run_on_worker(shipment: Shipment, job: StepJob, threads: int, node: str | None = None) -> StepDone:
    """The task every remote executor runs: one step with the shipped data, `threads` torch threads."""
    set_threads(threads)
    identity = {**worker_identity(), **({"node": node} if node else {})}
    return run_step_job(job, lambda store: WorkerContext(shipment, store), identity)


def _unpack(payload: Payload | None, context: BuildContext, store: ArtifactStore) -> TorchNode | OnnxNode | None:
    if payload is None:
        return None
    if payload.kind == "onnx":
        sha = store.put(payload.data, ".onnx")
        if sha != payload.sha256:
            raise BuildError(f"the parent ONNX file arrived damaged (sha256 {sha}, expected {payload.sha256})")
        return OnnxNode(sha, dict(payload.meta))
    path = store.checkpoint_path("parent")
    checkpoint.write_bytes(path, payload.data, payload.sidecar or b"")
    loaded = checkpoint.load(context.new_model(), path)
    if loaded is None:
        raise BuildError("the parent checkpoint arrived incomplete")
    return TorchNode(*loaded)


def _pack(node: TorchNode | OnnxNode, store: ArtifactStore) -> Payload:
    if isinstance(node, OnnxNode):
        data = store.path(node.sha256, ".onnx").read_bytes()
        if sha256_bytes(data) != node.sha256:
            raise BuildError(f"step output {node.sha256} is damaged in the worker's store")
        return Payload("onnx", data, node.meta, sha256=node.sha256)
    path = store.checkpoint_path("output")
    checkpoint.save(node.model, path, node.meta)
    return Payload("torch", path.read_bytes(), node.meta, sidecar=Path(path).with_suffix(".json").read_bytes())
