"""Detection scoring: agent/detection/metrics.py against pycocotools on 5,000 images x 100 detections.

The issue's target: scoring on the board (numpy only) is no slower than pycocotools' COCOeval on the same data,
pycocotools' time / orch's >= 1. The data set is synthetic and COCO-shaped: 80 categories, about 7 ground truth
boxes per image of mixed sizes (a few crowd, some with a mask `area` smaller than the box), and per image 100
detections: a few near each box with high scores, the rest junk of any category with low scores.
pycocotools is timed over loadRes + evaluate + accumulate + summarize; orch over reading the same results list
(detections_from_coco) and score(), which adds VOC AP and per-class AP to COCO's numbers. The twelve numbers
must agree within 1e-4, or the benchmark fails.
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

IMAGES, DETECTIONS_PER_IMAGE, CATEGORIES, TRUTH_PER_IMAGE = 5000, 100, 80, 7
WIDTH_PX, HEIGHT_PX = 640.0, 480.0
TOLERANCE = 1e-4


def _boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """n boxes (x, y, w, h) inside the image, a third each small, medium and large."""
    side = np.exp(rng.uniform(np.log(6), np.log(300), (n, 1))) * rng.uniform(0.6, 1.6, (n, 2))
    side = np.minimum(side, [WIDTH_PX - 1, HEIGHT_PX - 1])
    corner = rng.uniform(0, 1, (n, 2)) * ([WIDTH_PX, HEIGHT_PX] - side)
    return np.hstack([corner, side])


def synthetic(seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(COCO instances data set, COCO results list) of the benchmark."""
    rng = np.random.default_rng(seed)
    n_truth = rng.poisson(TRUTH_PER_IMAGE, IMAGES)
    truth_image = np.repeat(np.arange(1, IMAGES + 1), n_truth)
    truth_box = _boxes(rng, truth_image.size)
    truth_cat = rng.integers(1, CATEGORIES + 1, truth_image.size)
    crowd = rng.random(truth_image.size) < 0.02
    area = truth_box[:, 2] * truth_box[:, 3] * np.where(rng.random(truth_image.size) < 0.5,
                                                        rng.uniform(0.5, 1.0, truth_image.size), 1.0)
    # Near each box 0 to 3 detections of its category, the rest of the image's 100 junk.
    n_near = np.minimum(rng.integers(0, 4, truth_image.size), DETECTIONS_PER_IMAGE)
    near_of = np.repeat(np.arange(truth_image.size), n_near)
    # Position moved and size scaled by a few percent of the box's own size.
    jitter = rng.normal(0, 0.08, (near_of.size, 4))
    near_box = truth_box[near_of].copy()
    near_box[:, :2] += jitter[:, :2] * near_box[:, 2:]
    near_box[:, 2:] = np.maximum(near_box[:, 2:] * (1 + jitter[:, 2:]), 1.0)
    near_per_image = np.bincount(truth_image[near_of] - 1, minlength=IMAGES)
    near_per_image = np.minimum(near_per_image, DETECTIONS_PER_IMAGE)
    keep = np.arange(near_of.size) - np.searchsorted(truth_image[near_of], truth_image[near_of]) < \
        DETECTIONS_PER_IMAGE
    near_of, near_box = near_of[keep], near_box[keep]
    junk_image = np.repeat(np.arange(1, IMAGES + 1), DETECTIONS_PER_IMAGE - near_per_image)
    det_image = np.concatenate([truth_image[near_of], junk_image])
    det_cat = np.concatenate([truth_cat[near_of], rng.integers(1, CATEGORIES + 1, junk_image.size)])
    det_box = np.vstack([near_box, _boxes(rng, junk_image.size)])
    det_score = np.concatenate([rng.uniform(0.3, 1.0, near_of.size), rng.uniform(0.0, 0.6, junk_image.size)])
    dataset = {
        "images": [{"id": i, "width": WIDTH_PX, "height": HEIGHT_PX} for i in range(1, IMAGES + 1)],
        "annotations": [{"id": n + 1, "image_id": int(i), "category_id": int(c), "bbox": b.tolist(), "area": float(a),
                         "iscrowd": int(w)}
                        for n, (i, c, b, a, w) in enumerate(zip(truth_image, truth_cat, truth_box, area, crowd,
                                                                strict=True))],
        "categories": [{"id": c, "name": f"class{c}"} for c in range(1, CATEGORIES + 1)]}
    results = [{"image_id": int(i), "category_id": int(c), "bbox": b.tolist(), "score": float(s)}
               for i, c, b, s in zip(det_image, det_cat, det_box, det_score, strict=True)]
    return dataset, results


def run() -> Iterator[tuple[str, float, str]]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from agent.detection.metrics import COCO_METRICS, detections_from_coco, score, truth_from_coco

    dataset, results = synthetic()
    yield f"detections scored ({IMAGES:,} images, {len(dataset['annotations']):,} boxes)", len(results), "detections"

    with contextlib.redirect_stdout(io.StringIO()):
        truth_api = COCO()
        truth_api.dataset = copy.deepcopy(dataset)
        truth_api.createIndex()
        their_results = copy.deepcopy(results)  # loadRes writes into the dicts
        started = time.perf_counter()
        evaluation = COCOeval(truth_api, truth_api.loadRes(their_results), iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        theirs_s = time.perf_counter() - started
    yield "pycocotools loadRes + evaluate + accumulate + summarize", theirs_s, "s"

    truth, image_ids, category_ids, names = truth_from_coco(dataset)
    started = time.perf_counter()
    scores = score(truth, detections_from_coco(results), image_ids, category_ids, names)
    ours_s = time.perf_counter() - started
    yield "orch detections_from_coco + score (COCO, VOC, per class)", ours_s, "s"
    yield "pycocotools time / orch time", theirs_s / ours_s, "x (target >= 1)"

    for name, expected in zip(COCO_METRICS, evaluation.stats, strict=True):
        found = scores.metrics[name]
        if abs((-1.0 if found is None else found) - float(expected)) > TOLERANCE:
            raise RuntimeError(f"{name}: orch {found} but pycocotools {expected}")
