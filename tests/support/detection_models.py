"""ONNX detectors with known answers, one per decoder layout, built here with onnx.helper (nothing downloaded).

Every fixture's raw outputs are constants constructed from TRUTH (known boxes in input pixels, scores, labels) by
inverting its layout's decoding, added to the model input reduced to zero (so the graph really reads its input and
takes any batch size). The NMS-ending fixtures (TF Object Detection's layout, torchvision's) run a real
NonMaxSuppression node on constant candidates. Decoded and suppressed, every fixture must give back EXPECTED.

The `live_*` models compute their raw outputs from the image (one strided convolution, random weights), for
comparing graph_nms with the numpy decoders on outputs that vary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agent.detection.decoders import DetectionSpec

INPUT_HW = (96, 128)  # height, width: not square, so per-axis strides and scales are exercised
INPUT_NAME = "images"
OPSET = 17
CLASSES = 3
CONF = 0.05  # the fixtures' threshold: what is not a known box scores far below it
# Known boxes (x1, y1, x2, y2 in input pixels), scores, labels. Box 1 overlaps box 0 (same class, IoU 0.68):
# suppressed. Box 2 is box 1 in another class: kept. Box 4 overlaps box 0 a little (IoU 0.11): kept.
TRUTH_BOXES = np.array([[10, 12, 50, 60], [14, 16, 54, 62], [14, 16, 54, 62], [70, 20, 120, 90],
                        [40, 40, 70, 80]], dtype=np.float32)
TRUTH_SCORES = np.array([0.9, 0.6, 0.8, 0.7, 0.5], dtype=np.float32)
TRUTH_LABELS = np.array([0, 0, 1, 2, 0], dtype=np.int64)
KEPT = [0, 2, 3, 4]  # what per-class NMS at 0.45 keeps, best first
EXPECTED = (TRUTH_BOXES[KEPT], TRUTH_SCORES[KEPT], TRUTH_LABELS[KEPT])
REGION_ANCHORS = [[1.0, 1.5], [2.0, 1.0], [1.5, 2.5]]
OTHER_PROBABILITY = 1e-4  # every class but a box's own, for layouts that score every class


@dataclass
class Fixture:
    """A detector with a known answer: decode(its outputs, spec) must give EXPECTED for every image."""

    name: str
    model: bytes
    spec: DetectionSpec
    expected: tuple[np.ndarray, np.ndarray, np.ndarray] = field(default=EXPECTED)


def _logit(p: Any) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return np.log(p / (1 - p))


def _cxcywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)


def _probabilities(labels: np.ndarray, scores: np.ndarray | None, columns: int) -> np.ndarray:
    """Rows of class probabilities: OTHER_PROBABILITY everywhere, the rest on the box's label (or `scores`)."""
    rows = np.full((len(labels), columns), OTHER_PROBABILITY)
    own = 1 - OTHER_PROBABILITY * (columns - 1) if scores is None else scores
    rows[np.arange(len(labels)), labels] = own
    return rows


def constant_model(outputs: dict[str, np.ndarray]) -> bytes:
    """A model whose outputs are `outputs` (each with a batch axis of 1, broadcast to the input's batch), plus the
    input reduced to zero."""
    h, w = INPUT_HW
    nodes = [helper.make_node("ReduceMean", [INPUT_NAME], ["mean"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Mul", ["mean", "zero_f"], ["zero"])]
    inits = [numpy_helper.from_array(np.array(0, np.float32), "zero_f")]
    for name, value in outputs.items():
        value = np.asarray(value)
        if value.dtype != np.float32:  # integer outputs: the zero is cast too
            nodes.append(helper.make_node("Cast", ["zero"], [f"{name}_zero"], to=helper.np_dtype_to_tensor_dtype(
                value.dtype)))
            zero = f"{name}_zero"
        else:
            zero = "zero"
        inits.append(numpy_helper.from_array(np.array([-1] + [1] * (value.ndim - 1), np.int64), f"{name}_shape"))
        nodes.append(helper.make_node("Reshape", [zero, f"{name}_shape"], [f"{name}_batch_zero"]))
        zero = f"{name}_batch_zero"
        inits.append(numpy_helper.from_array(value, f"{name}_value"))
        nodes.append(helper.make_node("Add", [zero, f"{name}_value"], [name]))
    graph = helper.make_graph(
        nodes, "known_detections", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, h, w])],
        [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype),
                                       ["N", *np.asarray(v).shape[1:]]) for name, v in outputs.items()], inits)
    return _finish(graph)


def _finish(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # onnxruntime 1.16 reads up to 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def yolov2_region() -> Fixture:
    """(1, A*(5+C), H, W): each known box in its own anchor slot of the cell holding its centre."""
    anchors = np.array(REGION_ANCHORS)
    grid_h, grid_w = INPUT_HW[0] // 32, INPUT_HW[1] // 32
    raw = np.zeros((len(anchors), 5 + CLASSES, grid_h, grid_w))
    raw[:, 4] = -30.0  # no object anywhere else
    taken: set[tuple[int, int, int]] = set()
    for box, score, label in zip(_cxcywh(TRUTH_BOXES.astype(np.float64)), TRUTH_SCORES, TRUTH_LABELS, strict=True):
        cx, cy = box[0] / 32, box[1] / 32
        cell_x, cell_y = int(cx), int(cy)
        anchor = next(a for a in range(len(anchors)) if (a, cell_y, cell_x) not in taken)
        taken.add((anchor, cell_y, cell_x))
        probabilities = _probabilities(np.array([label]), None, CLASSES)[0]
        raw[anchor, 0, cell_y, cell_x] = _logit(cx - cell_x)
        raw[anchor, 1, cell_y, cell_x] = _logit(cy - cell_y)
        raw[anchor, 2:4, cell_y, cell_x] = np.log(box[2:] / 32 / anchors[anchor])
        raw[anchor, 4, cell_y, cell_x] = _logit(score / probabilities[label])
        raw[anchor, 5:, cell_y, cell_x] = np.log(probabilities)
    output = raw.reshape(1, -1, grid_h, grid_w).astype(np.float32)
    return Fixture("yolov2_region", constant_model({"output": output}),
                   DetectionSpec("yolov2_region", anchors=REGION_ANCHORS, conf_threshold=CONF))


def _background_rows(count: int, width: int) -> np.ndarray:
    """Rows of nothing: small boxes in a corner, every score 0."""
    rows = np.zeros((count, width))
    rows[:, :4] = [4, 4, 2, 2]
    return rows


def yolov5() -> Fixture:
    """(1, K, 5+C): cx cy w h in pixels, objectness, class probabilities; box 1 and 2 are two rows."""
    class_rows = np.full((len(TRUTH_LABELS), CLASSES), 0.01)
    class_rows[np.arange(len(TRUTH_LABELS)), TRUTH_LABELS] = 0.95
    known = np.concatenate([_cxcywh(TRUTH_BOXES.astype(np.float64)), (TRUTH_SCORES / 0.95)[:, None], class_rows], 1)
    rows = np.concatenate([_background_rows(3, 5 + CLASSES), known, _background_rows(4, 5 + CLASSES)])
    return Fixture("yolov5", constant_model({"output0": rows[None].astype(np.float32)}),
                   DetectionSpec("yolov5", conf_threshold=CONF))


def yolov8() -> Fixture:
    """(1, 4+C, K), transposed: cx cy w h in pixels, class probabilities, no objectness."""
    class_rows = _probabilities(TRUTH_LABELS, TRUTH_SCORES.astype(np.float64), CLASSES)
    known = np.concatenate([_cxcywh(TRUTH_BOXES.astype(np.float64)), class_rows], 1)
    rows = np.concatenate([known, _background_rows(6, 4 + CLASSES)])
    return Fixture("yolov8", constant_model({"output0": rows.T[None].astype(np.float32)}),
                   DetectionSpec("yolov8", conf_threshold=CONF))


def ssd_priors() -> Fixture:
    """boxes (1, K, 4) as offsets from priors (variances 0.1, 0.2), scores (1, K, 1+C) logits with background 0."""
    h, w = INPUT_HW
    relative = _cxcywh(TRUTH_BOXES.astype(np.float64)) / [w, h, w, h]
    rng = np.random.default_rng(0)
    priors = np.concatenate([relative[:, :2] + rng.uniform(-0.05, 0.05, (len(relative), 2)),
                             relative[:, 2:] * rng.uniform(0.7, 1.3, (len(relative), 2))], axis=1)
    background_priors = np.tile([[0.5, 0.5, 0.2, 0.2]], (4, 1))
    codes = np.concatenate([(relative[:, :2] - priors[:, :2]) / (0.1 * priors[:, 2:]),
                            np.log(relative[:, 2:] / priors[:, 2:]) / 0.2], axis=1)
    probabilities = _probabilities(TRUTH_LABELS + 1, TRUTH_SCORES.astype(np.float64), 1 + CLASSES)
    probabilities[:, 0] = 1 - probabilities[:, 1:].sum(axis=1)
    background = _probabilities(np.zeros(4, dtype=np.int64), None, 1 + CLASSES)
    boxes = np.concatenate([codes, np.zeros((4, 4))])[None].astype(np.float32)
    scores = np.log(np.concatenate([probabilities, background]))[None].astype(np.float32)
    spec = DetectionSpec("ssd", anchors=np.concatenate([priors, background_priors]).tolist(), conf_threshold=CONF,
                         scores="softmax", background=True)
    return Fixture("ssd_priors", constant_model({"scores": scores, "boxes": boxes}), spec)


def ssd_decoded() -> Fixture:
    """boxes (1, K, 4) already decoded, y1 x1 y2 x2 relative to the input; scores (1, K, C) logits (sigmoid)."""
    h, w = INPUT_HW
    relative = TRUTH_BOXES.astype(np.float64)[:, [1, 0, 3, 2]] / [h, w, h, w]
    boxes = np.concatenate([relative, np.tile([[0.1, 0.1, 0.2, 0.2]], (3, 1))])[None].astype(np.float32)
    probabilities = np.concatenate([_probabilities(TRUTH_LABELS, TRUTH_SCORES.astype(np.float64), CLASSES),
                                    np.full((3, CLASSES), OTHER_PROBABILITY)])
    spec = DetectionSpec("ssd", conf_threshold=CONF, box_format="yxyx", scores="sigmoid",
                         outputs={"boxes": "locations", "scores": "confidences"})
    return Fixture("ssd_decoded", constant_model({"locations": boxes,
                                                  "confidences": _logit(probabilities)[None].astype(np.float32)}),
                   spec)


def _nms_nodes(boxes: np.ndarray, scores: np.ndarray) -> tuple[list[Any], list[Any]]:
    """Nodes running NonMaxSuppression (iou 0.45, CONF) on constant candidates boxes (1, K, 4), scores (1, C, K),
    then ranking what it selected by score: tensors sel_boxes (M, 4), sel_scores (M,), sel_classes (M,) int64."""
    inits = [numpy_helper.from_array(boxes.astype(np.float32), "cand_boxes"),
             numpy_helper.from_array(scores.astype(np.float32), "cand_scores"),
             numpy_helper.from_array(np.array([100], np.int64), "max_per_class"),
             numpy_helper.from_array(np.array([0.45], np.float32), "iou"),
             numpy_helper.from_array(np.array([CONF], np.float32), "conf"),
             numpy_helper.from_array(np.array(1, np.int64), "one"), numpy_helper.from_array(np.array(2, np.int64),
                                                                                             "two"),
             numpy_helper.from_array(np.array([-1, 4], np.int64), "rows4")]
    nodes = [helper.make_node("NonMaxSuppression", ["cand_boxes", "cand_scores", "max_per_class", "iou", "conf"],
                              ["selected"]),
             helper.make_node("GatherND", ["cand_scores", "selected"], ["unsorted_scores"]),
             helper.make_node("Shape", ["unsorted_scores"], ["count"]),
             helper.make_node("TopK", ["unsorted_scores", "count"], ["sel_scores", "rank"], axis=0),
             helper.make_node("Gather", ["selected", "rank"], ["ranked"], axis=0),
             helper.make_node("Gather", ["ranked", "one"], ["sel_classes"], axis=1),
             helper.make_node("Gather", ["ranked", "two"], ["box_index"], axis=1),
             helper.make_node("Reshape", ["cand_boxes", "rows4"], ["all_boxes"]),
             helper.make_node("Gather", ["all_boxes", "box_index"], ["sel_boxes"], axis=0)]
    return nodes, inits


def _candidates() -> tuple[np.ndarray, np.ndarray]:
    """TRUTH as NMS input: boxes (1, K, 4) x1 y1 x2 y2 pixels, per-class scores (1, C, K)."""
    scores = np.zeros((1, CLASSES, len(TRUTH_BOXES)))
    scores[0, TRUTH_LABELS, np.arange(len(TRUTH_BOXES))] = TRUTH_SCORES
    return TRUTH_BOXES[None].astype(np.float64), scores


def tf_nms() -> Fixture:
    """TF Object Detection's exported outputs: detection_boxes (N, 10, 4) y1 x1 y2 x2 normalized,
    detection_classes (N, 10) float from 1, detection_scores (N, 10), num_detections (N,) float; rows past
    num_detections are padding, scored 0.5 in class 1 so that ignoring the count would show."""
    h, w = INPUT_HW
    boxes, scores = _candidates()
    nodes, inits = _nms_nodes(boxes[:, :, [1, 0, 3, 2]] / [h, w, h, w], scores)
    rows = 10
    inits += [numpy_helper.from_array(np.array([rows], np.int64), "rows"),
              numpy_helper.from_array(np.array([0], np.int64), "zero_i"),
              numpy_helper.from_array(np.array([0], np.int64), "zero_tail"),
              numpy_helper.from_array(np.array(0.5, np.float32), "pad_score"),
              numpy_helper.from_array(np.array([1, rows, 4], np.int64), "shape_boxes"),
              numpy_helper.from_array(np.array([1, rows], np.int64), "shape_rows"),
              numpy_helper.from_array(np.array(1.0, np.float32), "one_f"),
              numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "batch3"),
              numpy_helper.from_array(np.array([-1, 1], np.int64), "batch2"),
              numpy_helper.from_array(np.array([-1], np.int64), "batch1"),
              numpy_helper.from_array(np.array(0, np.float32), "zero_f")]
    nodes += [helper.make_node("Sub", ["rows", "count"], ["missing"]),
              helper.make_node("Concat", ["zero_i", "missing"], ["pads1"], axis=0),
              helper.make_node("Concat", ["zero_i", "zero_i", "missing", "zero_tail"], ["pads2"], axis=0),
              helper.make_node("Pad", ["sel_boxes", "pads2"], ["padded_boxes"]),
              helper.make_node("Pad", ["sel_scores", "pads1", "pad_score"], ["padded_scores"]),
              helper.make_node("Cast", ["sel_classes"], ["classes_f"], to=TensorProto.FLOAT),
              helper.make_node("Add", ["classes_f", "one_f"], ["classes_from_1"]),
              helper.make_node("Pad", ["classes_from_1", "pads1", "one_f"], ["padded_classes"]),
              helper.make_node("Cast", ["count"], ["count_f"], to=TensorProto.FLOAT),
              helper.make_node("ReduceMean", [INPUT_NAME], ["mean"], axes=[1, 2, 3], keepdims=1),
              helper.make_node("Mul", ["mean", "zero_f"], ["zero4"])]
    for name, source, batch_shape, shape in (
            ("detection_boxes", "padded_boxes", "batch3", "shape_boxes"),
            ("detection_classes", "padded_classes", "batch2", "shape_rows"),
            ("detection_scores", "padded_scores", "batch2", "shape_rows"),
            ("num_detections", "count_f", "batch1", None)):
        nodes.append(helper.make_node("Reshape", ["zero4", batch_shape], [f"{name}_zero"]))
        if shape is not None:
            nodes.append(helper.make_node("Reshape", [source, shape], [f"{name}_one"]))
            source = f"{name}_one"
        nodes.append(helper.make_node("Add", [f"{name}_zero", source], [name]))
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in (
        ("detection_boxes", ["N", rows, 4]), ("detection_classes", ["N", rows]), ("detection_scores", ["N", rows]),
        ("num_detections", ["N"]))]
    graph = helper.make_graph(nodes, "tf_od_export", [helper.make_tensor_value_info(
        INPUT_NAME, TensorProto.FLOAT, ["N", 3, h, w])], outputs, inits)
    spec = DetectionSpec("nms", conf_threshold=CONF, box_format="yxyx", normalized=True, label_offset=1)
    return Fixture("tf_nms", _finish(graph), spec)


def torchvision_nms() -> Fixture:
    """torchvision's detection models exported: boxes (K, 4) x1 y1 x2 y2 pixels, labels (K,) int64 with 0 the
    background, scores (K,), in that order, for one image."""
    h, w = INPUT_HW
    boxes, scores = _candidates()
    nodes, inits = _nms_nodes(boxes, scores)
    inits += [numpy_helper.from_array(np.array(1, np.int64), "one_i"),
              numpy_helper.from_array(np.array(0, np.float32), "zero_f")]
    nodes += [helper.make_node("ReduceMean", [INPUT_NAME], ["mean"], keepdims=0),
              helper.make_node("Mul", ["mean", "zero_f"], ["zero"]),
              helper.make_node("Add", ["sel_boxes", "zero"], ["boxes"]),
              helper.make_node("Add", ["sel_classes", "one_i"], ["labels"]),
              helper.make_node("Add", ["sel_scores", "zero"], ["scores"])]
    outputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["K", 4]),
               helper.make_tensor_value_info("labels", TensorProto.INT64, ["K"]),
               helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["K"])]
    graph = helper.make_graph(nodes, "torchvision_export", [helper.make_tensor_value_info(
        INPUT_NAME, TensorProto.FLOAT, [1, 3, h, w])], outputs, inits)
    return Fixture("torchvision_nms", _finish(graph), DetectionSpec("nms", conf_threshold=CONF, label_offset=1))


FIXTURES = {f.__name__: f for f in (yolov2_region, yolov5, yolov8, ssd_priors, ssd_decoded, tf_nms, torchvision_nms)}


def live_model(decoder: str, seed: int = 0, logit_scale: float = 2.0) -> tuple[bytes, DetectionSpec]:
    """A detector whose raw outputs come from the image (an 8x8 stride-8 convolution with random weights, then
    the layout's shaping), and its spec (conf 0.05, iou 0.45, at most 20 per image)."""
    h, w = INPUT_HW
    grid_h, grid_w = h // 8, w // 8
    rng = np.random.default_rng(seed)
    fields = {"yolov2_region": len(REGION_ANCHORS) * (5 + CLASSES), "yolov5": 5 + CLASSES,
              "yolov8": 4 + CLASSES}[decoder]
    # Inputs are uniform in [0, 1) (E[x^2] = 1/3): over 192 weights of this spread, outputs spread by logit_scale.
    weight = rng.standard_normal((fields, 3, 8, 8)) * logit_scale / np.sqrt(3 * 64 / 3)
    inits = [numpy_helper.from_array(weight.astype(np.float32), "weight"),
             numpy_helper.from_array(rng.standard_normal(fields).astype(np.float32) * 0.5, "bias")]
    nodes = [helper.make_node("Conv", [INPUT_NAME, "weight", "bias"], ["conv"], kernel_shape=[8, 8], strides=[8, 8])]
    spec = DetectionSpec(decoder, conf_threshold=CONF, max_detections=20)
    if decoder == "yolov2_region":
        output, spec.anchors = "conv", REGION_ANCHORS
    else:
        # (N, fields, H, W) -> (N, K, fields); sigmoid; boxes scaled to pixels: centres anywhere, sizes up to 48.
        scale = np.ones(fields, np.float32)
        scale[:4] = [w, h, 48, 48]
        inits += [numpy_helper.from_array(np.array([0, fields, -1], np.int64), "rows"),
                  numpy_helper.from_array(scale, "scale")]
        nodes += [helper.make_node("Reshape", ["conv", "rows"], ["flat"]),
                  helper.make_node("Transpose", ["flat"], ["rows_k"], perm=[0, 2, 1]),
                  helper.make_node("Sigmoid", ["rows_k"], ["probabilities"]),
                  helper.make_node("Mul", ["probabilities", "scale"], ["decoded"])]
        output = "decoded"
        if decoder == "yolov8":
            nodes.append(helper.make_node("Transpose", ["decoded"], ["transposed"], perm=[0, 2, 1]))
            output = "transposed"
    graph = helper.make_graph(nodes, f"live_{decoder}", [helper.make_tensor_value_info(
        INPUT_NAME, TensorProto.FLOAT, ["N", 3, h, w])], [helper.make_tensor_value_info(
            output, TensorProto.FLOAT, {"yolov2_region": ["N", fields, grid_h, grid_w], "yolov5": [
                "N", grid_h * grid_w, fields], "yolov8": ["N", fields, grid_h * grid_w]}[decoder])], inits)
    return _finish(graph), spec
