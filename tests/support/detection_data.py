"""Random detection data sets in COCO's JSON shapes, and the two outside scorers the tests hold
agent/detection/metrics.py to: pycocotools' COCOeval and the PyPI package mean-average-precision.

The data sets are built to reach COCOeval's corners: crowd boxes, boxes of every area range (and areas exactly
on a range's bound), an annotation `area` that differs from w*h, images without ground truth or without
detections, categories without ground truth, more than 100 detections on one (image, category), duplicate
detections and tied or near-tied scores, detections on a category that is not scored.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

# Width and height ranges (pixels) of small, medium and large boxes.
SIZE_RANGES_PX = ((4.0, 30.0), (34.0, 90.0), (100.0, 300.0))
IMAGE_WIDTH_PX, IMAGE_HEIGHT_PX = 640.0, 480.0


def _box_near(box: Sequence[float], rng: np.random.Generator, jitter: float) -> list[float]:
    """A box around `box` with position and size moved by up to `jitter` of its size."""
    x, y, w, h = box
    dx, dy, dw, dh = rng.uniform(-jitter, jitter, 4)
    return [float(x + dx * w), float(y + dy * h), float(max(w * (1 + dw), 0.5)), float(max(h * (1 + dh), 0.5))]


def _random_box(rng: np.random.Generator) -> list[float]:
    low, high = SIZE_RANGES_PX[int(rng.integers(3))]
    w, h = rng.uniform(low, high, 2)
    return [float(rng.uniform(0, IMAGE_WIDTH_PX - w)), float(rng.uniform(0, IMAGE_HEIGHT_PX - h)), float(w), float(h)]


def random_coco(seed: int, n_images: int = 30, n_categories: int = 5, difficult: bool = False,
                tied_scores: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(a COCO instances data set, a COCO results list) drawn from `seed`.

    difficult: mark some boxes `difficult` (a key COCO ignores and VOC reads)
    tied_scores: round some scores to 2 decimals so ties occur (mean-average-precision's sort is not stable:
        its tests need distinct scores)
    """
    rng = np.random.default_rng(seed)
    image_ids = sorted(rng.choice(np.arange(1, 10 * n_images), size=n_images, replace=False).tolist())
    category_ids = sorted(rng.choice(np.arange(1, 40), size=n_categories, replace=False).tolist())
    # The last category never has ground truth; it only gets detections.
    with_truth = category_ids[:-1]
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for index, image_id in enumerate(image_ids):
        n_truth = 0 if index % 7 == 3 else int(rng.integers(1, 9))
        boxes = []
        for _ in range(n_truth):
            box = _random_box(rng)
            area = box[2] * box[3]
            roll = rng.random()
            if roll < 0.2:
                area *= rng.uniform(0.4, 1.0)  # a mask's area, smaller than its box
            elif roll < 0.25:
                area = float(rng.choice([32.0 ** 2, 96.0 ** 2]))  # exactly on a range's bound
            annotation = {"id": len(annotations) + 1, "image_id": image_id,
                          "category_id": int(rng.choice(with_truth)), "bbox": box, "area": float(area),
                          "iscrowd": int(rng.random() < 0.1)}
            if difficult:
                annotation["difficult"] = int(rng.random() < 0.15)
            annotations.append(annotation)
            boxes.append(annotation)
        if index % 5 == 1:
            continue  # an image without detections
        near: list[dict[str, Any]] = []
        for annotation in boxes:
            for _ in range(int(rng.integers(0, 4))):
                near.append({"image_id": image_id, "category_id": annotation["category_id"],
                             "bbox": _box_near(annotation["bbox"], rng, float(rng.uniform(0.02, 0.4))),
                             "score": float(rng.random())})
        for _ in range(int(rng.integers(0, 3))) if near else ():
            # A duplicate detection, or one moved a little at the same score: its rank against the other
            # falls to the order of the results.
            twin = copy.deepcopy(near[int(rng.integers(len(near)))])
            if rng.random() < 0.7:
                twin["bbox"] = _box_near(twin["bbox"], rng, 0.05)
            near.insert(int(rng.integers(len(near) + 1)), twin)
        results += near
        for _ in range(int(rng.integers(0, 12))):
            results.append({"image_id": image_id, "category_id": int(rng.choice(category_ids)),
                            "bbox": _random_box(rng), "score": float(rng.random())})
    if tied_scores:
        for result in results[::3]:
            result["score"] = round(result["score"], 2)
        for result in results[1::5]:
            result["score"] = float(np.nextafter(result["score"], 2.0))  # near ties
    # One (image, category) with more detections than COCOeval keeps (100).
    crowded = next(a for a in annotations if not a["iscrowd"])
    for _ in range(130):
        results.append({"image_id": crowded["image_id"], "category_id": crowded["category_id"],
                        "bbox": _box_near(crowded["bbox"], rng, 0.3), "score": float(rng.random())})
    # Detections on a category that is not scored.
    results.append({"image_id": image_ids[0], "category_id": 99, "bbox": _random_box(rng), "score": 0.5})
    dataset = {"images": [{"id": i, "width": IMAGE_WIDTH_PX, "height": IMAGE_HEIGHT_PX} for i in image_ids],
               "annotations": annotations,
               "categories": [{"id": c, "name": f"class{c}"} for c in category_ids]}
    return dataset, results


def pycocotools_eval(dataset: dict[str, Any], results: list[dict[str, Any]]) -> tuple[list[float], np.ndarray]:
    """COCOeval(iouType="bbox") of results: (stats, eval["precision"] (T, R, K, A, M)), its prints silenced."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = copy.deepcopy(dataset)
        truth.createIndex()
        found = truth.loadRes(copy.deepcopy(results))  # loadRes writes into the dicts
        evaluation = COCOeval(truth, found, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return [float(s) for s in evaluation.stats], evaluation.eval["precision"]


def mean_average_precision_ap(dataset: dict[str, Any], results: list[dict[str, Any]],
                              eleven_point: bool) -> dict[int, float]:
    """Per category id AP at IoU 0.5 by the package mean-average-precision (categories with ground truth only).

    Its boxes are inclusive pixel boxes (it adds 1 to widths and areas): a continuous (x, y, w, h) box is fed as
    the devkit's 1-based (x + 1, y + 1, x + w, y + h), whose IoU under that convention is the continuous one.
    Two of its bugs are worked around here, on the data it stores and never in its code: it counts difficult
    boxes among the positives (the devkit does not), so its positive counts are replaced by the non-difficult
    ones; and its compute_match_table tiles each image's difficult flags wrongly when an image has several
    boxes and several detections of a class (np.repeat(flags, n).reshape(n, -1) repeats element-wise: with
    flags [0, 1] and three detections its rows read [0, 0], [0, 1], [1, 1]), so the difficult column of its
    match tables is rewritten with each image's flags before value() is called.
    """
    from mean_average_precision import MetricBuilder

    category_ids = [c["id"] for c in dataset["categories"]]
    class_of = {c: index for index, c in enumerate(category_ids)}
    metric = MetricBuilder.build_evaluation_metric("map_2d", async_mode=False, num_classes=len(category_ids))
    positives = np.zeros((1, len(category_ids)), dtype=np.int32)
    flags: dict[tuple[int, int], list[float]] = {}  # (its image number, class) -> the boxes' difficult flags
    for number, image in enumerate(dataset["images"]):
        truth = [a for a in dataset["annotations"] if a["image_id"] == image["id"]]
        found = [r for r in results if r["image_id"] == image["id"] and r["category_id"] in class_of]
        gt = np.array([[x + 1, y + 1, x + w, y + h, class_of[a["category_id"]], _skipped(a), 0]
                       for a in truth for x, y, w, h in [a["bbox"]]], dtype=np.float64).reshape(-1, 7)
        preds = np.array([[x + 1, y + 1, x + w, y + h, class_of[r["category_id"]], r["score"]]
                          for r in found for x, y, w, h in [r["bbox"]]], dtype=np.float64).reshape(-1, 6)
        metric.add(preds, gt)
        for row in gt:
            flags.setdefault((number, int(row[4])), []).append(float(row[5]))
            positives[0, int(row[4])] += not row[5]
    metric.metric_fn.class_counter = positives
    for class_index, table in enumerate(metric.metric_fn.match_table):
        column = np.empty(len(table), dtype=object)
        for row_index, number in enumerate(table["img_id"]):
            column[row_index] = flags.get((int(number), class_index), [])
        table["difficult"] = column
    if eleven_point:
        values = metric.value(iou_thresholds=0.5, recall_thresholds=np.arange(0.0, 1.1, 0.1))
    else:
        values = metric.value(iou_thresholds=0.5)
    return {c: float(values[0.5][class_of[c]]["ap"]) for c in category_ids if positives[0, class_of[c]] > 0}


def _skipped(annotation: dict[str, Any]) -> bool:
    """A box VOC neither counts nor scores: difficult, or crowd (metrics.py treats crowd boxes as difficult)."""
    return bool(annotation.get("difficult", 0) or annotation.get("iscrowd", 0))
