"""The recipe schema (pydantic). Unknown keys are errors; every list in `variants` is a grid axis.

    name, description
    model:     {arch, options, weights} or {onnx: PATH}
    dataset:   one of the registered data sets (orchestrator/datasets/), chosen by `name`
    train:     how the base model is trained (absent or epochs 0 with imported weights: use them as they are)
    variants:  retrain, prune, sparsify, distill, fold_bn, input_size, opset, quantize; include (more grids);
               baselines (the source network and the retrained one, as variants of their own)
    benchmark: warm-up and measurement gates, threads, providers, accuracy
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from agent.spec import DEFAULT_MAX_CV, DEFAULT_MEASURE, DEFAULT_WARMUP, Gate, Thermal
from orchestrator.datasets import DATASETS, DatasetSpec


def _as_list(value: Any) -> Any:
    """A grid axis may be written as one value or as a list of values."""
    return value if isinstance(value, list) else [value]


def _unit_interval(values: list[float]) -> list[float]:
    for index, value in enumerate(values):
        if not 0 <= value < 1:
            raise ValueError(f"[{index}] {value} is not in [0, 1)")
    return values


Axis = Annotated[list[Any], BeforeValidator(_as_list)]
FractionAxis = Annotated[list[float], BeforeValidator(_as_list)]


class Spec(BaseModel):
    """Base of every recipe section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class WeightsSpec(Spec):
    """Weights to start from instead of a random initialization.

    path: the file (relative paths are relative to the recipe file)
    format: darknet (.weights) or state_dict (a torch state_dict file); default from the suffix
    skip_head: load every layer except the model's output layers (to train a new head)
    """

    path: str
    format: Literal["darknet", "state_dict"] | None = None
    skip_head: bool = False

    @property
    def resolved_format(self) -> str:
        return self.format or ("darknet" if self.path.endswith(".weights") else "state_dict")


class PreprocessSpec(Spec):
    """How images become an ONNX model's input (agent/preprocess.py, which owns the fields' meaning). Each field
    left out is inferred from the model's input (layout NHWC or NCHW, dtype uint8 or float) or taken from the
    data set (channels, mean, std); the size is the data set's image_size (or an input_size axis value).

    resize: plain or letterbox; crop: central fraction kept (plain only); channels: RGB, BGR or L;
    layout: NCHW or NHWC; scale: "0-1" or "0-255"; mean, std: per channel, after scaling;
    dtype: float32, float16 or uint8; pad_value: letterbox padding (0-255)
    """

    resize: Literal["plain", "letterbox"] | None = None
    crop: float | None = Field(None, gt=0, le=1)
    channels: Literal["RGB", "BGR", "L"] | None = None
    layout: Literal["NCHW", "NHWC"] | None = None
    scale: Literal["0-1", "0-255"] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    dtype: Literal["float32", "float16", "uint8"] | None = None
    pad_value: int | None = Field(None, ge=0, le=255)


def _detection_problem(value: dict[str, Any]) -> dict[str, Any]:
    from agent.detection.decoders import DetectionSpec

    try:
        spec = DetectionSpec.from_dict(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    for key, problem in spec.problems():
        raise ValueError(f"[{key}] {problem}")
    return value


# How a detector's outputs become boxes: the agent's DetectionSpec fields, checked by the agent's own rules.
DetectionSection = Annotated[dict[str, Any], AfterValidator(_detection_problem)]


class ModelSpec(Spec):
    """Where the network comes from: a zoo architecture (arch, options, weights) or an ONNX file (onnx).

    arch: a model in orchestrator/models/; options: its keyword arguments
    weights: a path, or {path, format, skip_head}
    onnx: any ONNX file as the starting point (torch steps are refused for it)
    preprocess: how images become the ONNX model's input (PreprocessSpec; ONNX sources only)
    detection: how a detector's outputs become boxes (agent/detection/decoders.py DetectionSpec: decoder,
        anchors, conf_threshold, iou_threshold, max_detections, class_names, box_format, ...); a zoo detector
        (tiny_yolov2: a YOLOv2 region head) needs none
    """

    arch: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    weights: WeightsSpec | None = None
    onnx: str | None = None
    preprocess: PreprocessSpec | None = None
    detection: DetectionSection | None = None

    @field_validator("weights", mode="before")
    @classmethod
    def _weights_path(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str | None) -> str | None:
        from orchestrator.models import MODELS

        if arch is not None and arch not in MODELS:
            raise ValueError(f"unknown model {arch!r}; known: {', '.join(MODELS.names())}")
        return arch

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.arch is None) == (self.onnx is None):
            raise ValueError("give exactly one of `arch` (a zoo model) or `onnx` (a model file)")
        if self.onnx is not None and (self.options or self.weights):
            raise ValueError("`options` and `weights` go with `arch`, not with `onnx`")
        if self.arch is not None and self.preprocess is not None:
            raise ValueError("`preprocess` goes with `onnx`: a zoo model takes its data set's own pre-processing")
        return self

    def options_problem(self) -> str | None:
        """Why `options` do not fit the model's factory, or None. Imports the model (and so torch):
        a deep check, run by `orch recipes check` and before a build constructs the model."""
        if self.arch is None:
            return None
        from orchestrator.models import MODELS

        try:
            inspect.signature(MODELS.get(self.arch)).bind(num_classes=1, in_channels=1, **self.options)
        except TypeError as exc:
            return f"options do not fit model {self.arch}: {exc}"
        return None


class TrainSpec(Spec):
    """How the base model is trained (SGD with Nesterov momentum, cosine schedule)."""

    epochs: int = Field(5, ge=0)
    lr: float = Field(0.05, gt=0)
    batch_size: int = Field(64, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    seed: int = 0


class RetrainSpec(Spec):
    """A fixed fine-tuning step before compression, e.g. "retrain only the last layer" for a new head.

    epochs, lr: as in training; trainable: module-name prefixes left trainable (absent: all layers)
    """

    epochs: int = Field(ge=1)
    lr: float = Field(0.01, gt=0)
    trainable: list[str] | None = None


class PruneAxes(Spec):
    """Structured channel pruning (torch-pruning): channels are removed, MACs and file size shrink.

    method: l1, l2, taylor, bn_scale, random (channel importance)
    ratio: fraction of each layer's output channels removed, in [0, 1)
    scope: per_layer (every layer loses `ratio`) or global (ranked across layers)
    steps: iterative schedule: reach `ratio` in this many prune -> fine-tune -> evaluate steps
    finetune_epochs: epochs of fine-tuning after each pruning step; finetune_lr its learning rate
    round_to: keep channel counts multiples of this; keep: module names whose outputs are never pruned
    """

    method: Annotated[list[Literal["l1", "l2", "taylor", "bn_scale", "random"]], BeforeValidator(_as_list)] = ["l1"]
    ratio: FractionAxis = [0.0]
    scope: Annotated[list[Literal["per_layer", "global"]], BeforeValidator(_as_list)] = ["per_layer"]
    steps: Annotated[list[Annotated[int, Field(ge=1)]], BeforeValidator(_as_list)] = [1]
    finetune_epochs: Annotated[list[Annotated[int, Field(ge=0)]], BeforeValidator(_as_list)] = [0]
    finetune_lr: float | None = Field(None, gt=0)
    round_to: int | None = Field(None, ge=1)
    keep: list[str] = Field(default_factory=list)

    @field_validator("ratio")
    @classmethod
    def _ratio_range(cls, ratios: list[float]) -> list[float]:
        return _unit_interval(ratios)


class SparsifyAxes(Spec):
    """Unstructured magnitude pruning (torch.nn.utils.prune): weights zeroed, the dense file does not shrink.

    ratio: fraction of weights zeroed, in [0, 1); scope: per_layer or global
    """

    ratio: FractionAxis = [0.0]
    scope: Annotated[list[Literal["per_layer", "global"]], BeforeValidator(_as_list)] = ["global"]

    @field_validator("ratio")
    @classmethod
    def _ratio_range(cls, ratios: list[float]) -> list[float]:
        return _unit_interval(ratios)


class DistillSpec(Spec):
    """Knowledge distillation (Hinton) for every fine-tuning after compression.

    teacher: `base` (the trained model before compression) or a state_dict path of the same architecture
    temperature, alpha: softened-logit temperature, weight of the distillation term
    """

    teacher: str = "base"
    temperature: Annotated[list[Annotated[float, Field(gt=0)]], BeforeValidator(_as_list)] = [4.0]
    alpha: Annotated[list[Annotated[float, Field(ge=0, le=1)]], BeforeValidator(_as_list)] = [0.9]


class QuantizeSpec(Spec):
    """One quantization setting (onnxruntime.quantization), written as a preset name or as this mapping.

    mode: none, fp16 (IO kept float32), dynamic, static
    weights, activations: int8 or uint8 (activations: static only)
    format: qdq or qoperator (static only)
    calibration: minmax, entropy or percentile; samples: calibration images (static only)
    per_channel: per-channel weight scales
    """

    mode: Literal["none", "fp16", "dynamic", "static"]
    weights: Literal["int8", "uint8"] = "int8"
    activations: Literal["int8", "uint8"] = "int8"
    format: Literal["qdq", "qoperator"] = "qdq"
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: bool = False
    samples: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _applies(self) -> QuantizeSpec:
        applies = {"none": set(), "fp16": set(), "dynamic": {"weights", "per_channel"},
                   "static": {"weights", "activations", "format", "calibration", "per_channel", "samples"}}
        # A key set to its default is harmless (a lineage's parameters list every key); another value is a mistake.
        stray = sorted(name for name in self.model_fields_set - applies[self.mode] - {"mode"}
                       if getattr(self, name) != type(self).model_fields[name].default)
        if stray:
            raise ValueError(f"`{stray[0]}` does not apply to mode {self.mode}")
        if self.mode == "static" and self.activations == "int8" and self.weights == "uint8":
            raise ValueError("onnxruntime.quantization does not support int8 activations with uint8 weights; "
                             "use weights: int8 or activations: uint8")
        return self

    @property
    def label(self) -> str:
        """The preset name when it is one, else a compact description (used in variant names)."""
        if self.mode in ("none", "fp16"):
            return {"none": "fp32", "fp16": "fp16"}[self.mode]
        for name, preset in QUANTIZE_PRESETS.items():
            if self == preset:
                return name
        bits = {"int8": "s8", "uint8": "u8"}
        channel = "-pc" if self.per_channel else ""
        if self.mode == "dynamic":
            return f"dyn-{bits[self.weights]}{channel}"
        return f"{self.format}-{bits[self.activations]}{bits[self.weights]}-{self.calibration}{channel}"


QUANTIZE_PRESETS: dict[str, QuantizeSpec] = {
    "none": QuantizeSpec(mode="none"),
    "fp16": QuantizeSpec(mode="fp16"),
    "dynamic_uint8": QuantizeSpec(mode="dynamic", weights="uint8"),
    "dynamic_int8": QuantizeSpec(mode="dynamic", weights="int8"),
    "int8_static": QuantizeSpec(mode="static", activations="int8", weights="int8", format="qdq"),
    "uint8_static": QuantizeSpec(mode="static", activations="uint8", weights="int8", format="qdq"),
    "int8_static_qoperator": QuantizeSpec(mode="static", activations="int8", weights="int8", format="qoperator"),
}


def _quantize_choice(value: Any) -> Any:
    if isinstance(value, str):
        if value not in QUANTIZE_PRESETS:
            raise ValueError(f"unknown quantization {value!r}; presets: {', '.join(QUANTIZE_PRESETS)} "
                             "(or a mapping with mode:)")
        return QUANTIZE_PRESETS[value]
    return value


QuantizeChoice = Annotated[QuantizeSpec, BeforeValidator(_quantize_choice)]


class VariantsGrid(Spec):
    """One variant grid, applied in this order: retrain, prune (+fine-tune), sparsify, fold_bn, export, simplify,
    quantize, graph_nms.

    retrain: see RetrainSpec (not an axis)
    prune, sparsify, distill: see their sections
    fold_bn: fold BatchNorm into the preceding convolution (true/false, an axis)
    simplify: simplify the ONNX graph with onnxslim before quantizing (true/false, an axis)
    graph_nms: a detector's decoding and NMS appended to its graph (ONNX NonMaxSuppression), so the board runs
        one session; false decodes and filters in numpy after the model (true/false, an axis; detectors only)
    input_size: input resolutions to export at (an axis; absent: the data set's image_size)
    opset: ONNX opset of exported models
    quantize: quantization settings (an axis of preset names or mappings)
    calibration_samples: default number of calibration images for static quantization
    """

    retrain: RetrainSpec | None = None
    prune: PruneAxes = Field(default_factory=PruneAxes)
    sparsify: SparsifyAxes = Field(default_factory=SparsifyAxes)
    distill: DistillSpec | None = None
    fold_bn: Annotated[list[bool], BeforeValidator(_as_list)] = [False]
    simplify: Annotated[list[bool], BeforeValidator(_as_list)] = [False]
    graph_nms: Annotated[list[bool], BeforeValidator(_as_list)] = [False]
    input_size: Annotated[list[Annotated[int, Field(gt=0, le=4096)]], BeforeValidator(_as_list)] | None = None
    opset: int = Field(17, ge=11, le=23)
    quantize: Annotated[list[QuantizeChoice], BeforeValidator(_as_list)] = [QUANTIZE_PRESETS["none"]]
    calibration_samples: int = Field(128, gt=0)


# The baseline variants a recipe may add to its grid (variants.baselines), with what each one is.
BASELINES = {
    "source": "the network as its weights file holds it (model.weights whole, its own head): no training, "
              "no retrain, no compression",
    "retrained": "the trained network after variants.retrain (if any), before any pruning, fine-tuning, "
                 "sparsity, folding or quantization",
}


def _known_baselines(names: list[str]) -> list[str]:
    for index, name in enumerate(names):
        if name not in BASELINES:
            raise ValueError(f"[{index}] unknown baseline {name!r}; known: "
                             + "; ".join(f"{known} ({what})" for known, what in BASELINES.items()))
    return list(dict.fromkeys(names))


class VariantsSpec(VariantsGrid):
    """The recipe's variants: a grid (see VariantsGrid), plus further grids in `include`, plus baselines.

    include: a list of grids whose variants are added to this one's (duplicates merged). Each entry
        is this section with the sections the entry names replaced whole: `{sparsify: {ratio: 0.5}}`
        is this grid with that sparsify axis, `{prune: {method: taylor, ratio: 0.5}}` replaces the
        whole prune section (keys it leaves out take their defaults, not this section's values).
    target_runtime: build every variant for an onnxruntime: `auto` (the oldest among the sweep's boards, or this
        machine's for `orch build`), or a release such as "1.16" (absent: this machine's onnxruntime; every
        artifact still imports only the opsets it uses, and each board refuses what it cannot load)
    baselines: reference networks built, measured and scored as variants of the study, fp32, at each input size
        of this grid (BASELINES): `source` (variant `baseline/source`) and `retrained` (`baseline/retrained`)
    """

    include: list[VariantsGrid] = Field(default_factory=list)
    target_runtime: str | None = None
    baselines: Annotated[list[str], BeforeValidator(_as_list), AfterValidator(_known_baselines)] = \
        Field(default_factory=list)

    @field_validator("target_runtime")
    @classmethod
    def _known_runtime(cls, target: str | None) -> str | None:
        if target is not None and target != "auto":
            from orchestrator.errors import UserError
            from orchestrator.runtimes import Runtime

            try:
                Runtime.from_version(target)  # a release orch has not probed is refused, naming the known ones
            except UserError as exc:
                raise ValueError(str(exc)) from None
        return target

    def grids(self) -> list[VariantsGrid]:
        """This grid, then one grid per `include` entry (this grid with the entry's sections replaced)."""
        main = VariantsGrid(**{name: getattr(self, name) for name in VariantsGrid.model_fields})
        return [main] + [main.model_copy(update={name: getattr(entry, name) for name in entry.model_fields_set})
                         for entry in self.include]


def _over(default: Any) -> Any:
    """A section written as a partial mapping takes the rest of its fields from `default` (the agent's)."""
    return BeforeValidator(lambda value: {**asdict(default), **value} if isinstance(value, dict) else value)


def _checked(problems: Callable[[Any], list[tuple[str, str]]]) -> Any:
    """Refuse a value whose agent-side type (agent/spec.py) finds problems; the error names the field."""
    def check(value: Any) -> Any:
        for key, problem in problems(value):
            raise ValueError(f"[{key}] {problem}")
        return value
    return AfterValidator(check)


def _meter_problem(spec: dict[str, Any]) -> dict[str, Any]:
    from agent.power import spec_problem

    problem = spec_problem(spec)
    if problem is not None:
        raise ValueError(problem)
    return spec


# A power meter spec, {type: ina3221, ...options}, checked against the agent's meter registry (no hardware opened).
MeterSpec = Annotated[dict[str, Any], AfterValidator(_meter_problem)]

# The run gates and the thermal gate are the agent's own types (agent/spec.py), with the agent's defaults.
WarmupGate = Annotated[Gate, _over(DEFAULT_WARMUP), _checked(lambda gate: gate.problems(timed=False))]
MeasureGate = Annotated[Gate, _over(DEFAULT_MEASURE), _checked(lambda gate: gate.problems(timed=True))]
ThermalGate = Annotated[Thermal, _over(Thermal()), _checked(lambda thermal: thermal.problems())]


CAMERA_PREFIX = "camera:"


def _pipeline_source(value: str) -> str:
    if value.startswith(CAMERA_PREFIX) and not value[len(CAMERA_PREFIX):].isdigit():
        raise ValueError(f"{value!r}: a camera is camera:N (its index) or its /dev/videoN path")
    if not value.strip():
        raise ValueError("is empty: give an image folder, a video file, camera:N or /dev/videoN")
    return value


class PipelineBenchSpec(Spec):
    """benchmark.pipeline: each detector variant also runs as a whole pipeline on frames (agent/pipeline/):
    read, pre-process, infer, post-process, draw, encode, timed per stage.

    source: an image folder or a video file (relative to the recipe; shipped to the boards), or a camera on the
        board (camera:N, /dev/videoN)
    mode: sequential (one loop) and/or pipelined (a thread per stage, bounded queues); an axis
    frames: frames per job (absent: every frame of the source; a camera needs a number)
    queue_size: capacity of each queue between stages; save_frames: the first N annotated frames come back as files
    confidence: the score a box needs to be kept and drawn (a demo's threshold, not AP scoring's 0.001)
    """

    source: Annotated[str, AfterValidator(_pipeline_source)]
    mode: Annotated[list[Literal["sequential", "pipelined"]], BeforeValidator(_as_list)] = \
        ["sequential", "pipelined"]
    frames: int | None = Field(None, ge=1, le=10**9)
    queue_size: int = Field(4, ge=1, le=1024)
    save_frames: int = Field(4, ge=0, le=1000)
    confidence: float = Field(0.25, ge=0, lt=1)

    @property
    def camera(self) -> bool:
        return self.source.startswith((CAMERA_PREFIX, "/dev/"))


class BenchmarkSpec(Spec):
    """How each variant is measured on each device.

    warmup, measure: run gates {min_iters, min_s, max_s} (agent/spec.py Gate; a partial mapping takes the
        rest from the defaults, warm-up 10 runs and 0.5 s, measurement 300 runs and 3 s, at most 60 s)
    threads: onnxruntime intra-op thread counts (an axis);
    providers: onnxruntime execution providers, in order; graph_optimization: onnxruntime level;
    accuracy: full_test_set (score every test sample on the device) or none
    power: a power meter spec, e.g. {type: auto} or {type: ina3221} (absent: the device's meter, else none)
    power_idle_s: idle baseline measured before each run, in seconds
    thermal: the thermal gate {max_c, wait_timeout_s} (agent/spec.py Thermal); rest_s: rest before each job, in seconds
    max_cv: a run whose robust latency spread (1.4826 MAD / median) exceeds this is stored invalid
    repeat: measure every job this many times, each result kept (the course rule is at least three)
    keep_detections: a detector's every detection on the evaluation set is stored (the `detections` table, in
        COCO's results format), to score again or inspect; off by default (100 rows per image per job)
    pipeline: a detector also runs as a whole pipeline on frames (PipelineBenchSpec); absent: no pipeline jobs
    """

    warmup: WarmupGate = Field(default_factory=lambda: replace(DEFAULT_WARMUP))
    measure: MeasureGate = Field(default_factory=lambda: replace(DEFAULT_MEASURE))
    threads: Annotated[list[Annotated[int, Field(ge=1)]], BeforeValidator(_as_list)] = [1]
    providers: list[str] = ["CPUExecutionProvider"]
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    accuracy: Literal["full_test_set", "none"] = "full_test_set"
    power: MeterSpec | None = None
    power_idle_s: float = Field(3.0, ge=0)
    thermal: ThermalGate = Field(default_factory=Thermal)
    rest_s: float = Field(0.0, ge=0)
    max_cv: float | None = Field(DEFAULT_MAX_CV, gt=0, allow_inf_nan=False)
    repeat: int = Field(1, ge=1)
    keep_detections: bool = False
    pipeline: PipelineBenchSpec | None = None


def _dataset_specs() -> Any:
    """The `dataset:` section: one schema per registered data set, chosen by its `name`."""
    specs = [DATASETS.get(name).spec for name in DATASETS.names()]
    if len(specs) == 1:
        return specs[0]
    return Annotated[Union[tuple(specs)], Field(discriminator="name")]  # noqa: UP007


if TYPE_CHECKING:
    DatasetSection = DatasetSpec
else:
    DatasetSection = _dataset_specs()


class Recipe(Spec):
    """One study: what to build and how to measure it."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    model: ModelSpec
    dataset: DatasetSection
    train: TrainSpec = Field(default_factory=TrainSpec)
    variants: VariantsSpec = Field(default_factory=VariantsSpec)
    benchmark: BenchmarkSpec = Field(default_factory=BenchmarkSpec)


# Sections of a variant grid that need a torch model: refused for `model: {onnx: ...}`.
TORCH_ONLY = {
    "retrain": lambda v: v.retrain is not None,
    "prune": lambda v: any(r > 0 for r in v.prune.ratio),
    "sparsify": lambda v: any(r > 0 for r in v.sparsify.ratio),
    "distill": lambda v: v.distill is not None,
    "fold_bn": lambda v: any(v.fold_bn),
    "baselines": lambda v: bool(getattr(v, "baselines", ())),
}


def baseline_conflicts(recipe: Recipe) -> list[tuple[tuple[str | int, ...], str]]:
    """Baselines a recipe cannot build, as (key path, message) pairs: `source` needs a weights file to be."""
    if recipe.model.arch is None or recipe.model.weights is not None:
        return []
    return [(("variants", "baselines", index), "`source` is the network as its weights file holds it, but the "
             "model has no `weights`: give model.weights, or use `retrained` (the trained network before "
             "compression)") for index, name in enumerate(recipe.variants.baselines) if name == "source"]


def onnx_source_conflicts(recipe: Recipe) -> list[tuple[tuple[str | int, ...], str]]:
    """Sections an ONNX-file model cannot take, as (key path, message) pairs."""
    if recipe.model.onnx is None:
        return []
    message = (f"needs a torch model, but model is the ONNX file {recipe.model.onnx}; with an ONNX "
               "source only quantize, simplify, input_size and opset apply")
    places: list[tuple[tuple[str | int, ...], VariantsGrid, set[str]]] = [
        (("variants",), recipe.variants, set(TORCH_ONLY))]
    places += [(("variants", "include", index), entry, entry.model_fields_set)
               for index, entry in enumerate(recipe.variants.include)]
    return [((*where, section), message) for where, grid, sections in places
            for section, used in TORCH_ONLY.items() if section in sections and used(grid)]
