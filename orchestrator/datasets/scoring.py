"""Scoring a detections file against a ground truth in an official format, with the boards' own metrics module.

Ground truth: a COCO instances JSON file, or a Pascal VOC folder (VOCdevkit, or its VOCyyyy folder: the test list
of that year, every object with its difficult flag). Detections: a COCO results JSON list ([{image_id,
category_id, bbox: [x, y, w, h], score}], what pycocotools' loadRes reads), or for VOC the devkit's own results
files (a folder of comp*_det_<set>_<class>.txt, lines `image_id score xmin ymin xmax ymax` in VOC's inclusive
1-based pixels). In a JSON file scored against VOC, image_id is the VOC image id ("000005", or the number 5) and
category_id the class's index in the VOC class list (or its name).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.detection.metrics import Boxes, Scores, detections_from_coco, score, truth_from_coco
from orchestrator.errors import DatasetError

VOC_RESULTS = re.compile(r"\Acomp\d+_det_(?P<set>[A-Za-z]+)_(?P<cls>[a-z]+)\.txt\Z")


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth ready to score: the boxes, the images and categories scored, and how images are named."""

    boxes: Boxes
    image_ids: list[int]
    category_ids: list[int]
    class_names: list[str]
    image_names: dict[str, int]  # a VOC image id -> its image_ids entry (COCO: empty)
    headline: str


def read_ground_truth(path: Path, voc_year: int = 2007, voc_set: str | None = None) -> GroundTruth:
    """A COCO instances JSON file, or a VOC folder (its `voc_set` list, default test for 2007, val for 2012)."""
    if path.is_dir():
        return _voc_truth(path, voc_year, voc_set)
    from orchestrator.datasets.coco import read_instances

    boxes, image_ids, category_ids, names = truth_from_coco(read_instances(path))
    return GroundTruth(boxes, image_ids, category_ids, names, {}, "coco_ap")


def _voc_truth(root: Path, year: int, set_name: str | None) -> GroundTruth:
    from orchestrator.datasets import voc

    spec = voc.Spec(name="voc", root=str(root), year=year, **({"test_set": set_name} if set_name else {}))
    folder = voc.find_folder(spec.root, year)
    ids = voc.read_ids(folder / "ImageSets" / "Main" / f"{spec.test_set}.txt")
    objects = [(index, obj) for index, image_id in enumerate(ids)
               for obj in voc.read_annotation(folder / "Annotations" / f"{image_id}.xml")]
    classes = {name: index for index, name in enumerate(voc.VOC_CLASSES)}
    boxes = voc.truth_boxes(objects, classes)
    return GroundTruth(boxes, list(range(len(ids))), list(range(len(voc.VOC_CLASSES))), list(voc.VOC_CLASSES),
                       {image_id: index for index, image_id in enumerate(ids)},
                       "voc07_ap50" if year == 2007 else "voc_ap50")


def read_detections(path: Path, truth: GroundTruth) -> Boxes:
    """A COCO results JSON file, or (VOC) a folder of the devkit's results files, as Boxes in truth's ids."""
    if path.is_dir():
        return _voc_results(path, truth)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: detections file is missing") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a COCO results file ({exc})") from None
    if not isinstance(results, list) or not all(isinstance(item, dict) for item in results):
        raise DatasetError(f"{path}: not a COCO results file (a JSON list of {{image_id, category_id, bbox, score}})")
    if truth.image_names:
        results = [_voc_named(item, truth, path, number) for number, item in enumerate(results)]
    try:
        return detections_from_coco(results)
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: a detection lacks image_id, category_id, bbox [x, y, w, h] or score ({exc})"
                           ) from None


def _voc_named(item: dict[str, Any], truth: GroundTruth, path: Path, number: int) -> dict[str, Any]:
    """A JSON detection scored against VOC: its image id and class as the ground truth numbers them."""
    name = item.get("image_id")
    key = f"{name:06d}" if isinstance(name, int) else str(name)
    if key not in truth.image_names:
        raise DatasetError(f"{path}: detection {number}: image_id {name!r} is not in the VOC list scored")
    category = item.get("category_id")
    if isinstance(category, str):
        if category not in truth.class_names:
            raise DatasetError(f"{path}: detection {number}: unknown VOC class {category!r}")
        category = truth.class_names.index(category)
    return {**item, "image_id": truth.image_names[key], "category_id": category}


def _voc_results(folder: Path, truth: GroundTruth) -> Boxes:
    """The devkit's results files: one per class, `image_id score xmin ymin xmax ymax` (inclusive, 1-based)."""
    rows: list[list[float]] = []
    files = [(path, match) for path in sorted(folder.iterdir()) if (match := VOC_RESULTS.match(path.name))]
    if not files:
        raise DatasetError(f"{folder}: no VOC results files (comp<n>_det_<set>_<class>.txt) in it")
    for path, match in files:
        if match["cls"] not in truth.class_names:
            raise DatasetError(f"{path}: unknown VOC class {match['cls']!r} in the file name")
        category = truth.class_names.index(match["cls"])
        for number, line in enumerate(path.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 6 or fields[0] not in truth.image_names:
                raise DatasetError(f"{path}:{number}: expected `image_id score xmin ymin xmax ymax` with an image "
                                   "of the scored list")
            score_, xmin, ymin, xmax, ymax = (float(value) for value in fields[1:])
            rows.append([truth.image_names[fields[0]], category, xmin - 1, ymin - 1, xmax - xmin + 1,
                         ymax - ymin + 1, score_])
    table = np.array(rows, dtype=np.float64).reshape(-1, 7)
    return Boxes(image_id=table[:, 0].astype(np.int64), category_id=table[:, 1].astype(np.int64),
                 xywh=table[:, 2:6], score=table[:, 6])


def score_files(ground_truth: Path, detections: Path, voc_year: int = 2007, voc_set: str | None = None
                ) -> tuple[Scores, str]:
    """Every number agent/detection/metrics.py computes for a detections file, and the ground truth's headline."""
    truth = read_ground_truth(ground_truth, voc_year, voc_set)
    found = read_detections(detections, truth)
    known = set(truth.image_ids)
    unknown = sorted({int(image) for image in found.image_id} - known)
    if unknown:
        raise DatasetError(f"{detections}: image_id {unknown[0]} is not an image of {ground_truth}")
    return score(truth.boxes, found, truth.image_ids, truth.category_ids, truth.class_names), truth.headline
