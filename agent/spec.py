"""The job spec the orchestrator sends and the checks the agent applies to it.

A spec is JSON text (`"schema": 1`). Fields:
  artifact_sha256     sha256 of the ONNX file, found as <cache>/<sha256>.onnx
  providers           onnxruntime execution providers, in order (always explicit)
  intra_op_threads    onnxruntime intra-op thread count
  inter_op_threads    onnxruntime inter-op thread count
  graph_optimization  one of: disable, basic, extended, all
  inputs              [{name, shape, dtype}] of the model; fed to every timed run as fixed-seed data (warm-up, and
                      the measurement with measure.inputs synthetic)
  warmup              {min_iters, min_s}: both must be met before timing starts
  measure             {min_iters, min_s, max_s, inputs}: stop when both minimums are met,
                      or when max_s is reached, whichever is first. inputs: synthetic (the fixed-seed
                      input of `inputs` every run) or evaluation_set (the top-1 evaluation set's samples in
                      order, one batch per run, wrapping round; at least one full pass, never cut by max_s,
                      and accuracy from that pass)
  evaluation          null, or {sha256, metric, ...}: <cache>/<sha256>.npz. metric `top1`: arrays x (inputs)
                      and y (labels). metric `detection`: a DetectionSet (agent/detection/evaluate.py),
                      with `preprocess` (agent.preprocess.Preprocess fields), `detection` (DetectionSpec
                      fields), `class_map` (the data set's class index of each model label, -1: not scored)
                      and `keep_detections` (return every detection with the result)
  seed                seed of the synthetic timed input
  power               null (no power measurement) or a meter spec for agent.power.create,
                      e.g. {"type": "auto"} or {"type": "ina3221"}
  power_idle_s        seconds of idle baseline measured before the run
  board               where the board's telemetry lives: {root, vcgencmd, nvpmodel}
                      (root "/" on a real board; tests point it at a fake sysfs tree)
  thermal             {max_c, wait_timeout_s}: wait until every thermal zone is at or
                      below max_c before measuring (null max_c: no gate)
  rest_s              seconds to rest before the job (cool-down between jobs)
  max_cv              a run whose robust latency CV (1.4826 MAD / median) exceeds this is
                      invalid (default 1.0; null: no limit)
  repeat              null, or {index, of}: this job is measurement `index` of `of` repeats
  pipeline            null, or a detection pipeline job (PipelineSpec, agent/pipeline/): frames from a source
                      through read, pre-process, infer, post-process, draw and JPEG encode, timed per stage;
                      the warm-up gate applies, the measurement gate does not (the frames are the measurement)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

from agent import SCHEMA_VERSION

GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
DTYPES = ("float32", "float16", "uint8", "int8", "int32", "int64")
METRICS = ("top1", "detection")
# What the timed runs are fed: the fixed-seed synthetic input, or the shipped evaluation set's samples in order.
MEASURE_INPUTS = ("synthetic", "evaluation_set")
PIPELINE_MODES = ("sequential", "pipelined")
SOURCE_KINDS = ("images", "video", "camera")
# A pipeline source file's suffix in the agent cache: images are a FrameSet (.npz of the original files' bytes),
# a video file is kept as it is (its container is found from its bytes).
SOURCE_SUFFIXES = {"images": ".npz", "video": ".video"}
MAX_QUEUE = 1024


class SpecError(ValueError):
    """A job spec that the agent cannot run as written."""


@dataclass
class Gate:
    """A run gate: at least `min_iters` runs AND at least `min_s` seconds; capped by `max_s` (None: no cap).

    inputs: what the runs are fed, one of MEASURE_INPUTS; only the measurement gate may take evaluation_set
    (whose first full pass max_s never cuts), warm-up always runs on synthetic input.
    The one gate type of orch: recipes (benchmark.warmup, benchmark.measure) validate into it, with the
    defaults DEFAULT_WARMUP and DEFAULT_MEASURE below.
    """

    min_iters: int
    min_s: float
    max_s: Optional[float] = None
    inputs: str = "synthetic"

    def problems(self, timed: bool = False) -> List[Tuple[str, str]]:
        """(field, what is wrong) for each unusable field; `timed`: the measurement gate, which needs at least
        one run and a cap."""
        found = []
        least = 1 if timed else 0
        if isinstance(self.min_iters, bool) or not isinstance(self.min_iters, int) or \
                not least <= self.min_iters <= MAX_ITERS:
            found.append(("min_iters", f"must be an integer greater than or equal to {least}, at most {MAX_ITERS}"))
        if not _seconds(self.min_s):
            found.append(("min_s", f"must be a number of seconds from 0 to {MAX_SECONDS}"))
        if self.max_s is None:
            if timed:
                found.append(("max_s", "is required: the longest a measurement may run, in seconds"))
        elif not _seconds(self.max_s) or self.max_s <= 0:
            found.append(("max_s", f"must be a number of seconds above 0, at most {MAX_SECONDS}"))
        elif _finite(self.min_s) and self.max_s < self.min_s:
            found.append(("max_s", f"{self.max_s:g} s is below min_s {self.min_s:g} s: the gate could never be met"))
        if self.inputs not in MEASURE_INPUTS:
            found.append(("inputs", f"{self.inputs!r} is not one of {', '.join(MEASURE_INPUTS)}"))
        elif not timed and self.inputs != "synthetic":
            found.append(("inputs", "warm-up runs on synthetic input; evaluation_set is for the measurement gate"))
        return found


# Bounds of every gate and wait: beyond them a value is a mistake (and would overflow the runner's clocks).
MAX_SECONDS = 86400.0
MAX_ITERS = 10**9

DEFAULT_WARMUP = Gate(min_iters=10, min_s=0.5)
DEFAULT_MEASURE = Gate(min_iters=300, min_s=3.0, max_s=60.0)
# A run whose robust latency spread (1.4826 MAD / median) exceeds this is invalid; None: no limit.
DEFAULT_MAX_CV = 1.0


@dataclass
class InputSpec:
    """One model input: its name, a concrete shape and a numpy dtype name."""

    name: str
    shape: List[int]
    dtype: str = "float32"


@dataclass
class EvaluationSpec:
    """An evaluation set shipped as <cache>/<sha256>.npz and the metric to compute on it (fields in the module
    docstring)."""

    sha256: str
    metric: str = "top1"
    preprocess: Optional[Dict[str, Any]] = None
    detection: Optional[Dict[str, Any]] = None
    class_map: Optional[List[int]] = None
    keep_detections: bool = False

    def problems(self) -> List[Tuple[str, str]]:
        """(field, what is wrong) for each unusable field."""
        if not _is_sha256(self.sha256):
            return [("sha256", "is not a sha256 hex digest")]
        if self.metric not in METRICS:
            return [("metric", f"{self.metric!r} is not one of {METRICS}")]
        if self.metric != "detection":
            return []
        if not isinstance(self.preprocess, dict) or not isinstance(self.detection, dict) or \
                not isinstance(self.class_map, list):
            return [("metric", "detection needs preprocess, detection and class_map")]
        from agent.detection.decoders import DetectionSpec
        from agent.preprocess import Preprocess

        try:
            found = [("preprocess." + key, problem) for key, problem in Preprocess(**self.preprocess).problems()]
            found += [("detection." + key, problem)
                      for key, problem in DetectionSpec.from_dict(self.detection).problems()]
        except (TypeError, ValueError) as exc:
            return [("metric", f"detection settings are malformed: {exc}")]
        if not all(isinstance(index, int) and not isinstance(index, bool) for index in self.class_map):
            found.append(("class_map", "must be a list of class indexes"))
        return found


@dataclass
class PipelineSpec:
    """A detection pipeline job (agent/pipeline/): every frame of `source` read/decoded, pre-processed, inferred,
    post-processed (decode + NMS), drawn on (boxes, labels, confidence, FPS) and JPEG-encoded.

    source          {"kind": "images" | "video", "sha256": hex}: <cache>/<sha256>.npz (a FrameSet) or .video;
                    {"kind": "camera", "device": 0 | "/dev/video0"}: a camera on the board (needs OpenCV)
    mode            sequential (the stages in one loop) or pipelined (a thread per stage, bounded queues)
    frames          how many frames to run; None: every frame of a file source (a camera needs a number)
    queue_size      capacity of each queue between two stages (pipelined)
    save_frames     the first N annotated frames come back with the result, as JPEG files
    preprocess      agent.preprocess.Preprocess fields; detection: DetectionSpec fields
    labels          the name drawn for each model label
    keep_detections every frame's detections come back with the result
    loop            start a file source again at its end (the live stream)
    jpeg_quality    quality of the encoded frames, 1 to 100
    """

    source: Dict[str, Any]
    preprocess: Dict[str, Any]
    detection: Dict[str, Any]
    labels: List[str]
    mode: str = "pipelined"
    frames: Optional[int] = None
    queue_size: int = 4
    save_frames: int = 0
    keep_detections: bool = False
    loop: bool = False
    jpeg_quality: int = 80

    def problems(self) -> List[Tuple[str, str]]:
        """(field, what is wrong) for each unusable field."""
        found = []
        kind = self.source.get("kind") if isinstance(self.source, dict) else None
        if kind not in SOURCE_KINDS:
            found.append(("source.kind", f"must be one of {', '.join(SOURCE_KINDS)}"))
        elif kind == "camera":
            device = self.source.get("device")
            if not (_count(device, 0, 255) or (isinstance(device, str) and device.startswith("/dev/"))):
                found.append(("source.device", "must be a camera index or a /dev/ path"))
            if self.frames is None and not self.loop:
                found.append(("frames", "is required for a camera: it has no end"))
        elif not _is_sha256(str(self.source.get("sha256", ""))):
            found.append(("source.sha256", "is not a sha256 hex digest"))
        if self.mode not in PIPELINE_MODES:
            found.append(("mode", f"must be one of {', '.join(PIPELINE_MODES)}"))
        if self.frames is not None and not _count(self.frames, 1, MAX_ITERS):
            found.append(("frames", f"must be a whole number from 1 to {MAX_ITERS}"))
        if not _count(self.queue_size, 1, MAX_QUEUE):
            found.append(("queue_size", f"must be a whole number from 1 to {MAX_QUEUE}"))
        if not _count(self.save_frames, 0, MAX_ITERS):
            found.append(("save_frames", "must be a whole number, 0 or more"))
        if not _count(self.jpeg_quality, 1, 100):
            found.append(("jpeg_quality", "must be a whole number from 1 to 100"))
        if not isinstance(self.labels, list) or not all(isinstance(label, str) for label in self.labels):
            found.append(("labels", "must be a list of names"))
        from agent.detection.decoders import DetectionSpec
        from agent.preprocess import Preprocess

        try:
            found += [("preprocess." + key, problem) for key, problem in Preprocess(**self.preprocess).problems()]
            found += [("detection." + key, problem)
                      for key, problem in DetectionSpec.from_dict(self.detection).problems()]
        except (TypeError, ValueError) as exc:
            found.append(("detection", f"settings are malformed: {exc}"))
        return found

    def source_file(self) -> Optional[str]:
        """The agent cache file name of a file source (<sha256>.npz or .video); None for a camera."""
        suffix = SOURCE_SUFFIXES.get(str(self.source.get("kind")))
        return f"{self.source['sha256']}{suffix}" if suffix else None


@dataclass
class BoardPaths:
    """Where the board's telemetry is read: sysfs/procfs root and tool paths (None: found on PATH)."""

    root: str = "/"
    vcgencmd: Optional[str] = None
    nvpmodel: Optional[str] = None


@dataclass
class Thermal:
    """The thermal gate: before each job, wait until every thermal zone reads at most max_c (None: no gate),
    for at most wait_timeout_s. The one thermal type of orch: recipes and the board inventory both use it."""

    max_c: Optional[float] = None
    wait_timeout_s: float = 120.0

    def problems(self) -> List[Tuple[str, str]]:
        """(field, what is wrong) for each unusable field."""
        found = []
        if self.max_c is not None and (not _finite(self.max_c) or not 0 < self.max_c <= 200):
            found.append(("max_c", "must be a number of degrees C above 0, at most 200"))
        if not _seconds(self.wait_timeout_s):
            found.append(("wait_timeout_s", f"must be a number of seconds from 0 to {MAX_SECONDS}"))
        return found


@dataclass
class JobSpec:
    """One benchmark job (fields in the module docstring)."""

    artifact_sha256: str
    inputs: List[InputSpec]
    providers: List[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: str = "all"
    warmup: Gate = field(default_factory=lambda: replace(DEFAULT_WARMUP))
    measure: Gate = field(default_factory=lambda: replace(DEFAULT_MEASURE))
    evaluation: Optional[EvaluationSpec] = None
    seed: int = 0
    power: Optional[Dict[str, Any]] = None
    power_idle_s: float = 3.0
    board: BoardPaths = field(default_factory=BoardPaths)
    thermal: Thermal = field(default_factory=Thermal)
    rest_s: float = 0.0
    max_cv: Optional[float] = DEFAULT_MAX_CV
    repeat: Optional[Dict[str, int]] = None
    pipeline: Optional[PipelineSpec] = None

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
                warmup=Gate(**raw["warmup"]) if "warmup" in raw else replace(DEFAULT_WARMUP),
                measure=Gate(**raw["measure"]) if "measure" in raw else replace(DEFAULT_MEASURE),
                evaluation=EvaluationSpec(**raw["evaluation"]) if raw.get("evaluation") else None,
                seed=int(raw.get("seed", 0)),
                power=dict(raw["power"]) if raw.get("power") else None,
                power_idle_s=float(raw.get("power_idle_s", 3.0)),
                board=BoardPaths(**raw["board"]) if raw.get("board") else BoardPaths(),
                thermal=Thermal(**raw["thermal"]) if raw.get("thermal") else Thermal(),
                rest_s=float(raw.get("rest_s", 0.0)),
                max_cv=_optional_float(raw.get("max_cv", DEFAULT_MAX_CV)),
                repeat={"index": int(raw["repeat"]["index"]), "of": int(raw["repeat"]["of"])}
                if raw.get("repeat") else None,
                pipeline=PipelineSpec(**raw["pipeline"]) if raw.get("pipeline") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"job spec field is missing or malformed: {exc}") from exc
        spec.validate()
        return spec

    def validate(self) -> None:
        if not _is_sha256(self.artifact_sha256):
            raise SpecError(f"artifact_sha256 {self.artifact_sha256!r} is not a sha256 hex digest")
        if self.evaluation is not None:
            for key, problem in self.evaluation.problems():
                raise SpecError(f"evaluation.{key} {problem}")
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
        for name, gate, timed in (("warmup", self.warmup, False), ("measure", self.measure, True)):
            for key, problem in gate.problems(timed):
                raise SpecError(f"{name}.{key} {problem}")
        for key, problem in self.thermal.problems():
            raise SpecError(f"thermal.{key} {problem}")
        if self.power is not None and not isinstance(self.power.get("type"), str):
            raise SpecError("power must be a meter spec with a `type`")
        if not (_seconds(self.power_idle_s) and _seconds(self.rest_s)):
            raise SpecError(f"power_idle_s and rest_s must be numbers of seconds from 0 to {MAX_SECONDS}")
        if self.max_cv is not None and (not _finite(self.max_cv) or self.max_cv <= 0):
            raise SpecError("max_cv must be a finite number > 0")
        if self.pipeline is not None:
            for key, problem in self.pipeline.problems():
                raise SpecError(f"pipeline.{key} {problem}")
        if self.measure.inputs == "evaluation_set":
            self._check_evaluation_inputs()

    def _check_evaluation_inputs(self) -> None:
        """measure.inputs evaluation_set needs a top-1 evaluation set, a model of one input, and no pipeline."""
        if self.pipeline is not None:
            raise SpecError("measure.inputs evaluation_set does not apply to a pipeline job: its frames are the "
                            "measurement")
        if self.evaluation is None:
            raise SpecError("measure.inputs evaluation_set needs an evaluation set: the job has none")
        if self.evaluation.metric != "top1":
            raise SpecError("measure.inputs evaluation_set is for top-1 sets")
        if len(self.inputs) != 1:
            raise SpecError(f"measure.inputs evaluation_set feeds one input; the model has {len(self.inputs)}")


def _finite(value: Any) -> bool:
    """A real number that is neither infinite nor NaN (bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _seconds(value: Any) -> bool:
    """A duration orch can wait for: finite, not negative, at most MAX_SECONDS."""
    return _finite(value) and 0 <= value <= MAX_SECONDS


def _count(value: Any, least: int, most: int) -> bool:
    """A whole number (not a bool) from `least` to `most`."""
    return isinstance(value, int) and not isinstance(value, bool) and least <= value <= most


def _optional_float(value: Any) -> Optional[float]:
    return None if value is None else float(value)


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
