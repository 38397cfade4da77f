"""Detection on the workstation: the evaluation set boards score, and host scoring with the boards' own code.

A detection recipe's variants are scored by agent/detection/evaluate.py everywhere: on the board after timing,
and here for `host_accuracy` (each ONNX artifact with onnxruntime, each pruning step's torch model with torch).
Both read the same DetectionSet, built once from the data set's `truth` (the test split in original pixels), so
the board's average precision and the host's differ only by what the runtime computed.

What a model's labels mean: `model.detection.class_names` when the recipe gives them, else the data set's
classes when the model scores as many, else every category of the data set's source (COCO's 80, VOC's 20) when
the model scores that many (a YOLOv5 export trained on COCO scored on `classes: [person]`); labels the data set
does not score are dropped (class_map -1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator.errors import BuildError

if TYPE_CHECKING:
    from agent.detection.decoders import DetectionSpec
    from agent.detection.evaluate import DetectionSet
    from agent.preprocess import Preprocess
    from orchestrator.datasets import DetectionTruth

# The batch a torch model is scored with on the host (an ONNX artifact is scored with the batch its jobs run:
# dynamic quantization computes its scales per batch, so the batch changes the numbers).
TORCH_BATCH = 8


def detection_spec(ctx: Any) -> DetectionSpec | None:
    """How the recipe's model outputs become boxes: `model.detection`, with a zoo detector's anchors filled in;
    a zoo model with anchors (tiny-YOLOv2) is a YOLOv2 region detector without saying so; None: not a detector."""
    from agent.detection.decoders import DetectionSpec

    declared = ctx.recipe.model.detection
    anchors = _zoo_anchors(ctx)
    if declared is None:
        return DetectionSpec(decoder="yolov2_region", anchors=anchors) if anchors is not None else None
    spec = DetectionSpec.from_dict(declared)
    if spec.decoder == "yolov2_region" and spec.anchors is None and anchors is not None:
        spec = replace(spec, anchors=anchors)
    return spec


def _zoo_anchors(ctx: Any) -> list[list[float]] | None:
    head = ctx.detection_head()
    return [[float(w), float(h)] for w, h in head[0]] if head is not None else None


def evaluation_set(truth: DetectionTruth, class_names: Sequence[str]) -> DetectionSet:
    """The DetectionSet boards score: every test image file's bytes, sizes and ground truth."""
    from agent.detection.evaluate import DetectionSet

    encoded = [path.read_bytes() for path in truth.files]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(data) for data in encoded])
    image_bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return DetectionSet(image_bytes=image_bytes, offsets=offsets, image_ids=truth.image_ids, sizes=truth.sizes,
                        truth=truth.boxes, category_ids=np.array(truth.category_ids, dtype=np.int64),
                        class_names=list(class_names), headline=truth.metric)


def model_labels(spec: DetectionSpec, model_classes: int | None, class_names: Sequence[str],
                 source_classes: Sequence[str]) -> list[str]:
    """The class name of each model label: model.detection.class_names, else the data set's classes (or its
    source's, when the model scores all of them)."""
    if spec.class_names is not None:
        return list(spec.class_names)
    if model_classes in (None, len(class_names)):
        return list(class_names)
    if model_classes == len(source_classes):
        return list(source_classes)
    raise BuildError(f"the model scores {model_classes} classes and the data set has {len(class_names)} "
                     f"({len(source_classes)} in its source): give model.detection.class_names, the model's "
                     "classes in its label order")


def class_map(spec: DetectionSpec, model_classes: int | None, class_names: Sequence[str],
              source_classes: Sequence[str]) -> list[int]:
    """For each model label, the data set class index it is scored as (-1: not scored); see the module docstring."""
    index = {name: position for position, name in enumerate(class_names)}
    names = model_labels(spec, model_classes, class_names, source_classes)
    mapped = [index.get(name, -1) for name in names]
    if all(position < 0 for position in mapped):
        raise BuildError(f"none of the model's classes ({', '.join(names[:5])}...) is a class of the data set "
                         f"({', '.join(class_names)})")
    return mapped


def preprocess_at(ctx: Any, size: int) -> Preprocess:
    """How an image becomes this recipe's model input at `size` pixels: an ONNX source's own pre-processing, else
    the data set's."""
    chosen = ctx.preprocess or ctx.recipe.dataset.preprocess()
    return replace(chosen, size=[size, size])


def evaluation_settings(ctx: Any, model_path: str, size: int, decoded_by: dict[str, Any] | None = None
                        ) -> dict[str, Any]:
    """The detection part of a job's evaluation spec for one artifact: preprocess, detection, class_map, and the
    name of each model label (`labels`, drawn by the pipeline; not part of the evaluation spec).
    decoded_by: the artifact's own DetectionSpec when a step changed its outputs (graph_nms), else the recipe's."""
    import onnx

    from agent.detection.decoders import DetectionSpec, model_classes

    spec = DetectionSpec.from_dict(decoded_by) if decoded_by else detection_spec(ctx)
    if spec is None:
        raise BuildError("this recipe's model is not a detector: give model.detection")
    graph = onnx.load(model_path, load_external_data=False).graph
    shapes = [[dim.dim_value if dim.HasField("dim_value") else dim.dim_param for dim in
               output.type.tensor_type.shape.dim] for output in graph.output]
    truth = ctx.splits.truth
    classes = model_classes(spec, shapes, [output.name for output in graph.output])
    mapped = class_map(spec, classes, ctx.splits.class_names, truth.source_classes)
    return {"metric": "detection", "preprocess": _fields(preprocess_at(ctx, size)), "detection": spec.to_dict(),
            "class_map": mapped, "labels": model_labels(spec, classes, ctx.splits.class_names, truth.source_classes)}


def _fields(preprocess: Preprocess) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(preprocess)


def score(ctx: Any, run: Callable[[np.ndarray], Sequence[np.ndarray]], output_names: Sequence[str],
          settings: dict[str, Any], batch: int) -> dict[str, Any]:
    """The accuracy part of a result for `run` on this recipe's evaluation set, computed here."""
    from agent.detection.decoders import DetectionSpec
    from agent.detection.evaluate import evaluate
    from agent.preprocess import Preprocess

    return evaluate(run, output_names, ctx.detection_set, Preprocess(**settings["preprocess"]),
                    DetectionSpec.from_dict(settings["detection"]), settings["class_map"], batch=batch)


def onnx_score(ctx: Any, model_path: str, size: int, decoded_by: dict[str, Any] | None = None) -> float | None:
    """The headline average precision of an ONNX artifact on this host's CPU (decoded_by: see
    evaluation_settings)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    fixed = model_input.shape[0] if isinstance(model_input.shape[0], int) else None
    settings = evaluation_settings(ctx, model_path, size, decoded_by)

    def run(inputs: np.ndarray) -> Any:
        return session.run(None, {model_input.name: inputs})

    outputs = [output.name for output in session.get_outputs()]
    return score(ctx, run, outputs, settings, fixed or 1)["value"]


def torch_score(ctx: Any, model: Any) -> float | None:
    """The headline average precision of a torch detector at the data set's image size, computed with torch."""
    import torch

    from agent.detection.decoders import model_classes

    size = ctx.recipe.dataset.image_size
    spec = detection_spec(ctx)
    if spec is None:
        raise BuildError("this recipe's model is not a detector: give model.detection")
    model.eval()
    with torch.no_grad():
        shapes = [list(model(ctx.example_input(size)).shape)]
    mapped = class_map(spec, model_classes(spec, shapes), ctx.splits.class_names, ctx.splits.truth.source_classes)
    settings = {"preprocess": _fields(preprocess_at(ctx, size)), "detection": spec.to_dict(), "class_map": mapped}

    def run(inputs: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [model(torch.from_numpy(inputs)).numpy()]

    return score(ctx, run, ["output"], settings, TORCH_BATCH)["value"]
