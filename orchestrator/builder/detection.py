"""Host-side detection scoring: Pascal VOC average precision at IoU 0.5.

AP is the all-point interpolated area under the precision-recall curve (the
VOC2010+ devkit's rule, not VOC2007's 11-point one): precision is made
monotone from the right, then summed over every recall step. A detection
matches the unmatched ground truth it overlaps most if that IoU is >= 0.5;
ground truths marked difficult count neither as hits nor as misses, and a
detection matching one is ignored. Boxes are continuous pixel coordinates of
the model's input, so IoU has no devkit-style +1 pixel. A model's score is
the mean AP over the data set's classes (the AP of person for a person head).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

IOU_THRESHOLD = 0.5
BATCH = 16


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    overlap_w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    overlap_h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    overlap = overlap_w * overlap_h
    union = (box[2] - box[0]) * (box[3] - box[1]) + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return overlap / np.maximum(union - overlap, 1e-9)


def voc_ap(detections: Sequence[np.ndarray], truths: Sequence[np.ndarray], class_id: int) -> float:
    """AP of one class. detections: per image (k, 6) [class, score, x1, y1, x2, y2];
    truths: per image (k, 6) [class, x1, y1, x2, y2, difficult]. NaN when the class has no (non-difficult) truth."""
    gts = [t[t[:, 0] == class_id] for t in truths]
    positives = sum(int((g[:, 5] == 0).sum()) for g in gts)
    if positives == 0:
        return float("nan")
    found = [(float(d[1]), image, d[2:6]) for image, dets in enumerate(detections) for d in dets if d[0] == class_id]
    found.sort(key=lambda item: -item[0])
    matched = [np.zeros(len(g), dtype=bool) for g in gts]
    hits, misses = [], []
    for _, image, box in found:
        gt = gts[image]
        overlaps = _iou(box, gt[:, 1:5]) if len(gt) else np.zeros(0)
        best = int(np.argmax(overlaps)) if len(overlaps) else -1
        if best >= 0 and overlaps[best] >= IOU_THRESHOLD:
            if gt[best, 5]:  # a difficult object: neither a hit nor a miss
                continue
            hit = not matched[image][best]
            matched[image][best] = True
        else:
            hit = False
        hits.append(hit)
        misses.append(not hit)
    true_positives, false_positives = np.cumsum(hits, dtype=float), np.cumsum(misses, dtype=float)
    recall = true_positives / positives
    precision = true_positives / np.maximum(true_positives + false_positives, 1e-9)
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def mean_ap(detections: Sequence[np.ndarray], truths: Sequence[np.ndarray], num_classes: int) -> float | None:
    """Mean AP over the classes that have ground truth; None when none has."""
    values = [voc_ap(detections, truths, class_id) for class_id in range(num_classes)]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else None


def detection_score(run: Callable[[np.ndarray], Any], images: np.ndarray, truths: Sequence[np.ndarray],
                    anchors: Sequence[tuple[float, float]], num_classes: int) -> float | None:
    """Mean VOC AP@0.5 of a model over (images, truths); `run` maps a batch of images to raw output maps."""
    import torch

    from orchestrator.models.region import decode

    detections: list[np.ndarray] = []
    for start in range(0, len(images), BATCH):
        output = torch.as_tensor(np.asarray(run(images[start:start + BATCH]), dtype=np.float32))
        detections += decode(output, anchors, images.shape[-1])
    return mean_ap(detections, truths, num_classes)


def scaled_truths(truths: Sequence[np.ndarray], scale: float) -> list[np.ndarray]:
    """Ground truths for images resized by `scale` (boxes scaled, classes and difficult flags kept)."""
    scaled = []
    for rows in truths:
        rows = np.array(rows, dtype=np.float32, copy=True)
        rows[:, 1:5] *= scale
        scaled.append(rows)
    return scaled
