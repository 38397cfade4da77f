"""Detection decoders: a detector's raw outputs as boxes, scores and labels per image, in input pixels.

`decode` finds each output's role, hands them to the layout's decoder (DECODERS, by the spec's `decoder`), keeps
the candidates scoring > conf_threshold, runs per-class NMS (agent/detection/nms.py; not for `nms`, whose graph
already did) and keeps the best max_detections per image. Layouts:

  yolov2_region  one output (N, A*(5+C), H, W), darknet's [region] layer (region_layer.c; cfg/tiny-yolo-voc.cfg) as
                 orchestrator/models/region.py decodes it: per anchor a and cell (x, y), fields tx ty tw th to and C
                 class logits; centre ((x, y) + sigmoid((tx, ty))) * stride, size anchor * exp(min((tw, th), 10))
                 * stride (anchors in grid cells, stride = input / grid per axis), score = sigmoid(to) *
                 softmax(logits). Every class above the threshold is a candidate (darknet and region.py do the same).
  yolov5         one output (N, K, 5+C) (ultralytics/yolov5 models/yolo.py Detect at export): cx cy w h in input
                 pixels, objectness, C class probabilities (sigmoids applied); score = objectness * class
                 probability. One candidate per box, its best class: utils/general.py non_max_suppression with
                 multi_label=False, as detect.py runs it (val.py's multi_label=True can score a little higher).
  yolov8         one output (N, 4+C, K), transposed (ultralytics/nn/modules/head.py Detect): cx cy w h in input
                 pixels, then C class probabilities, no objectness; best class per box (ultralytics/utils/ops.py
                 non_max_suppression, multi_label=False as `predict` runs it).
  ssd            outputs boxes (N, K, 4) and scores (N, K, C or C+1). With `anchors` (priors [cx, cy, w, h], 0-1):
                 boxes are offsets [lx, ly, lw, lh] decoded as Caffe SSD (CENTER_SIZE code with variances, as
                 ssd.pytorch's layers/box_utils.py `decode`): cx = p_cx + lx * v0 * p_w, cy = p_cy + ly * v0 * p_h,
                 w = p_w * exp(lw * v1), h = p_h * exp(lh * v1), relative, then scaled to input pixels. (TF Object
                 Detection's raw box_encodings are [ty, tx, th, tw]: not this layout.) Without priors: boxes already
                 decoded, in box_format (default xyxy), relative unless normalized is false. `scores`: softmax (over
                 the last axis, logits), sigmoid (logits) or probabilities (default: as given); `background`: class
                 0 is background (dropped, labels shifted down). Every class above the threshold is a candidate.
  nms            the graph ends in NMS: boxes (N, K, 4) or (K, 4), scores, labels, optionally count (N,) (TF's
                 num_detections: rows past it are padding) and batch_index (K,) (the image of each row of flat
                 outputs). TF Object Detection exports (exporter.py): yxyx normalized, float labels starting at 1
                 (label_offset 1), num_detections. torchvision's detection models: xyxy input pixels, int64 labels
                 (0 is background: label_offset 1 for the data set's classes). Defaults: xyxy, input pixels.

Output roles (`outputs` of the spec names them, role -> output name; else found): a single-output layout takes
the first output (role `output`). For ssd and nms an output is a role's when its name contains, checked in this
order: batch (batch_index), num or count (count), box (boxes), score (scores), label or class (labels); when
several names claim a role, one without raw/multiclass/anchor (TF2's raw_detection_boxes,
detection_multiclass_scores) wins, then the shortest. Roles still missing take the remaining outputs in order:
boxes the first whose last dimension is 4, labels an integer-typed one if any (torchvision's order is boxes,
labels, scores), then scores, labels; a last nms output is count when boxes have a batch axis, else batch_index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from agent.detection.nms import nms
from agent.registry import Registry

Candidates = Tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (k, 4) x1 y1 x2 y2 float32, scores (k,), labels (k,)
BOX_FORMATS = ("xyxy", "yxyx", "cxcywh")
SCORE_KINDS = ("probabilities", "softmax", "sigmoid")
# Roles by name: checked in this order, the first whose keyword is in an output's name takes it.
NAME_KEYWORDS = (("batch_index", ("batch",)), ("count", ("num", "count")), ("boxes", ("box",)),
                 ("scores", ("score",)), ("labels", ("label", "class")))
SECONDARY_NAMES = ("raw", "multiclass", "anchor")
# exp() of a size offset is capped here, as region.py does: an untrained head would overflow float32.
MAX_SIZE_LOGIT = 10.0


@dataclass
class DetectionSpec:
    """How a detector's raw outputs become boxes (recipes: `model.detection`). Fields:

      decoder         yolov2_region, yolov5, yolov8, ssd or nms (the layouts of the module docstring)
      anchors         yolov2_region: (w, h) per anchor in grid cells (required); ssd: priors [cx, cy, w, h]
                      relative to the input (0-1), one per box (absent: boxes are already decoded)
      conf_threshold  candidates scoring at or below it are dropped before NMS (0.001: COCO-style evaluation)
      iou_threshold   NMS: a box overlapping a better one of its class by more than this is suppressed
      max_detections  per image, after NMS, best first
      class_names     the model's classes in its label order (None: the data set's)
      box_format      ssd without priors and nms: xyxy, yxyx or cxcywh (default xyxy)
      normalized      boxes relative to the input size (0-1) rather than input pixels (yolov5, yolov8, ssd
                      without priors, nms; default: true for ssd, else false)
      scores          ssd: what the class outputs are: probabilities (default), softmax or sigmoid (logits)
      background      ssd: class 0 is background (dropped, labels shifted down by one)
      variances       ssd with priors: [centre, size] variances of the box code (default 0.1, 0.2)
      label_offset    nms: the model's label value of class_names[0] (TF Object Detection exports start at 1)
      outputs         ssd, nms: role -> output name (roles: boxes, scores, labels, count, batch_index); the
                      single-output layouts: {"output": name}; default: found as the module docstring says
    """

    decoder: str
    anchors: Optional[List[List[float]]] = None
    conf_threshold: float = 0.001
    iou_threshold: float = 0.45
    max_detections: int = 100
    class_names: Optional[List[str]] = None
    box_format: Optional[str] = None
    normalized: Optional[bool] = None
    scores: Optional[str] = None
    background: bool = False
    variances: List[float] = field(default_factory=lambda: [0.1, 0.2])
    label_offset: int = 0
    outputs: Optional[Dict[str, str]] = None

    def problems(self) -> List[Tuple[str, str]]:
        """(field, what is wrong) for each field that cannot be used as written."""
        if not isinstance(self.decoder, str) or self.decoder not in DECODERS:
            return [("decoder", f"must be one of {', '.join(DECODERS.names())}")]
        layout, decoder = DECODERS.get(self.decoder), self.decoder
        anchors = self._anchors_problem()
        found = [("anchors", anchors)] if anchors else []
        if not (_finite(self.conf_threshold) and 0 <= self.conf_threshold < 1):
            found.append(("conf_threshold", "must be a number from 0 to below 1"))
        if not (_finite(self.iou_threshold) and 0 < self.iou_threshold <= 1):
            found.append(("iou_threshold", "must be a number above 0, at most 1"))
        if isinstance(self.max_detections, bool) or not isinstance(self.max_detections, int) \
                or self.max_detections < 1:
            found.append(("max_detections", "must be an integer of at least 1"))
        if self.class_names is not None and (not isinstance(self.class_names, list) or not self.class_names
                                             or not all(isinstance(n, str) for n in self.class_names)):
            found.append(("class_names", "must be a non-empty list of names"))
        decoded_boxes = decoder == "nms" or (decoder == "ssd" and self.anchors is None)
        if self.box_format is not None and not decoded_boxes:
            found.append(("box_format", "applies to ssd without priors and to nms only"))
        elif self.box_format is not None and self.box_format not in BOX_FORMATS:
            found.append(("box_format", f"must be one of {', '.join(BOX_FORMATS)}"))
        if self.normalized is not None and (decoder == "yolov2_region" or (decoder == "ssd" and self.anchors)):
            found.append(("normalized", "does not apply: these boxes are decoded from anchors"))
        elif self.normalized is not None and not isinstance(self.normalized, bool):
            found.append(("normalized", "must be true or false"))
        if self.scores is not None and decoder != "ssd":
            found.append(("scores", "applies to ssd only"))
        elif self.scores is not None and self.scores not in SCORE_KINDS:
            found.append(("scores", f"must be one of {', '.join(SCORE_KINDS)}"))
        if self.background is not False and (decoder != "ssd" or not isinstance(self.background, bool)):
            found.append(("background", "is true or false, and applies to ssd only"))
        if not (isinstance(self.variances, (list, tuple)) and len(self.variances) == 2
                and all(_finite(v) and v > 0 for v in self.variances)):
            found.append(("variances", "must be two numbers above 0: [centre, size]"))
        if isinstance(self.label_offset, bool) or not isinstance(self.label_offset, int):
            found.append(("label_offset", "must be an integer"))
        elif self.label_offset and decoder != "nms":
            found.append(("label_offset", "applies to nms only"))
        if self.outputs is not None:
            roles = layout.required + layout.optional
            if not isinstance(self.outputs, dict) or not all(isinstance(v, str) for v in self.outputs.values()):
                found.append(("outputs", "must map roles to output names"))
            elif set(self.outputs) - set(roles):
                found.append(("outputs", f"unknown role(s) {', '.join(sorted(set(self.outputs) - set(roles)))}; "
                                         f"{decoder} has {', '.join(roles)}"))
        return found

    def _anchors_problem(self) -> Optional[str]:
        """What is wrong with `anchors` for this decoder, if anything."""
        width = 2 if self.decoder == "yolov2_region" else 4
        if self.decoder == "yolov2_region" and not self.anchors:
            return "yolov2_region needs anchors: (w, h) per anchor, in grid cells"
        if self.anchors is not None and self.decoder not in ("yolov2_region", "ssd"):
            return f"do not apply to {self.decoder} (only yolov2_region anchors and ssd priors)"
        if self.anchors is not None and not (isinstance(self.anchors, list) and self.anchors and all(
                isinstance(a, (list, tuple)) and len(a) == width and all(_finite(v) for v in a)
                and all(v > 0 for v in a[width - 2:]) for a in self.anchors)):
            what = "(w, h) pairs" if width == 2 else "[cx, cy, w, h] priors"
            return f"must be a list of {what} of finite numbers, sizes > 0"
        return None

    @classmethod
    def from_dict(cls, raw: Dict[str, Any]) -> "DetectionSpec":
        """A spec from JSON-shaped data; ValueError naming unknown keys (problems() checks the values)."""
        if not isinstance(raw, dict) or "decoder" not in raw:
            raise ValueError("a detection spec is a mapping with at least `decoder`")
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown detection spec key(s): {', '.join(unknown)}")
        return cls(**raw)

    def to_dict(self) -> Dict[str, Any]:
        """The spec as JSON-shaped data (from_dict reads it back)."""
        body = {f.name: getattr(self, f.name) for f in fields(self)}
        body["variances"] = list(self.variances)
        return body


@dataclass(frozen=True)
class Layout:
    """One raw-output layout: its output roles, its decoder (role -> array, spec, input (h, w) -> candidates per
    image), how many classes its output shapes say (role -> shape), and whether its graph already ran NMS."""

    required: Tuple[str, ...]
    decode: Callable[[Dict[str, np.ndarray], DetectionSpec, Tuple[int, int]], List[Candidates]]
    classes: Callable[[DetectionSpec, Dict[str, Sequence[Any]]], Optional[int]]
    optional: Tuple[str, ...] = ()
    suppressed: bool = False


DECODERS: Registry[Layout] = Registry("detection decoder")


def decode(outputs: Sequence[np.ndarray], output_names: Sequence[str], spec: DetectionSpec,
           input_hw: Tuple[int, int], batch_size: Optional[int] = None) -> List[Candidates]:
    """Per image of the batch: (boxes (k, 4) float32 x1 y1 x2 y2 in input pixels, scores (k,) float32, labels (k,)
    int64), after conf_threshold, per-class NMS (except for `nms`: the graph already did it) and max_detections,
    best first. batch_size: the number of images, for flat nms outputs (default: the highest batch_index + 1)."""
    layout = DECODERS.get(spec.decoder)
    arrays = [np.asarray(output) for output in outputs]
    roles = output_roles(spec, layout, output_names, [a.shape for a in arrays], [a.dtype for a in arrays])
    by_role = {role: arrays[index] for role, index in roles.items()}
    results = []
    for boxes, scores, labels in layout.decode(by_role, spec, input_hw):
        if layout.suppressed:
            order = np.argsort(-scores, kind="stable")[:spec.max_detections]
        else:
            order = nms(boxes, scores, labels, spec.iou_threshold, spec.max_detections)
        results.append((boxes[order].astype(np.float32), scores[order].astype(np.float32),
                        labels[order].astype(np.int64)))
    # Flat nms outputs only know the images that have detections: the last ones may have none.
    while batch_size is not None and len(results) < batch_size:
        results.append((np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)))
    return results


def model_classes(spec: DetectionSpec, output_shapes: Sequence[Sequence[Any]],
                  output_names: Optional[Sequence[str]] = None) -> Optional[int]:
    """How many classes the model scores, from its output shapes (None when the layout does not say, e.g. nms, or
    a dimension is symbolic). output_names, when known, find ssd's roles as decode does; else by shape."""
    layout = DECODERS.get(spec.decoder)
    if output_names is None:  # declared roles name outputs, which cannot be found without names: by shape then
        spec, output_names = replace(spec, outputs=None), [""] * len(output_shapes)
    try:
        roles = output_roles(spec, layout, output_names, output_shapes, None)
    except ValueError:
        return None
    return layout.classes(spec, {role: output_shapes[index] for role, index in roles.items()})


def output_roles(spec: DetectionSpec, layout: Layout, names: Sequence[str], shapes: Sequence[Sequence[Any]],
                 dtypes: Optional[Sequence[Any]]) -> Dict[str, int]:
    """Role -> output index (module docstring: declared, else by name, else by order); ValueError if one is
    missing."""
    roles: Dict[str, int] = {}
    for role, name in (spec.outputs or {}).items():
        if name not in names:
            raise ValueError(f"detection output {name!r} ({role}) is not an output of the model: {list(names)}")
        roles[role] = list(names).index(name)
    free = [i for i in range(len(names)) if i not in roles.values()]
    wanted = layout.required + layout.optional
    if layout.required == ("output",):
        if "output" not in roles and free:
            roles["output"] = free[0]
    else:
        claims: Dict[str, List[int]] = {}
        for index in free:
            lowered = names[index].lower()
            claimed = next((r for r, words in NAME_KEYWORDS if any(w in lowered for w in words)), "")
            if claimed in wanted and claimed not in roles:
                claims.setdefault(claimed, []).append(index)
        for role, indexes in claims.items():
            roles[role] = min(indexes, key=lambda i: (any(w in names[i].lower() for w in SECONDARY_NAMES),
                                                      len(names[i])))
        free = [i for i in free if i not in roles.values()]
        _by_order(roles, free, shapes, dtypes, layout)
    missing = [role for role in layout.required if role not in roles]
    if missing:
        raise ValueError(f"{spec.decoder} needs outputs for {', '.join(missing)}; the model has {list(names)} "
                         f"(name them in `outputs`)")
    return roles


def _by_order(roles: Dict[str, int], free: List[int], shapes: Sequence[Sequence[Any]],
              dtypes: Optional[Sequence[Any]], layout: Layout) -> None:
    """Give the roles names did not find the remaining outputs (module docstring's order rule), in place."""
    if "boxes" not in roles:
        boxed = [i for i in free if len(shapes[i]) >= 2 and shapes[i][-1] == 4]
        if boxed:
            roles["boxes"] = boxed[0]
            free.remove(boxed[0])
    if "labels" in layout.required and "labels" not in roles and dtypes is not None:
        integers = [i for i in free if np.dtype(dtypes[i]).kind in "iu"]
        if integers:
            roles["labels"] = integers[0]
            free.remove(integers[0])
    for role in layout.required:
        if role not in roles and free:
            roles[role] = free.pop(0)
    if free and layout.optional and "boxes" in roles:
        role = "count" if len(shapes[roles["boxes"]]) == 3 else "batch_index"
        if role not in roles:
            roles[role] = free.pop(0)


# -- the layouts ---------------------------------------------------------------------------------------------------
def _yolov2_region(outputs: Dict[str, np.ndarray], spec: DetectionSpec, input_hw: Tuple[int, int]) -> List[Candidates]:
    raw = outputs["output"].astype(np.float32, copy=False)
    anchors = np.asarray(spec.anchors, dtype=np.float32)
    batch, channels, grid_h, grid_w = raw.shape
    fields_per_anchor = channels // len(anchors)
    if fields_per_anchor * len(anchors) != channels or fields_per_anchor < 6:
        raise ValueError(f"yolov2_region: {channels} channels are not {len(anchors)} anchors x (5 + classes)")
    # (N, A, 5+C, H*W) -> (N, A*H*W, 5+C): box index a*H*W + y*W + x, as region.py and graph_nms number them.
    cells = raw.reshape(batch, len(anchors), fields_per_anchor, grid_h * grid_w).transpose(0, 1, 3, 2).reshape(
        batch, -1, fields_per_anchor)
    stride = np.array([input_hw[1] / grid_w, input_hw[0] / grid_h], dtype=np.float32)
    cell_y, cell_x = np.meshgrid(np.arange(grid_h, dtype=np.float32), np.arange(grid_w, dtype=np.float32),
                                 indexing="ij")
    grid = np.tile(np.stack([cell_x.ravel(), cell_y.ravel()], axis=1), (len(anchors), 1))
    anchor_px = np.repeat(anchors * stride, grid_h * grid_w, axis=0)
    centre = (_sigmoid(cells[..., 0:2]) + grid) * stride
    half = np.exp(np.minimum(cells[..., 2:4], MAX_SIZE_LOGIT)) * anchor_px * np.float32(0.5)
    boxes = np.concatenate([centre - half, centre + half], axis=-1)
    scores = _sigmoid(cells[..., 4:5]) * _softmax(cells[..., 5:])
    return [_every_class(boxes[i], scores[i], spec.conf_threshold) for i in range(batch)]


def _yolov5(outputs: Dict[str, np.ndarray], spec: DetectionSpec, input_hw: Tuple[int, int]) -> List[Candidates]:
    raw = outputs["output"].astype(np.float32, copy=False)
    boxes = _corners(raw[..., :4], "cxcywh", bool(spec.normalized), input_hw)
    return [_best_class(boxes[i], raw[i, :, 5:], raw[i, :, 4], spec.conf_threshold) for i in range(len(raw))]


def _yolov8(outputs: Dict[str, np.ndarray], spec: DetectionSpec, input_hw: Tuple[int, int]) -> List[Candidates]:
    raw = outputs["output"].astype(np.float32, copy=False).transpose(0, 2, 1)
    boxes = _corners(raw[..., :4], "cxcywh", bool(spec.normalized), input_hw)
    return [_best_class(boxes[i], raw[i, :, 4:], None, spec.conf_threshold) for i in range(len(raw))]


def _ssd(outputs: Dict[str, np.ndarray], spec: DetectionSpec, input_hw: Tuple[int, int]) -> List[Candidates]:
    codes = outputs["boxes"].astype(np.float32, copy=False)
    scores = outputs["scores"].astype(np.float32, copy=False)
    if spec.scores == "softmax":
        scores = _softmax(scores)
    elif spec.scores == "sigmoid":
        scores = _sigmoid(scores)
    if spec.background:
        scores = scores[..., 1:]
    if spec.anchors:
        priors = np.asarray(spec.anchors, dtype=np.float32)
        if len(priors) != codes.shape[1]:
            raise ValueError(f"ssd: {len(priors)} priors for {codes.shape[1]} boxes")
        variance_centre, variance_size = (np.float32(v) for v in spec.variances)
        centre = priors[:, :2] + codes[..., :2] * variance_centre * priors[:, 2:]
        size = priors[:, 2:] * np.exp(codes[..., 2:] * variance_size)
        boxes = _corners(np.concatenate([centre, size], axis=-1), "cxcywh", True, input_hw)
    else:
        boxes = _corners(codes, spec.box_format or "xyxy", spec.normalized is not False, input_hw)
    return [_every_class(boxes[i], scores[i], spec.conf_threshold) for i in range(len(boxes))]


def _after_nms(outputs: Dict[str, np.ndarray], spec: DetectionSpec, input_hw: Tuple[int, int]) -> List[Candidates]:
    boxes = _corners(outputs["boxes"].astype(np.float32, copy=False), spec.box_format or "xyxy",
                     bool(spec.normalized), input_hw)
    scores = outputs["scores"].astype(np.float32, copy=False)
    labels = np.rint(outputs["labels"]).astype(np.int64) - spec.label_offset  # TF exports give float labels
    if boxes.ndim == 2:  # flat rows of every image, batch_index saying whose
        images = outputs["batch_index"].astype(np.int64).reshape(-1) if "batch_index" in outputs \
            else np.zeros(len(boxes), dtype=np.int64)
        rows = [images == image for image in range(max(int(images.max(initial=0)) + 1, 1))]
        per_image = [(boxes[r], scores.reshape(-1)[r], labels.reshape(-1)[r]) for r in rows]
    else:
        counts = outputs["count"].reshape(-1).astype(np.int64) if "count" in outputs else \
            np.full(len(boxes), boxes.shape[1], dtype=np.int64)
        per_image = [(boxes[i, :n], scores[i, :n], labels[i, :n]) for i, n in enumerate(counts)]
    found = []
    for image_boxes, image_scores, image_labels in per_image:
        # A label below class_names[0]'s value (e.g. a background 0 left in) is no class.
        kept = (image_scores > spec.conf_threshold) & (image_labels >= 0)
        found.append((image_boxes[kept], image_scores[kept], image_labels[kept]))
    return found


def _region_classes(spec: DetectionSpec, shapes: Dict[str, Sequence[Any]]) -> Optional[int]:
    channels = _dimension(shapes["output"], 1)
    if channels is None or not spec.anchors or channels % len(spec.anchors):
        return None
    return channels // len(spec.anchors) - 5


def _yolov5_classes(spec: DetectionSpec, shapes: Dict[str, Sequence[Any]]) -> Optional[int]:
    width = _dimension(shapes["output"], -1)
    return None if width is None else width - 5


def _yolov8_classes(spec: DetectionSpec, shapes: Dict[str, Sequence[Any]]) -> Optional[int]:
    width = _dimension(shapes["output"], 1)
    return None if width is None else width - 4


def _ssd_classes(spec: DetectionSpec, shapes: Dict[str, Sequence[Any]]) -> Optional[int]:
    width = _dimension(shapes["scores"], -1)
    return None if width is None else width - (1 if spec.background else 0)


DECODERS.register("yolov2_region")(Layout(("output",), _yolov2_region, _region_classes))
DECODERS.register("yolov5")(Layout(("output",), _yolov5, _yolov5_classes))
DECODERS.register("yolov8")(Layout(("output",), _yolov8, _yolov8_classes))
DECODERS.register("ssd")(Layout(("boxes", "scores"), _ssd, _ssd_classes))
DECODERS.register("nms")(Layout(("boxes", "scores", "labels"), _after_nms, lambda spec, shapes: None,
                                ("count", "batch_index"), suppressed=True))


# -- shared pieces -------------------------------------------------------------------------------------------------
def _every_class(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> Candidates:
    """Every (box, class) scoring above the threshold, class by class (ties then rank as graph_nms ranks them)."""
    above = scores > threshold
    labels, rows = np.nonzero(above.T)
    return boxes[rows], scores[rows, labels], labels.astype(np.int64)


def _best_class(boxes: np.ndarray, classes: np.ndarray, objectness: Optional[np.ndarray],
                threshold: float) -> Candidates:
    """Each box with its best class (the first of equals), objectness times its probability, above the threshold;
    ordered by class, then box (ties then rank as graph_nms ranks them)."""
    labels = np.argmax(classes, axis=1)
    scores = classes[np.arange(len(classes)), labels]
    if objectness is not None:
        scores = objectness * scores
    rows = np.flatnonzero(scores > threshold)
    rows = rows[np.argsort(labels[rows], kind="stable")]
    return boxes[rows], scores[rows], labels[rows].astype(np.int64)


def _corners(boxes: np.ndarray, box_format: str, normalized: bool, input_hw: Tuple[int, int]) -> np.ndarray:
    """Boxes (..., 4) in `box_format` as x1 y1 x2 y2 in input pixels."""
    if box_format == "yxyx":
        boxes = boxes[..., [1, 0, 3, 2]]
    elif box_format == "cxcywh":
        half = boxes[..., 2:4] * np.float32(0.5)
        boxes = np.concatenate([boxes[..., 0:2] - half, boxes[..., 0:2] + half], axis=-1)
    if normalized:
        height, width = input_hw
        boxes = boxes * np.array([width, height, width, height], dtype=np.float32)
    return boxes.astype(np.float32, copy=False)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-x)) overflows exp for x < -88 in float32 (a warning, though the result is right).
    with np.errstate(over="ignore"):
        return (np.float32(1) / (np.float32(1) + np.exp(-values))).astype(np.float32, copy=False)


def _softmax(values: np.ndarray) -> np.ndarray:
    exps = np.exp(values - values.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


def _dimension(shape: Sequence[Any], axis: int) -> Optional[int]:
    """A static dimension of a shape, or None (symbolic, unknown, or no such axis)."""
    try:
        value = shape[axis]
    except IndexError:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
