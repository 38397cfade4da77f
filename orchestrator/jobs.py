"""Jobs: what one measurement is (a variant on a device with one run configuration) and its agent spec."""

from __future__ import annotations

from dataclasses import dataclass

from agent.spec import EvaluationSpec, Gate, InputSpec, JobSpec
from orchestrator.build.pipeline import BuiltVariant
from orchestrator.fleet.devices import DeviceSpec
from orchestrator.recipes import Recipe


@dataclass(frozen=True)
class Job:
    """One measurement to make: a variant on a device with one thread count."""

    variant: BuiltVariant
    device: DeviceSpec
    threads: int

    @property
    def label(self) -> str:
        return f"{self.device.name}: {self.variant.name} x{self.threads}"


def job_spec(recipe: Recipe, variant: BuiltVariant, threads: int, evaluation_sha256: str | None) -> JobSpec:
    """The agent job spec that measures `variant` as the recipe's benchmark section says."""
    bench = recipe.benchmark
    model_input = variant.meta["input"]
    return JobSpec(
        artifact_sha256=variant.sha256,
        inputs=[InputSpec(model_input["name"], list(model_input["shape"]), model_input["dtype"])],
        providers=list(bench.providers), intra_op_threads=threads, inter_op_threads=1,
        graph_optimization=bench.graph_optimization,
        warmup=Gate(bench.warmup.min_iters, bench.warmup.min_s, bench.warmup.max_s),
        measure=Gate(bench.measure.min_iters, bench.measure.min_s, bench.measure.max_s),
        evaluation=EvaluationSpec(evaluation_sha256, "top1") if evaluation_sha256 else None,
        seed=recipe.train.seed)
