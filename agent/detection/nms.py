"""Per-class non-maximum suppression, vectorised with numpy: no Python loop over boxes.

Semantics are exactly greedy NMS (the loop of orchestrator/models/region.py, torchvision's `nms` and onnxruntime's
NonMaxSuppression): candidates are visited best score first, score ties in index order (a stable sort); a box is
suppressed when its IoU with an already kept box of the same label is > iou_threshold. Boxes of different labels
never suppress each other.

How it is vectorised: Cluster-NMS (Zheng et al., "Enhancing Geometric Factors in Model Learning and Inference for
Object Detection and Instance Segmentation", 2020, section 4). With S the upper-triangular matrix of "row box
suppresses column box if the row one is kept" (IoU > threshold, same label, row ranked higher), iterate
keep = not any(S[kept rows]) from keep = all; each pass makes at least one more leading position final, so it
reaches a fixed point, and the only fixed point is the greedy answer. In practice it takes a handful of passes,
each one vectorised over the whole chunk.

Labels are kept apart by masking S with "same label" rather than by the class-offset trick (boxes shifted by
label * (max coordinate + 1)): the shift costs float32 precision at large labels and coordinates, so IoUs would no
longer be the ones onnxruntime's NonMaxSuppression computes.

Memory and time: no N x N matrix over all candidates. Candidates are taken in score order, CHUNK_ROWS at a time:
a chunk is first suppressed by the boxes already kept (at most max_detections of them), then by Cluster-NMS within
itself. Every box ranked above a chunk is in an earlier chunk, so this is exact, and it stops as soon as
max_detections boxes are kept: with COCO-style thresholds (0.001) and thousands of candidates, only the first chunks
are looked at, and only the best HEAD_ROWS candidates are sorted (after a partition). There is no cap on the number
of candidates (Ultralytics caps at 30000 before NMS): none is needed to bound memory.

Boxes are (k, 4) x1 y1 x2 y2 (any two opposite corners: they are put in order first, as onnxruntime does); IoUs are
computed in float32 in onnxruntime's order of operations, and a box of zero area suppresses nothing.
"""

from __future__ import annotations

from typing import Iterator, List, Optional

import numpy as np

# Candidates looked at per step: the chunk's IoU matrix is CHUNK_ROWS^2 float32 (64 KiB at 128, small enough to
# stay in the allocator's heap: larger temporaries are fresh mmaps whose page faults cost more than the arithmetic).
CHUNK_ROWS = 128
# Above this many candidates, the best HEAD_ROWS are ranked first (a partition, then a sort of those alone): the
# full sort is only needed if they do not yield max_detections boxes.
HEAD_ROWS = 2048
_UPPER = np.triu(np.ones((CHUNK_ROWS, CHUNK_ROWS), dtype=bool), k=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (n, 4) with every box of `b` (m, 4), both x1 y1 x2 y2 in order: (n, m) float32."""
    a = a.astype(np.float32, copy=False)
    b = b.astype(np.float32, copy=False)
    overlap = np.minimum(a[:, 2:3], b[:, 2])
    overlap -= np.maximum(a[:, 0:1], b[:, 0])
    np.maximum(overlap, 0, out=overlap)
    height = np.minimum(a[:, 3:4], b[:, 3])
    height -= np.maximum(a[:, 1:2], b[:, 1])
    np.maximum(height, 0, out=height)
    overlap *= height
    union = np.add(((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None], (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]),
                   out=height)
    union -= overlap
    # union is 0 only for two zero-area boxes, whose overlap is 0: their IoU stays 0.
    np.maximum(union, np.finfo(np.float32).tiny, out=union)
    overlap /= union
    return overlap


def nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float,
        max_detections: Optional[int] = None) -> np.ndarray:
    """Indices of the boxes kept by per-class greedy NMS (module docstring), best score first, at most
    max_detections of them (None: all kept)."""
    scores = np.asarray(scores, dtype=np.float32)
    count = len(scores)
    limit = count if max_detections is None else min(int(max_detections), count)
    if count == 0 or limit <= 0:
        return np.zeros(0, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.float32)
    labels = np.asarray(labels)
    threshold = np.float32(iou_threshold)  # compared in float32, as onnxruntime does
    kept: List[np.ndarray] = []  # indices into boxes, best first
    kept_boxes = np.zeros((0, 4), dtype=np.float32)
    kept_labels = labels[:0]
    for ranked in _ranked(scores, limit < count):
        for start in range(0, len(ranked), CHUNK_ROWS):
            chunk = ranked[start:start + CHUNK_ROWS]
            chunk_boxes, chunk_labels = _ordered_corners(boxes[chunk]), labels[chunk]
            alive = np.ones(len(chunk), dtype=bool)
            if len(kept_boxes):
                overlaps = box_iou(kept_boxes, chunk_boxes) > threshold
                overlaps &= kept_labels[:, None] == chunk_labels
                alive = np.logical_not(overlaps.any(axis=0))
            survivors = _cluster_keep(chunk_boxes, chunk_labels, alive, threshold)
            kept.append(chunk[survivors])
            kept_boxes = np.concatenate([kept_boxes, chunk_boxes[survivors]])
            kept_labels = np.concatenate([kept_labels, chunk_labels[survivors]])
            if len(kept_boxes) >= limit:
                return np.concatenate(kept)[:limit].astype(np.int64)
    return np.concatenate(kept)[:limit].astype(np.int64)


def _ranked(scores: np.ndarray, partial: bool) -> Iterator[np.ndarray]:
    """Indices by descending score, ties in index order, in one or two parts: the best HEAD_ROWS or so (every
    score at or above the HEAD_ROWS-th best: all of them rank before the rest), then, if asked for, the rest."""
    if not partial or len(scores) <= HEAD_ROWS:
        yield np.argsort(-scores, kind="stable")
        return
    cut = np.partition(scores, len(scores) - HEAD_ROWS)[len(scores) - HEAD_ROWS]
    for part in (np.flatnonzero(scores >= cut), np.flatnonzero(scores < cut)):
        yield part[np.argsort(-scores[part], kind="stable")]


def _cluster_keep(boxes: np.ndarray, labels: np.ndarray, alive: np.ndarray, threshold: np.float32) -> np.ndarray:
    """Which of `boxes` (ranked best first) greedy NMS keeps among the `alive` ones (Cluster-NMS iteration)."""
    suppresses = box_iou(boxes, boxes) > threshold
    suppresses &= labels[:, None] == labels
    suppresses &= _UPPER[:len(boxes), :len(boxes)]  # only a higher-ranked box suppresses
    keep = alive
    while True:
        nxt = alive & ~suppresses[keep].any(axis=0)
        if np.array_equal(nxt, keep):
            return keep
        keep = nxt


def _ordered_corners(boxes: np.ndarray) -> np.ndarray:
    """Boxes as x_min y_min x_max y_max, whichever opposite corners they were given by."""
    return np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
