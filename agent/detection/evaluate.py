"""Average precision of a detector over a shipped evaluation set, where the model runs.

The evaluation set (a DetectionSet, shipped as an .npz without pickles) holds each test image as the bytes of
its original file (JPEG as the data set has it: decoded here with Pillow, a few hundred KiB per image instead of
megabytes of float input), its original size, and the ground truth in original pixels. Each image goes through
the variant's pre-processing (agent/preprocess.py), the model, the detection decoder and NMS
(agent/detection/decoders.py); boxes are mapped back to the original image and scored by
agent/detection/metrics.py: COCO's twelve numbers, VOC AP (all-point and 11-point) and per-class AP. The host
scores variants with this same function (orchestrator/builder/evaluate.py), so a number measured on the board and
one computed on the workstation differ only by what the runtime computed.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from agent.detection.decoders import DetectionSpec, decode
from agent.detection.metrics import Boxes, score
from agent.preprocess import Placement, Preprocess

KIND = "detection"
# How a detection headline metric is named in results (accuracy_metric), by the data set's official scorer.
HEADLINE_METRICS = ("coco_ap", "coco_ap50", "voc_ap50", "voc07_ap50")


@dataclass
class DetectionSet:
    """A detection test split ready to ship: image files' bytes, their sizes and the ground truth.

    image_bytes: every image file's bytes, concatenated (uint8); offsets: (n + 1,) int64 start of each file
    image_ids: (n,) int64 the data set's image ids; sizes: (n, 2) int64 original width, height
    truth: ground truth Boxes in original pixels; category_ids: (C,) the category id of each class index
    class_names: the data set's class names (class index order); headline: the metric results report
    """

    image_bytes: np.ndarray
    offsets: np.ndarray
    image_ids: np.ndarray
    sizes: np.ndarray
    truth: Boxes
    category_ids: np.ndarray
    class_names: List[str]
    headline: str

    def __len__(self) -> int:
        return len(self.image_ids)

    def encoded(self, index: int) -> bytes:
        return self.image_bytes[int(self.offsets[index]):int(self.offsets[index + 1])].tobytes()

    def to_arrays(self) -> Dict[str, np.ndarray]:
        """The arrays of the .npz file (no object arrays: it loads with allow_pickle=False)."""
        truth = self.truth
        return {
            "kind": np.array([KIND]), "headline": np.array([self.headline]),
            "image_bytes": self.image_bytes, "offsets": self.offsets, "image_ids": self.image_ids,
            "sizes": self.sizes, "category_ids": self.category_ids, "class_names": np.array(self.class_names),
            "truth_image_id": truth.image_id, "truth_category_id": truth.category_id, "truth_xywh": truth.xywh,
            "truth_area": _or_default(truth.area, truth.xywh[:, 2] * truth.xywh[:, 3]),
            "truth_crowd": _or_default(truth.crowd, np.zeros(len(truth.image_id), dtype=bool)),
            "truth_difficult": _or_default(truth.difficult, np.zeros(len(truth.image_id), dtype=bool)),
        }

    @classmethod
    def from_arrays(cls, arrays: Any) -> "DetectionSet":
        """From the arrays of a loaded .npz (or any mapping of the names to_arrays writes)."""
        truth = Boxes(image_id=arrays["truth_image_id"], category_id=arrays["truth_category_id"],
                      xywh=arrays["truth_xywh"], area=arrays["truth_area"], crowd=arrays["truth_crowd"],
                      difficult=arrays["truth_difficult"])
        return cls(image_bytes=arrays["image_bytes"], offsets=arrays["offsets"], image_ids=arrays["image_ids"],
                   sizes=arrays["sizes"], truth=truth, category_ids=arrays["category_ids"],
                   class_names=[str(name) for name in arrays["class_names"]], headline=_text(arrays["headline"]))


def is_detection_set(arrays: Any) -> bool:
    """True for the arrays of a DetectionSet (a top-1 set holds x and y instead)."""
    return "kind" in arrays and _text(arrays["kind"]) == KIND


def _text(array: np.ndarray) -> str:
    """A one-element string array's text (.npz files keep no 0-d arrays: they come back with one axis)."""
    return str(np.asarray(array).reshape(-1)[0])


def _or_default(values: Optional[np.ndarray], default: np.ndarray) -> np.ndarray:
    return default if values is None else values


def pillow_missing() -> Optional[str]:
    """Why this Python cannot decode the set's images (with the fix), or None when it can."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return ("scoring detection needs Pillow on the board to decode the evaluation images "
                "(pip install pillow, or the distribution's python3-pil)")
    return None


def _batches(dataset: DetectionSet, preprocess: Preprocess, batch: int
             ) -> Iterator[Tuple[np.ndarray, List[Placement], List[int]]]:
    """(inputs, placements, image indexes) per batch; a short last batch is padded with its own first image."""
    from PIL import Image

    for start in range(0, len(dataset), batch):
        indexes = list(range(start, min(start + batch, len(dataset))))
        inputs, placements = [], []
        for index in indexes:
            with Image.open(io.BytesIO(dataset.encoded(index))) as image:
                values, placement = preprocess.image(image)
            inputs.append(values)
            placements.append(placement)
        inputs += [inputs[0]] * (batch - len(indexes))
        yield np.stack(inputs), placements, indexes


def evaluate(run: Callable[[np.ndarray], Sequence[np.ndarray]], output_names: Sequence[str],
             dataset: DetectionSet, preprocess: Preprocess, detection: DetectionSpec, class_map: Sequence[int],
             batch: int = 1, keep_detections: bool = False) -> Dict[str, Any]:
    """Score a detector over every image of `dataset`: the accuracy part of a result.

    run: the model, a batch of inputs -> its outputs in output_names order
    class_map: for each model label, the data set's class index it is scored as (-1: not scored)
    Returns {metric, value, n, metrics, per_class, postprocess_ms_per_image[, detections]}; detections are rows
    [image_id, category_id, x, y, w, h, score] in original pixels (COCO's results format, as rows).
    """
    found: List[np.ndarray] = []
    postprocess_ns = 0
    for inputs, placements, indexes in _batches(dataset, preprocess, batch):
        outputs = run(inputs)
        started = time.perf_counter_ns()
        per_image = decode(outputs, output_names, detection, (preprocess.size[0], preprocess.size[1]))
        for (boxes, scores, labels), placement, index in zip(per_image, placements, indexes):
            found.append(_rows(boxes, scores, labels, placement, class_map, dataset, index))
        postprocess_ns += time.perf_counter_ns() - started
    rows = np.concatenate(found) if found else np.zeros((0, 7))
    detections = Boxes(image_id=rows[:, 0].astype(np.int64), category_id=rows[:, 1].astype(np.int64),
                       xywh=rows[:, 2:6], score=rows[:, 6])
    scores_ = score(dataset.truth, detections, [int(i) for i in dataset.image_ids],
                    [int(c) for c in dataset.category_ids], dataset.class_names)
    result: Dict[str, Any] = {
        "metric": dataset.headline, "value": scores_.metrics.get(dataset.headline), "n": len(dataset),
        "metrics": scores_.metrics, "per_class": scores_.per_class,
        "postprocess_ms_per_image": postprocess_ns / 1e6 / max(len(dataset), 1)}
    if keep_detections:
        result["detections"] = rows.tolist()
    return result


def _rows(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, placement: Placement,
          class_map: Sequence[int], dataset: DetectionSet, index: int) -> np.ndarray:
    """One image's detections as rows [image_id, category_id, x, y, w, h, score] in original pixels; labels the
    data set does not score are dropped."""
    mapping = np.asarray(list(class_map) + [-1], dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    classes = mapping[np.where((labels >= 0) & (labels < len(class_map)), labels, len(class_map))]
    kept = classes >= 0
    original = placement.to_original(np.asarray(boxes, dtype=np.float64)[kept])
    rows = np.empty((int(kept.sum()), 7), dtype=np.float64)
    rows[:, 0] = dataset.image_ids[index]
    rows[:, 1] = dataset.category_ids[classes[kept]]
    rows[:, 2:4] = original[:, 0:2]
    rows[:, 4:6] = original[:, 2:4] - original[:, 0:2]
    rows[:, 6] = np.asarray(scores, dtype=np.float64)[kept]
    return rows
