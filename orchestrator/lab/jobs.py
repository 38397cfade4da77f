"""Jobs: what one measurement is (a variant on a device with one run configuration), its agent spec and files."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from agent.spec import BoardPaths, EvaluationSpec, InputSpec, JobSpec
from orchestrator.builder.pipeline import BuiltVariant
from orchestrator.errors import UserError
from orchestrator.fleet.devices import DeviceSpec
from orchestrator.fleet.scheduler import QueuedJob
from orchestrator.lab.pipelines import pipeline_spec, source_files
from orchestrator.lab.settings import power_for, providers_for, thermal_for
from orchestrator.recipes import Recipe


@dataclass(frozen=True)
class Job:
    """One measurement to make: a variant on a device with one thread count (repeat `repeat` of `repeats`);
    `pipeline`: the mode of a pipeline job (benchmark.pipeline), None for a latency job."""

    variant: BuiltVariant
    device: DeviceSpec
    threads: int
    repeat: int = 1
    repeats: int = 1
    pipeline: str | None = None

    @property
    def label(self) -> str:
        again = f" #{self.repeat}/{self.repeats}" if self.repeats > 1 else ""
        mode = f" [{self.pipeline} pipeline]" if self.pipeline else ""
        return f"{self.device.name}: {self.variant.name} x{self.threads}{mode}{again}"


def plan_jobs(recipe: Recipe, variants: list[BuiltVariant], devices: list[DeviceSpec]) -> list[Job]:
    """Every (device x variant x thread count x repeat) job of a sweep, grouped by device; with
    benchmark.pipeline, each detector variant's pipeline jobs (one per mode) follow its latency jobs."""
    bench = recipe.benchmark
    modes = [None] + (bench.pipeline.mode if bench.pipeline else [])
    return [Job(variant, device, threads, repeat, bench.repeat, mode)
            for device in devices for variant in variants for mode in modes
            if mode is None or "detector" in variant.meta
            for threads in bench.threads for repeat in range(1, bench.repeat + 1)]


def job_spec(recipe: Recipe, job: Job, evaluation_sha256: str | None, paths: BoardPaths | None = None,
             source: dict[str, Any] | None = None) -> JobSpec:
    """The agent job spec that measures `job` as the recipe's benchmark section says, within the limits of the
    job's board (lab/settings.py); `paths` says where the board's telemetry lives (default: the real filesystem);
    `source`: a pipeline job's frames (lab/pipelines.py ship_source)."""
    bench = recipe.benchmark
    board = job.device.board
    model_input = job.variant.meta["input"]
    pipeline = None
    measure = bench.measure
    if job.pipeline is not None and bench.pipeline is not None and source is not None:
        settings = bench.pipeline
        pipeline = pipeline_spec(job.variant.meta["detector"], source, job.pipeline, settings.frames,
                                 settings.queue_size, settings.save_frames, confidence=settings.confidence)
        evaluation_sha256 = None  # the latency job of the same variant scores it
        measure = replace(measure, inputs="synthetic")  # the frames are a pipeline job's measurement
    elif measure.inputs == "evaluation_set":
        refuse_evaluation_inputs(recipe, job.variant, evaluation_sha256)
    return JobSpec(
        artifact_sha256=job.variant.sha256,
        inputs=[InputSpec(model_input["name"], list(model_input["shape"]), model_input["dtype"])],
        providers=providers_for(bench, board.providers if board else None),
        intra_op_threads=job.threads, inter_op_threads=1, graph_optimization=bench.graph_optimization,
        warmup=bench.warmup, measure=measure,
        evaluation=evaluation_spec(job.variant, evaluation_sha256, bench.keep_detections),
        seed=recipe.train.seed,
        power=power_for(bench.power, board.power if board else None), power_idle_s=bench.power_idle_s,
        board=paths or BoardPaths(),
        thermal=thermal_for(bench.thermal, board.thermal if board else None),
        rest_s=bench.rest_s, max_cv=bench.max_cv,
        repeat={"index": job.repeat, "of": job.repeats} if job.repeats > 1 else None, pipeline=pipeline)


def refuse_evaluation_inputs(recipe: Recipe, variant: BuiltVariant, evaluation_sha256: str | None) -> None:
    """UserError when benchmark.measure.inputs evaluation_set cannot feed `variant` its test set: the set is shipped
    and scored only with benchmark.accuracy full_test_set (the accuracy comes free from the timed pass, so a set
    shipped only to be fed would be scored anyway), and only a top-1 set can be fed (a detection set's images are
    files to decode, the agent's SpecError says the same)."""
    where = f"recipe {recipe.name}: benchmark.measure.inputs evaluation_set"
    if recipe.benchmark.accuracy != "full_test_set":
        raise UserError(f"{where} feeds the timed runs from the test set, which benchmark.accuracy: "
                        f"{recipe.benchmark.accuracy} does not ship; set benchmark.accuracy: full_test_set")
    if evaluation_sha256 is None:
        raise UserError(f"{where}: the data set has no labelled test split to feed")
    if variant.meta.get("evaluation") is not None:
        raise UserError(f"{where} is for top-1 sets; variant {variant.name} is scored as a detector")


def evaluation_spec(variant: BuiltVariant, sha256: str | None, keep_detections: bool) -> EvaluationSpec | None:
    """How the board scores `variant` on the evaluation set `sha256`: top-1, or the detection settings its build
    worked out (BuiltVariant.meta["evaluation"]); None without an evaluation set."""
    if sha256 is None:
        return None
    settings = variant.meta.get("evaluation")
    if settings is None:
        return EvaluationSpec(sha256, "top1")
    return EvaluationSpec(sha256, keep_detections=keep_detections, **settings)


def job_files(spec: dict[str, Any]) -> list[str]:
    """The artifact store files a job spec needs on its board: the model, the evaluation set if any, a pipeline
    job's source file if any."""
    files = [f"{spec['artifact_sha256']}.onnx"]
    if spec.get("evaluation"):
        files.append(f"{spec['evaluation']['sha256']}.npz")
    if spec.get("pipeline"):
        files += source_files(spec["pipeline"]["source"])
    return files


def queue_job(recipe: Recipe, job: Job, evaluation: str | None,
              source: dict[str, Any] | None = None) -> QueuedJob[Job]:
    """A job as the scheduler carries it: its agent spec and the files it needs."""
    spec_json = job_spec(recipe, job, evaluation, source=source).to_json()
    return QueuedJob(job, job.label, spec_json, job_files(json.loads(spec_json)))
