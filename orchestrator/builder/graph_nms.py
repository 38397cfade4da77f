"""The `graph_nms` step: a detector's decoding and NMS appended to its ONNX graph, so a board runs one session.

For the yolov2_region, yolov5 and yolov8 layouts (agent/detection/decoders.py), the new model's outputs are
  boxes        (K, 4) float32, x1 y1 x2 y2 in input pixels
  scores       (K,) float32
  labels       (K,) int64, the model's class index
  batch_index  (K,) int64, the image of the batch each row belongs to
rows grouped by image, each image's best first, at most max_detections per image; `nms_spec` is the DetectionSpec
(decoder `nms`) that reads them. The decoding is the numpy decoder's, operation for operation, and the candidates,
thresholds and ranking are the same, so the detections are too (tests/test_decoders.py compares them).

onnxruntime's NonMaxSuppression (the ONNX operator) differs from agent/detection/nms.py in three ways. Two are
handled here. It takes scores per class (N, C, K): a best-class layout (yolov5, yolov8) scores each box in its best
class only and 0 elsewhere (0 is never above the threshold). Its max_output_boxes_per_class caps each class of each
image, not the image: it is set to max_detections (no class can contribute more than that to an image's best
max_detections, so nothing is lost) and the image cap comes after: the selected scores are scattered into a dense
(N, C*K) map filled with -1, TopK takes the best max_detections per image (ties: lower class, then lower box, as
the numpy decoders order candidates), and the rows holding a real score are kept. The third is not: it visits
equal scores of one class in heap order, not index order, so among exactly tied, overlapping boxes (frequent only
in coarsely quantized outputs) it may keep another one than the numpy NMS does.

Opsets: the appended nodes are valid from ai.onnx opset 11 (NonMaxSuppression 10, TopK and ScatterND 11) and mean
the same at every later one (Softmax on the last axis, Reshape without allowzero, no Split, Squeeze or Reduce*
whose signatures changed); an older graph is converted to 11 first. They are float32 whatever the graph is: a QDQ
int8 graph's outputs are dequantized already. Other outputs of the parent are dropped.

params: {"detection": DetectionSpec.to_dict()} (the recipe's `model.detection`), nothing else; empty, or a
yolov2_region spec without anchors, is completed from the recipe's model as builder/detection.py's detection_spec
does (tiny-YOLOv2 is a region detector with its own anchors). The new artifact's meta carries `detection`, the
nms_spec its outputs are read with, and its host_accuracy is scored again through them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.detection.decoders import MAX_SIZE_LOGIT, DetectionSpec
from orchestrator.builder import STEPS, OnnxNode
from orchestrator.builder.evaluate import host_accuracy
from orchestrator.builder.onnx_source import check_runs, converted, image_side, opsets
from orchestrator.errors import BuildError, first_line

if TYPE_CHECKING:
    import onnx

SUPPORTED = ("yolov2_region", "yolov5", "yolov8")
OUTPUTS = ("boxes", "scores", "labels", "batch_index")
MIN_OPSET = 11
PREFIX = "graph_nms/"


def nms_spec(spec: DetectionSpec) -> DetectionSpec:
    """The `nms` DetectionSpec that reads the outputs of `spec`'s model once graph_nms is appended to it."""
    return DetectionSpec(decoder="nms", conf_threshold=spec.conf_threshold, iou_threshold=spec.iou_threshold,
                         max_detections=spec.max_detections, class_names=spec.class_names, box_format="xyxy",
                         normalized=False, outputs={role: role for role in OUTPUTS})


def with_nms(model: onnx.ModelProto, spec: DetectionSpec, input_hw: tuple[int, int],
             raw_shape: Sequence[int]) -> onnx.ModelProto:
    """`model` with `spec`'s decoding and NMS appended (module docstring); raw_shape: its raw output's shape."""
    from onnx import TensorProto, helper

    if spec.decoder not in SUPPORTED:
        raise BuildError(f"graph_nms: decoder {spec.decoder!r} is not supported (only {', '.join(SUPPORTED)})")
    taken = {name for node in model.graph.node for name in node.output} | {i.name for i in model.graph.input}
    if taken & set(OUTPUTS):
        raise BuildError(f"graph_nms: the graph already has tensors named {', '.join(sorted(taken & set(OUTPUTS)))}")
    if opsets(model).get("", 1) < MIN_OPSET:
        model = converted(model, MIN_OPSET, "graph_nms")
    raw = (spec.outputs or {}).get("output") or model.graph.output[0].name
    graph = _Appender()
    boxes, scores, num_classes, num_boxes = {"yolov2_region": _region, "yolov5": _yolov5, "yolov8": _yolov8}[
        spec.decoder](graph, raw, spec, input_hw, raw_shape)
    _select(graph, boxes, scores, num_classes, num_boxes, spec)
    model.graph.node.extend(graph.nodes)
    model.graph.initializer.extend(graph.initializers)
    del model.graph.output[:]
    model.graph.output.extend([
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["detections", 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["detections"]),
        helper.make_tensor_value_info("labels", TensorProto.INT64, ["detections"]),
        helper.make_tensor_value_info("batch_index", TensorProto.INT64, ["detections"])])
    return model


def raw_output_shape(data: bytes, model_input: dict[str, Any], name: str | None) -> list[int]:
    """The shape of the model's raw output `name` (None: its first) on one zero input, as onnxruntime runs it."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    if name is not None and name not in names:
        raise BuildError(f"graph_nms: the model has no output {name!r} (outputs: {', '.join(names)})")
    feed = {model_input["name"]: np.zeros(model_input["shape"], dtype=model_input["dtype"])}
    return list(session.run([name or names[0]], feed)[0].shape)


def input_hw(model_input: dict[str, Any]) -> tuple[int, int]:
    """(height, width) of an image input described by describe_input, whatever its layout."""
    shape = model_input["shape"]
    return (int(shape[1]), int(shape[2])) if model_input.get("layout") == "NHWC" else (int(shape[2]), int(shape[3]))


class _Appender:
    """Nodes and constants to append to a graph, every name under PREFIX."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def const(self, values: Any, dtype: Any = np.float32) -> str:
        from onnx import numpy_helper

        name = f"{PREFIX}c{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int = 1, named: str | None = None, **attrs: Any) -> Any:
        """One node; its output name (or names, when outputs > 1); `named`: the name of its one output."""
        from onnx import helper

        index = len(self.nodes)
        names = [named] if named else [f"{PREFIX}{op_type.lower()}{index}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=f"{PREFIX}{op_type}{index}", **attrs))
        return names if outputs > 1 else names[0]

    def slice(self, data: str, start: int, stop: int, axis: int) -> str:
        return self.op("Slice", [data, self.const([start], np.int64), self.const([stop], np.int64),
                                 self.const([axis], np.int64)])


def _region(graph: _Appender, raw: str, spec: DetectionSpec, size: tuple[int, int],
            raw_shape: Sequence[int]) -> tuple[str, str, int, int]:
    """yolov2_region decoding, as decoders._yolov2_region computes it: boxes (N, K, 4), scores (N, C, K), C, K."""
    anchors = np.asarray(spec.anchors, dtype=np.float32)
    fields, grid_h, grid_w = raw_shape[1] // len(anchors), raw_shape[2], raw_shape[3]
    count = len(anchors) * grid_h * grid_w
    stride = np.array([size[1] / grid_w, size[0] / grid_h], dtype=np.float32)
    cell_y, cell_x = np.meshgrid(np.arange(grid_h, dtype=np.float32), np.arange(grid_w, dtype=np.float32),
                                 indexing="ij")
    grid = np.tile(np.stack([cell_x.ravel(), cell_y.ravel()], axis=1), (len(anchors), 1))
    anchor_px = np.repeat(anchors * stride, grid_h * grid_w, axis=0)
    cells = graph.op("Reshape", [raw, graph.const([-1, len(anchors), fields, grid_h * grid_w], np.int64)])
    cells = graph.op("Transpose", [cells], perm=[0, 1, 3, 2])
    cells = graph.op("Reshape", [cells, graph.const([-1, count, fields], np.int64)])
    centre = graph.op("Mul", [graph.op("Add", [graph.op("Sigmoid", [graph.slice(cells, 0, 2, 2)]),
                                               graph.const(grid[None])]), graph.const(stride)])
    sizes = graph.op("Exp", [graph.op("Min", [graph.slice(cells, 2, 4, 2), graph.const(MAX_SIZE_LOGIT)])])
    half = graph.op("Mul", [graph.op("Mul", [sizes, graph.const(anchor_px[None])]), graph.const(0.5)])
    boxes = graph.op("Concat", [graph.op("Sub", [centre, half]), graph.op("Add", [centre, half])], axis=2)
    scores = graph.op("Mul", [graph.op("Sigmoid", [graph.slice(cells, 4, 5, 2)]),
                              graph.op("Softmax", [graph.slice(cells, 5, fields, 2)], axis=-1)])
    return boxes, graph.op("Transpose", [scores], perm=[0, 2, 1]), fields - 5, count


def _yolov5(graph: _Appender, raw: str, spec: DetectionSpec, size: tuple[int, int],
            raw_shape: Sequence[int]) -> tuple[str, str, int, int]:
    """yolov5 decoding: (N, K, 5+C) rows -> boxes (N, K, 4), best-class scores (N, C, K), C, K."""
    boxes = _corners(graph, raw, bool(spec.normalized), size)
    num_classes = raw_shape[2] - 5
    best = _best_class(graph, graph.slice(raw, 5, raw_shape[2], 2), num_classes, graph.slice(raw, 4, 5, 2))
    return boxes, best, num_classes, raw_shape[1]


def _yolov8(graph: _Appender, raw: str, spec: DetectionSpec, size: tuple[int, int],
            raw_shape: Sequence[int]) -> tuple[str, str, int, int]:
    """yolov8 decoding: (N, 4+C, K) -> boxes (N, K, 4), best-class scores (N, C, K), C, K."""
    rows = graph.op("Transpose", [raw], perm=[0, 2, 1])
    boxes = _corners(graph, rows, bool(spec.normalized), size)
    num_classes = raw_shape[1] - 4
    return boxes, _best_class(graph, graph.slice(rows, 4, raw_shape[1], 2), num_classes, None), num_classes, \
        raw_shape[2]


def _corners(graph: _Appender, rows: str, normalized: bool, size: tuple[int, int]) -> str:
    """cx cy w h (the first 4 fields of each row) as x1 y1 x2 y2 in input pixels, as decoders._corners does."""
    centre = graph.slice(rows, 0, 2, 2)
    half = graph.op("Mul", [graph.slice(rows, 2, 4, 2), graph.const(0.5)])
    boxes = graph.op("Concat", [graph.op("Sub", [centre, half]), graph.op("Add", [centre, half])], axis=2)
    if normalized:
        boxes = graph.op("Mul", [boxes, graph.const([size[1], size[0], size[1], size[0]])])
    return boxes


def _best_class(graph: _Appender, classes: str, num_classes: int, objectness: str | None) -> str:
    """Each box scored in its best class only (the first of equals, as numpy's argmax), 0 elsewhere: (N, C, K)."""
    best, index = graph.op("TopK", [classes, graph.const([1], np.int64)], outputs=2, axis=-1, largest=1, sorted=1)
    if objectness is not None:
        best = graph.op("Mul", [objectness, best])
    one_hot = graph.op("Cast", [graph.op("Equal", [index, graph.const(np.arange(num_classes)[None, None],
                                                                        np.int64)])], to=1)  # to float
    return graph.op("Transpose", [graph.op("Mul", [one_hot, best])], perm=[0, 2, 1])


def _select(graph: _Appender, boxes: str, scores: str, num_classes: int, num_boxes: int, spec: DetectionSpec) -> None:
    """NonMaxSuppression, then the best max_detections per image as the outputs (module docstring)."""
    selected = graph.op("NonMaxSuppression", [
        boxes, scores, graph.const([spec.max_detections], np.int64), graph.const([spec.iou_threshold]),
        graph.const([spec.conf_threshold])])
    # Dense (N, C*K) map of the selected scores, -1 elsewhere; TopK finds each image's best.
    dense = graph.op("ScatterND", [graph.op("ConstantOfShape", [graph.op("Shape", [scores])],
                                            value=_float_tensor(-1.0)),
                                   selected, graph.op("GatherND", [scores, selected])])
    flat = graph.op("Reshape", [dense, graph.const([0, -1], np.int64)])
    wanted = graph.const([min(spec.max_detections, num_classes * num_boxes)], np.int64)
    top, position = graph.op("TopK", [flat, wanted], outputs=2, axis=1, largest=1, sorted=1)
    box_count = graph.const(num_boxes, np.int64)
    found = graph.op("Transpose", [graph.op("NonZero", [graph.op("Greater", [top, graph.const(-0.5)])])],
                     perm=[1, 0])  # (M, 2): image, rank
    graph.op("GatherND", [top, found], named="scores")
    flat_index = graph.op("GatherND", [position, found])
    graph.op("Div", [flat_index, box_count], named="labels")
    box = graph.op("Reshape", [graph.op("Mod", [flat_index, box_count]), graph.const([-1, 1], np.int64)])
    image = graph.op("Gather", [found, graph.const(0, np.int64)], named="batch_index", axis=1)
    pair = graph.op("Concat", [graph.op("Reshape", [image, graph.const([-1, 1], np.int64)]), box], axis=1)
    graph.op("GatherND", [boxes, pair], named="boxes")


def _float_tensor(value: float) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor("value", TensorProto.FLOAT, [1], [value])


class GraphNmsStep:
    """Append the detector's decoding and NMS to its graph (module docstring)."""

    name = "graph_nms"
    version = "1"
    produces = "onnx"

    def run(self, ctx: Any, parent: OnnxNode, params: dict[str, Any]) -> OnnxNode:
        import onnx

        spec = step_spec(ctx, params)
        problems = spec.problems()
        if problems:
            raise BuildError("graph_nms: " + "; ".join(f"detection.{key} {what}" for key, what in problems))
        model_input = parent.meta["input"]
        data = ctx.store.path(parent.sha256, ".onnx").read_bytes()
        model = onnx.load_model_from_string(data)
        before = len(model.graph.node)
        raw_shape = raw_output_shape(data, model_input, (spec.outputs or {}).get("output"))
        appended = with_nms(model, spec, input_hw(model_input), raw_shape).SerializeToString()
        check_runs(appended, model_input, "graph_nms")
        sha, facts = ctx.put_onnx(appended, model_input)
        decoded_by = nms_spec(spec).to_dict()
        return OnnxNode(sha, {**facts, "detection": decoded_by, "nodes_before_graph_nms": before,
                              "host_accuracy": host_accuracy(ctx, sha, image_side(model_input), decoded_by)})


def step_spec(ctx: Any, params: dict[str, Any]) -> DetectionSpec:
    """The DetectionSpec of the step's params, completed from the recipe's model when they leave it open."""
    declared = params.get("detection") or None
    try:
        spec = DetectionSpec.from_dict(declared) if declared else None
    except (TypeError, ValueError) as exc:
        raise BuildError(f"graph_nms: params need a valid `detection` spec: {first_line(exc)}") from exc
    if spec is None or (spec.decoder == "yolov2_region" and spec.anchors is None):
        from orchestrator.builder.detection import detection_spec

        completed = detection_spec(ctx)  # the recipe's model.detection, a zoo detector's anchors filled in
        if completed is None:
            raise BuildError("graph_nms: the model is not a detector the recipe describes: give model.detection")
        spec = completed
    return spec


STEPS.register(GraphNmsStep.name)(GraphNmsStep())
