"""Jobs: what one measurement is (a variant on a device with one run configuration) and its agent spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.spec import BoardSpec, EvaluationSpec, Gate, InputSpec, JobSpec, ThermalGate
from orchestrator.build.pipeline import BuiltVariant
from orchestrator.fleet.devices import DeviceSpec
from orchestrator.recipes import Recipe


@dataclass(frozen=True)
class Job:
    """One measurement to make: a variant on a device with one thread count (repeat `repeat` of `repeats`)."""

    variant: BuiltVariant
    device: DeviceSpec
    threads: int
    repeat: int = 1
    repeats: int = 1

    @property
    def label(self) -> str:
        again = f" #{self.repeat}/{self.repeats}" if self.repeats > 1 else ""
        return f"{self.device.name}: {self.variant.name} x{self.threads}{again}"


def plan_jobs(recipe: Recipe, variants: list[BuiltVariant], devices: list[DeviceSpec]) -> list[Job]:
    """Every (device x variant x thread count x repeat) job of a sweep, grouped by device."""
    repeats = recipe.benchmark.repeat
    return [Job(variant, device, threads, repeat, repeats)
            for device in devices for variant in variants for threads in recipe.benchmark.threads
            for repeat in range(1, repeats + 1)]


def job_spec(recipe: Recipe, job: Job, evaluation_sha256: str | None, board: BoardSpec | None = None,
             device_power: dict[str, Any] | None = None) -> JobSpec:
    """The agent job spec that measures `job` as the recipe's benchmark section says.

    The recipe's power meter wins over the device's (`device_power`); `board` says where the device's
    telemetry lives (default: the real filesystem).
    """
    bench = recipe.benchmark
    model_input = job.variant.meta["input"]
    return JobSpec(
        artifact_sha256=job.variant.sha256,
        inputs=[InputSpec(model_input["name"], list(model_input["shape"]), model_input["dtype"])],
        providers=list(bench.providers), intra_op_threads=job.threads, inter_op_threads=1,
        graph_optimization=bench.graph_optimization,
        warmup=Gate(bench.warmup.min_iters, bench.warmup.min_s, bench.warmup.max_s),
        measure=Gate(bench.measure.min_iters, bench.measure.min_s, bench.measure.max_s),
        evaluation=EvaluationSpec(evaluation_sha256, "top1") if evaluation_sha256 else None,
        seed=recipe.train.seed,
        power=bench.power or device_power, power_idle_s=bench.power_idle_s,
        board=board or BoardSpec(),
        thermal=ThermalGate(bench.thermal.max_c, bench.thermal.wait_timeout_s),
        rest_s=bench.rest_s, max_cv=bench.max_cv,
        repeat={"index": job.repeat, "of": job.repeats} if job.repeats > 1 else None)
