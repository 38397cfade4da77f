"""Build every variant of a recipe, reusing whatever an earlier build already made.

A step's cache key is sha256(parent key, step name, step version, params):
its lineage. ONNX outputs are looked up in the store's cache index and torch
outputs in its checkpoints, so building a recipe twice with nothing changed
runs no step, and changing one axis rebuilds only what depends on it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.artifacts import ArtifactStore, npz_bytes
from orchestrator.builder import STEPS, OnnxNode, TorchNode, checkpoint
from orchestrator.builder.context import BuildContext
from orchestrator.errors import BuildError, ModelSourceError, first_line
from orchestrator.recipes import LoadedRecipe, Step, VariantPlan, expand
from orchestrator.runtimes import Runtime

if TYPE_CHECKING:
    from orchestrator.builder.executors import BuildExecutor

# The parts of a detector's evaluation settings that run it anywhere (BuiltVariant.meta["detector"]).
DETECTOR_FIELDS = ("preprocess", "detection", "class_map", "labels")


@dataclass(frozen=True)
class BuiltVariant:
    """One built variant: its artifact id (sha256 of the ONNX bytes) and how it came to be."""

    name: str
    sha256: str
    axes: dict[str, Any]
    lineage: list[dict[str, Any]]
    meta: dict[str, Any]
    file_size_bytes: int
    steps_run: int

    @property
    def build_s(self) -> float:
        """Wall time of every step in its lineage, cached or not."""
        return sum(step["wall_s"] for step in self.lineage)


@dataclass(frozen=True)
class FailedVariant:
    """A variant whose build failed at a step after its model source: the step, why (one line), and the id it
    is recorded under (it has no artifact: the lineage key of its last step)."""

    name: str
    key: str
    axes: dict[str, Any]
    steps: list[dict[str, Any]]
    step: str
    reason: str


class StepFailed(Exception):
    """A build step that failed for one variant (carried up to Builder.build, which turns it into a FailedVariant)."""

    def __init__(self, step: str, reason: str):
        super().__init__(f"{step}: {reason}")
        self.step, self.reason = step, reason


def adopt(node: TorchNode | OnnxNode, parent: TorchNode | OnnxNode | None, step: Step, version: str, key: str,
          wall_s: float, extra: dict[str, Any] | None = None) -> None:
    """Give a step's output its meta: its parent's, with the step's own merged over it and the step's lineage
    record (with `extra`, e.g. which worker ran it) appended."""
    inherited = dict(parent.meta) if parent is not None else {}
    inherited.update(node.meta)
    # The step's own figures (e.g. an iterative schedule's accuracy per iteration) also go in its
    # lineage record, which the results database keeps.
    record = {"step": step.name, "version": version, "params": step.params, "key": key,
              "wall_s": round(wall_s, 4), "meta": node.meta, **(extra or {})}
    inherited["lineage"] = list(inherited.get("lineage", [])) + [record]
    node.meta = inherited


def step_key(parent_key: str | None, step: Step) -> str:
    impl = STEPS.get(step.name)
    body = {"parent": parent_key, "step": step.name, "version": impl.version, "params": step.params}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def failed_variant(plan: VariantPlan, key: str, failed: StepFailed) -> FailedVariant:
    """The FailedVariant of `plan`, whose last step has lineage key `key`, failed at `failed`."""
    return FailedVariant(name=plan.name, key=key, axes=plan.axes,
                         steps=[{"step": step.name, "params": step.params} for step in plan.steps],
                         step=failed.step, reason=failed.reason)


class Builder:
    """Builds a recipe's variants into an artifact store, for the `target` onnxruntime when one is given."""

    def __init__(self, loaded: LoadedRecipe, store: ArtifactStore, target: Runtime | None = None):
        self.loaded = loaded
        self.store = store
        self.target = target
        self.context = BuildContext(loaded, store, target)
        self.context.base_model = self._base_model
        self._memo: dict[str, TorchNode | OnnxNode] = {}
        self._failed: dict[str, StepFailed] = {}
        self.failures: list[FailedVariant] = []
        self.steps_run = 0

    def plans(self) -> list[VariantPlan]:
        return expand(self.loaded, self.target)

    def build(self, plan: VariantPlan) -> BuiltVariant | FailedVariant:
        """Build one variant (and whatever of its lineage is not cached yet).

        A step after the model source that fails (BuildError, or ModelSourceError for what that one variant asks
        of the model) fails only this variant, and every variant sharing that step: the result says which step
        and why. A failure of the source itself (training, importing the model) is every variant's: it is raised.
        """
        before = self.steps_run
        keys: list[str] = []
        for step in plan.steps:
            keys.append(step_key(keys[-1] if keys else None, step))
        try:
            node = self._materialize(plan.steps, keys, len(plan.steps) - 1)
        except StepFailed as failed:
            return failed_variant(plan, keys[-1], failed)
        if not isinstance(node, OnnxNode):
            raise BuildError(f"variant {plan.name}: its last step {plan.steps[-1].name} does not produce ONNX")
        meta = {k: v for k, v in node.meta.items() if k != "lineage"}
        if self.scored_as_detection:
            from orchestrator.builder.detection import evaluation_settings
            from orchestrator.builder.onnx_source import image_side

            # How a board scores this artifact: its pre-processing at its size, its decoder, its labels' classes.
            settings = evaluation_settings(self.context, str(self.store.path(node.sha256, ".onnx")),
                                           image_side(meta["input"]), meta.get("detection"))
            meta["evaluation"] = {key: value for key, value in settings.items() if key != "labels"}
            # What runs this detector outside a sweep (a pipeline job, `orch stream`): kept on its variants row.
            meta["detector"] = {"input": meta["input"], **{key: settings[key] for key in DETECTOR_FIELDS}}
        return BuiltVariant(name=plan.name, sha256=node.sha256, axes=plan.axes, lineage=node.meta["lineage"],
                            meta=meta,
                            file_size_bytes=self.store.path(node.sha256, ".onnx").stat().st_size,
                            steps_run=self.steps_run - before)

    def build_all(self, observer: BuildObserver | None = None) -> list[BuiltVariant]:
        """Every variant of the recipe that builds, telling `observer` of each variant as it is built or fails;
        the ones that failed are kept in `failures`."""
        built: list[BuiltVariant] = []
        for plan in self.plans():
            variant = self.build(plan)
            if isinstance(variant, FailedVariant):
                self.failures.append(variant)
                if observer:
                    observer.variant_failed(variant)
                continue
            built.append(variant)
            if observer:
                observer.variant_built(variant)
        return built

    def _base_model(self) -> object:
        """The trained model every variant of this recipe starts from (its first step)."""
        first = self.plans()[0].steps[0]
        node = self._materialize((first,), [step_key(None, first)], 0)
        if not isinstance(node, TorchNode):
            raise BuildError("this recipe's model source is not a torch model")
        return node.model

    @property
    def scored_as_detection(self) -> bool:
        """True when this recipe's variants are scored by average precision (a detector on detection data)."""
        from orchestrator.builder.evaluate import host_metric

        return host_metric(self.context) not in (None, "top1")

    def evaluation_set(self) -> str | None:
        """The test split as a content-addressed .npz for on-device scoring; its sha256: arrays x, y for top-1, a
        DetectionSet (agent/detection/evaluate.py) for a detector.

        None when the data set has nothing to score against (unlabelled folders, detection data without a detector).
        """
        splits = self.context.splits
        if self.scored_as_detection:
            return self.store.put(npz_bytes(**self.context.detection_set.to_arrays()), ".npz")
        if splits.task != "classification" or not len(splits.test_y) or int(splits.test_y.min()) < 0:
            return None
        return self.store.put(npz_bytes(x=splits.test_x, y=splits.test_y), ".npz")

    # -- internals -----------------------------------------------------------

    def _materialize(self, steps: tuple[Step, ...], keys: list[str], index: int) -> TorchNode | OnnxNode:
        key, step = keys[index], steps[index]
        if key in self._memo:
            return self._memo[key]
        if key in self._failed:
            raise self._failed[key]
        impl = STEPS.get(step.name)
        # A step that is cheap and deterministic from its parent (fold_bn, sparsify) is not
        # checkpointed: when a child needs it again, it is re-run from its parent.
        kept = impl.produces == "onnx" or getattr(impl, "checkpoint", True)
        node = self._load_cached(impl.produces, key) if kept else None
        if node is None:
            parent = self._materialize(steps, keys, index - 1) if index > 0 else None
            started = time.perf_counter()
            try:
                node = impl.run(self.context, parent, step.params)
            except (BuildError, ModelSourceError) as exc:
                if index == 0:
                    raise  # the model source: no variant can be built
                self._failed[key] = StepFailed(step.name, first_line(exc))
                raise self._failed[key] from exc
            adopt(node, parent, step, impl.version, key, time.perf_counter() - started)
            if kept:
                self._save(node, key)
            self.steps_run += 1
        self._memo[key] = node
        return node

    def _load_cached(self, produces: str, key: str) -> TorchNode | OnnxNode | None:
        if produces == "onnx":
            entry = self.store.cached(key)
            return OnnxNode(entry["sha256"], entry["meta"]) if entry else None
        loaded = checkpoint.load(self.context.new_model(), self.store.checkpoint_path(key))
        return TorchNode(*loaded) if loaded else None

    def _save(self, node: TorchNode | OnnxNode, key: str) -> None:
        if isinstance(node, OnnxNode):
            self.store.remember(key, node.sha256, ".onnx", node.meta)
            return
        checkpoint.save(node.model, self.store.checkpoint_path(key), node.meta)


class BuildObserver(Protocol):
    """Progress events of a build."""

    def build_started(self, total: int) -> None: ...
    def variant_built(self, variant: BuiltVariant) -> None: ...
    def variant_failed(self, variant: FailedVariant) -> None: ...


@dataclass
class BuildOutcome:
    """The variants a build produced, the ones that failed, how many steps it ran, and the evaluation set it made.

    recipe: the recipe's name
    evaluation: sha256 of the test split as an .npz in the store, for on-device accuracy (build_recipe's
    `evaluation`), None when not asked for or when the data set has no class labels to score against
    target: the onnxruntime every variant was built for (None: none was targeted)
    """

    recipe: str
    variants: list[BuiltVariant]
    steps_run: int
    evaluation: str | None = None
    failures: list[FailedVariant] = field(default_factory=list)
    target: Runtime | None = None


def build_recipe(loaded: LoadedRecipe, store: ArtifactStore, observer: BuildObserver | None = None,
                 evaluation: bool = False, target: Runtime | None = None,
                 executor: BuildExecutor | None = None) -> BuildOutcome:
    """Build every variant of a recipe (reusing the cache) for the `target` onnxruntime if one is given, telling
    `observer` as each is built or fails (from this thread, as soon as each is done); with `evaluation`, also put
    the test split in the store for on-device scoring.

    `executor` is where steps run (builder/executors.py `parse_executor`): None or inline, here, one after the
    other; processes or Ray, independent branches of the lineage graph at the same time.
    """
    builder = Builder(loaded, store, target)
    plans = builder.plans()
    if observer:
        observer.build_started(len(plans))
    from orchestrator.builder.dispatch import build_with
    from orchestrator.builder.executors import InlineExecutor

    if executor is None or isinstance(executor, InlineExecutor):
        built = builder.build_all(observer)
    else:
        built = build_with(builder, executor, observer)
    return BuildOutcome(loaded.recipe.name, built, builder.steps_run,
                        builder.evaluation_set() if evaluation and built else None, builder.failures, target)
