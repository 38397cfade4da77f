"""The job spec the orchestrator sends and the checks the agent applies to it.

A spec is JSON text (`"schema": 1`). Fields:
  artifact_sha256     sha256 of the ONNX file, found as <cache>/<sha256>.onnx
  providers           onnxruntime execution providers, in order (always explicit)
  intra_op_threads    onnxruntime intra-op thread count
  inter_op_threads    onnxruntime inter-op thread count
  graph_optimization  one of: disable, basic, extended, all
  inputs              [{name, shape, dtype}] fed to every timed run (fixed-seed data)
  warmup              {min_iters, min_s}: both must be met before timing starts
  measure             {min_iters, min_s, max_s}: stop when both minimums are met,
                      or when max_s is reached, whichever is first
  evaluation          null, or {sha256, metric}: <cache>/<sha256>.npz with arrays
                      x (inputs) and y (labels); metric `top1`
  seed                seed of the synthetic timed input
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from agent import SCHEMA_VERSION

GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
DTYPES = ("float32", "float16", "uint8", "int8", "int32", "int64")
METRICS = ("top1",)


class SpecError(ValueError):
    """A job spec that the agent cannot run as written."""


@dataclass
class Gate:
    """A run gate: at least `min_iters` runs AND at least `min_s` seconds; capped by `max_s`."""

    min_iters: int
    min_s: float
    max_s: Optional[float] = None


@dataclass
class InputSpec:
    """One model input: its name, a concrete shape and a numpy dtype name."""

    name: str
    shape: List[int]
    dtype: str = "float32"


@dataclass
class EvaluationSpec:
    """An evaluation set shipped as <cache>/<sha256>.npz and the metric to compute on it."""

    sha256: str
    metric: str = "top1"


@dataclass
class JobSpec:
    """One benchmark job (fields in the module docstring)."""

    artifact_sha256: str
    inputs: List[InputSpec]
    providers: List[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: str = "all"
    warmup: Gate = field(default_factory=lambda: Gate(min_iters=10, min_s=0.5))
    measure: Gate = field(default_factory=lambda: Gate(min_iters=300, min_s=3.0, max_s=60.0))
    evaluation: Optional[EvaluationSpec] = None
    seed: int = 0

    def to_json(self) -> str:
        body: Dict[str, Any] = {"schema": SCHEMA_VERSION}
        body.update(asdict(self))
        return json.dumps(body, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "JobSpec":
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise SpecError(f"job spec is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise SpecError("job spec must be a JSON object")
        if raw.get("schema") != SCHEMA_VERSION:
            raise SpecError(f"job spec schema {raw.get('schema')!r} is not {SCHEMA_VERSION}")
        try:
            spec = cls(
                artifact_sha256=str(raw["artifact_sha256"]),
                inputs=[InputSpec(str(i["name"]), [int(d) for d in i["shape"]], str(i.get("dtype", "float32")))
                        for i in raw["inputs"]],
                providers=[str(p) for p in raw.get("providers", ["CPUExecutionProvider"])],
                intra_op_threads=int(raw.get("intra_op_threads", 1)),
                inter_op_threads=int(raw.get("inter_op_threads", 1)),
                graph_optimization=str(raw.get("graph_optimization", "all")),
                warmup=Gate(**raw["warmup"]) if "warmup" in raw else Gate(10, 0.5),
                measure=Gate(**raw["measure"]) if "measure" in raw else Gate(300, 3.0, 60.0),
                evaluation=EvaluationSpec(**raw["evaluation"]) if raw.get("evaluation") else None,
                seed=int(raw.get("seed", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"job spec field is missing or malformed: {exc}") from exc
        spec.validate()
        return spec

    def validate(self) -> None:
        if not _is_sha256(self.artifact_sha256):
            raise SpecError(f"artifact_sha256 {self.artifact_sha256!r} is not a sha256 hex digest")
        if self.evaluation is not None:
            if not _is_sha256(self.evaluation.sha256):
                raise SpecError("evaluation.sha256 is not a sha256 hex digest")
            if self.evaluation.metric not in METRICS:
                raise SpecError(f"evaluation.metric {self.evaluation.metric!r} is not one of {METRICS}")
        if not self.inputs:
            raise SpecError("inputs is empty")
        for spec_input in self.inputs:
            if spec_input.dtype not in DTYPES:
                raise SpecError(f"input {spec_input.name!r}: dtype {spec_input.dtype!r} is not one of {DTYPES}")
            if any(d <= 0 for d in spec_input.shape):
                raise SpecError(f"input {spec_input.name!r}: shape {spec_input.shape} must be concrete and positive")
        if self.graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise SpecError(f"graph_optimization {self.graph_optimization!r} is not one of {GRAPH_OPTIMIZATION_LEVELS}")
        if not self.providers:
            raise SpecError("providers is empty")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise SpecError("thread counts must be >= 0 (0 lets onnxruntime choose)")
        for name, gate in (("warmup", self.warmup), ("measure", self.measure)):
            if gate.min_iters < 0 or gate.min_s < 0:
                raise SpecError(f"{name}: min_iters and min_s must be >= 0")
        if self.measure.max_s is None or self.measure.max_s <= 0:
            raise SpecError("measure.max_s must be > 0")
        if self.measure.min_iters < 1:
            raise SpecError("measure.min_iters must be >= 1")


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
