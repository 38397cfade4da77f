"""Build a recipe's lineage graph on an executor: the graph and the cache decide what runs, the executor only where.

Every variant is a chain of steps; chains that share a prefix share its nodes (one lineage key, one node), so
the recipe is a tree. A step is dispatched once its parent exists (in the store, or held in memory for a step
that is not checkpointed) and only when the cache lacks its key; independent branches run at the same time.
Outputs come back as bytes and are written into the workstation's store (temporary name, then rename) before a
child is dispatched or a variant reported. Variants are reported to the observer from the calling thread as soon
as each one is done, in whatever order they finish.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from orchestrator.builder import STEPS, BuildStep, checkpoint
from orchestrator.builder.context import BuildContext
from orchestrator.builder.pipeline import (
    BuildObserver,
    BuiltVariant,
    StepFailed,
    failed_variant,
    step_key,
)
from orchestrator.builder.remote import (
    Payload,
    Shipment,
    StepDone,
    StepJob,
    make_shipment,
    needs_workstation,
    run_step_job,
)
from orchestrator.errors import BuildError, ModelSourceError, first_line
from orchestrator.recipes import Step, VariantPlan

if TYPE_CHECKING:
    from orchestrator.artifacts import ArtifactStore
    from orchestrator.builder.pipeline import Builder


class Executor(Protocol):
    """Where steps run: `open` once with the build's data (made by `shipment()`, when the executor is ready for
    it: a cluster is joined first, so its workers start while the data is read), `submit` each step, `close` at
    the end."""

    name: str

    def open(self, shipment: Callable[[], Shipment]) -> None: ...
    def submit(self, job: StepJob) -> Future[StepDone]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class GraphNode:
    """One step of the lineage graph: its key, the step, its implementation, its parent's key and depth."""

    key: str
    step: Step
    impl: BuildStep
    parent: str | None
    index: int

    @property
    def kept(self) -> bool:
        """True when its output is kept in the store (ONNX, or a checkpointed torch step)."""
        return self.impl.produces == "onnx" or getattr(self.impl, "checkpoint", True)


def lineage_graph(plans: list[VariantPlan]) -> tuple[dict[str, GraphNode], dict[str, list[str]]]:
    """The nodes of every plan's chain by lineage key, and each plan's chain of keys (by plan name)."""
    nodes: dict[str, GraphNode] = {}
    chains: dict[str, list[str]] = {}
    for plan in plans:
        keys: list[str] = []
        for index, step in enumerate(plan.steps):
            key = step_key(keys[-1] if keys else None, step)
            nodes.setdefault(key, GraphNode(key, step, STEPS.get(step.name), keys[-1] if keys else None, index))
            keys.append(key)
        chains[plan.name] = keys
    return nodes, chains


class Dispatcher:
    """One build of a recipe's variants on an executor (build_with)."""

    def __init__(self, builder: Builder, executor: Executor):
        self.builder, self.store, self.executor = builder, builder.store, executor
        self.plans = builder.plans()
        self.nodes, self.chains = lineage_graph(self.plans)
        self.held: dict[str, Payload] = {}  # outputs of steps that are not kept in the store
        self.done: set[str] = set()
        self.failed: dict[str, StepFailed] = {}
        self.running: dict[Future[StepDone], str] = {}
        self.ran: set[str] = set()  # run by this build and not yet counted in a reported variant
        self.local = ThreadPoolExecutor(1, thread_name_prefix="orch-local-step")
        self.opened = False

    def run(self, observer: BuildObserver | None) -> list[BuiltVariant]:
        """Build every plan, reporting each variant as it is done or has failed."""
        todo = self._todo()
        pending = list(self.plans)
        built: list[BuiltVariant] = []
        try:
            while True:
                self._dispatch(todo)  # also fails the steps below a failed one, before they are reported
                pending = self._report(pending, built, observer)
                if not self.running:
                    break
                finished, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
                for future in finished:
                    self._receive(self.running.pop(future), future)
        finally:
            for future in self.running:
                future.cancel()
            self.local.shutdown(wait=True, cancel_futures=True)
        if pending:
            raise BuildError(f"{len(pending)} variants were neither built nor failed (first: {pending[0].name})")
        return built

    # -- what is there, what is wanted --------------------------------------------------------------------------

    def available(self, key: str) -> bool:
        """True when the step's output exists: built by this run, held, or in the store's cache."""
        if key in self.done or key in self.held:
            return True
        node = self.nodes[key]
        if not node.kept:
            return False
        if node.impl.produces == "onnx":
            hit = self.store.cached(key) is not None
        else:
            path = self.store.checkpoint_path(key)
            hit = path.exists() and path.with_suffix(".json").exists()
        if hit:
            self.done.add(key)
        return hit

    def _todo(self) -> list[str]:
        """Every key some variant needs that is not available, parents first."""
        wanted: dict[str, None] = {}
        for chain in self.chains.values():
            for key in reversed(chain):
                if key in wanted or self.available(key):
                    break
                wanted[key] = None
        return sorted(wanted, key=lambda key: self.nodes[key].index)

    # -- dispatching and receiving -------------------------------------------------------------------------------

    def _dispatch(self, todo: list[str]) -> None:
        for key in list(todo):
            node = self.nodes[key]
            if node.parent in self.failed:
                self.failed[key] = self.failed[node.parent]
            elif node.parent is None or self.available(node.parent):
                self._submit(node)
            else:
                continue
            todo.remove(key)

    def _submit(self, node: GraphNode) -> None:
        job = StepJob(node.key, node.step, node.impl, self._payload(node.parent) if node.parent else None)
        if needs_workstation(node.step):
            future = self.local.submit(run_step_job, job, self._local_context)
        else:
            if not self.opened:
                self.executor.open(self._shipment)
                self.opened = True
            future = self.executor.submit(job)
        self.running[future] = node.key

    def _receive(self, key: str, future: Future[StepDone]) -> None:
        node = self.nodes[key]
        try:
            done = future.result()
        except Exception as exc:  # the executor lost the step (a worker gone for good): this step fails
            done = StepDone(key, failure=f"{self.executor.name}: {first_line(exc)}", error=BuildError.__name__)
        if done.payload is None:
            reason = done.failure or "no output"
            if node.index == 0:  # the model source: no variant can be built
                raise (ModelSourceError if done.error == ModelSourceError.__name__ else BuildError)(reason)
            self.failed[key] = StepFailed(node.step.name, reason)
            return
        self._keep(node, done.payload)
        self.done.add(key)
        self.ran.add(key)
        self.builder.steps_run += 1

    def _keep(self, node: GraphNode, payload: Payload) -> None:
        """Write a step's output into the workstation's store (or hold it in memory when it is not kept)."""
        if not node.kept:
            self.held[node.key] = payload
        elif payload.kind == "onnx":
            sha = self.store.put(payload.data, ".onnx")
            if sha != payload.sha256:
                raise BuildError(f"{node.step.name}: its ONNX output arrived damaged (sha256 {sha})")
            self.store.remember(node.key, sha, ".onnx", payload.meta)
        else:
            checkpoint.write_bytes(self.store.checkpoint_path(node.key), payload.data, payload.sidecar or b"")

    def _payload(self, key: str) -> Payload:
        if key in self.held:
            return self.held[key]
        if self.nodes[key].impl.produces == "onnx":
            entry = self.store.cached(key)
            if entry is None:
                raise BuildError(f"{self.nodes[key].step.name}: its output left the store during the build")
            sha = str(entry["sha256"])
            return Payload("onnx", self.store.path(sha, ".onnx").read_bytes(), entry["meta"], sha256=sha)
        path = self.store.checkpoint_path(key)
        sidecar = path.with_suffix(".json").read_bytes()
        return Payload("torch", path.read_bytes(), json.loads(sidecar)["meta"], sidecar=sidecar)

    # -- contexts -------------------------------------------------------------------------------------------------

    def _shipment(self) -> Shipment:
        sizes = {int(node.step.params["image_size"]) for node in self.nodes.values()
                 if isinstance(node.step.params.get("image_size"), int)}
        return make_shipment(self.builder.context, sizes, self.builder.scored_as_detection)

    def _local_context(self, store: ArtifactStore) -> BuildContext:
        """A workstation step's context: the builder's, with a temporary store (the output comes back as bytes)."""
        context = BuildContext(self.builder.loaded, store, self.builder.target)
        context.base_model = self.builder.context.base_model
        for name in ("splits", "preprocess", "detection_set"):
            if name in self.builder.context.__dict__:
                context.__dict__[name] = self.builder.context.__dict__[name]
        return context

    # -- reporting ------------------------------------------------------------------------------------------------

    def _report(self, pending: list[VariantPlan], built: list[BuiltVariant],
                observer: BuildObserver | None) -> list[VariantPlan]:
        """Tell the observer of every pending variant now done or failed; the ones still pending."""
        still = []
        for plan in pending:
            chain = self.chains[plan.name]
            if chain[-1] in self.failed:
                variant = failed_variant(plan, chain[-1], self.failed[chain[-1]])
                self.builder.failures.append(variant)
                if observer:
                    observer.variant_failed(variant)
            elif self.available(chain[-1]):
                built.append(self._built(plan, chain))
                if observer:
                    observer.variant_built(built[-1])
            else:
                still.append(plan)
        return still

    def _built(self, plan: VariantPlan, chain: list[str]) -> BuiltVariant:
        variant = self.builder.build(plan)  # every step is in the store now: a cache hit
        if not isinstance(variant, BuiltVariant):
            raise BuildError(f"variant {plan.name}: built on the executor, then not found in the store")
        ran = self.ran.intersection(chain)
        self.ran -= ran
        return replace(variant, steps_run=len(ran))


def build_with(builder: Builder, executor: Executor, observer: BuildObserver | None = None) -> list[BuiltVariant]:
    """Every variant of the builder's recipe that builds, its steps run on `executor` (failures kept in
    builder.failures, as Builder.build_all does)."""
    try:
        return Dispatcher(builder, executor).run(observer)
    finally:
        executor.close()
