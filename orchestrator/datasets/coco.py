"""COCO-format detection: an instances JSON and its image folder (COCO 2017, or any export in that format).

Layout, as COCO ships it: <root>/annotations/instances_<split>.json and the images at <root>/<split>/<file_name>
(the Ultralytics layout, <root>/images/<split>/<file_name>, is found too). The test split is the JSON's images
sorted by id, as pycocotools' COCOeval takes them, every image kept (those without objects too: detections on
them are false positives); its `truth` is the annotations as COCOeval reads them (boxes [x, y, w, h] in
original pixels, the annotation's `area`, `iscrowd`). A training image is kept when it holds a kept, non-crowd
object. `classes` keeps those categories by name, renumbered in the order given. Images are pre-processed by
agent/preprocess.py: plain resize to image_size and [0, 1] by default, or an ONNX model's own pre-processing.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from agent.preprocess import Placement, Preprocess
from orchestrator.datasets import DATASETS, Dataset, DatasetSpec, DetectionTruth, Splits
from orchestrator.datasets.image_folder import read_image
from orchestrator.errors import DatasetError


class Spec(DatasetSpec):
    """COCO-format options.

    root: the folder holding annotations/ and the image folders (required)
    test_split: the split scored (annotations/instances_<test_split>.json), default val2017
    train_split: the split trained and calibrated on; absent: the test split's images (say so in a study: a
        model calibrated on the images it is scored on is flattered)
    classes: keep only these categories (by name), renumbered in this order; absent: every category, by id
    train_limit, test_limit: keep only the first N images of each split (all when absent)
    """

    name: Literal["coco"]
    root: str = Field(min_length=1)
    test_split: str = Field("val2017", min_length=1)
    train_split: str | None = None
    classes: list[str] | None = Field(None, min_length=1)
    train_limit: int | None = Field(None, gt=0)
    test_limit: int | None = Field(None, gt=0)

    @field_validator("classes")
    @classmethod
    def _listed_once(cls, classes: list[str] | None) -> list[str] | None:
        for index, name in enumerate(classes or []):
            if classes and classes.index(name) != index:
                raise ValueError(f"[{index}] class {name!r} is listed twice")
        return classes


def read_instances(path: Path) -> dict[str, Any]:
    """A COCO instances JSON file, checked for the three lists COCOeval needs."""
    try:
        with open(path, encoding="utf-8") as handle:
            dataset = json.load(handle)
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file is missing; expected COCO's annotations/instances_<split>.json"
                           ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a COCO annotation file ({exc})") from None
    if not isinstance(dataset, dict) or not all(isinstance(dataset.get(key), list)
                                                for key in ("images", "annotations", "categories")):
        raise DatasetError(f"{path}: not a COCO annotation file (needs `images`, `annotations` and `categories` "
                           "lists)")
    return dataset


def _categories(dataset: dict[str, Any], spec: Spec, path: Path) -> list[dict[str, Any]]:
    """The kept categories in class-index order."""
    by_id = sorted(dataset["categories"], key=lambda category: int(category["id"]))
    if spec.classes is None:
        return by_id
    by_name = {str(category["name"]): category for category in by_id}
    for name in spec.classes:
        if name not in by_name:
            raise DatasetError(f"{path}: no category named {name!r}; categories: {', '.join(by_name)}")
    return [by_name[name] for name in spec.classes]


def _image_file(root: Path, split: str, file_name: str) -> Path:
    official = root / split / file_name
    if official.exists():
        return official
    ultralytics = root / "images" / split / file_name
    return ultralytics if ultralytics.exists() else official


class _Split:
    """One split's images (sorted by id, limited) and their annotations of the kept categories."""

    def __init__(self, spec: Spec, split: str, limit: int | None, every_image: bool):
        self.root = Path(spec.root)
        self.path = self.root / "annotations" / f"instances_{split}.json"
        dataset = read_instances(self.path)
        self.categories = _categories(dataset, spec, self.path)
        self.source_classes = tuple(str(category["name"]) for category in
                                    sorted(dataset["categories"], key=lambda category: int(category["id"])))
        self.class_index = {int(category["id"]): index for index, category in enumerate(self.categories)}
        annotations: dict[int, list[dict[str, Any]]] = {}
        for annotation in dataset["annotations"]:
            if int(annotation["category_id"]) in self.class_index:
                annotations.setdefault(int(annotation["image_id"]), []).append(annotation)
        images = sorted(dataset["images"], key=lambda image: int(image["id"]))
        if not every_image:
            images = [image for image in images
                      if any(not a.get("iscrowd") for a in annotations.get(int(image["id"]), []))]
        self.images = images[:limit]
        if not self.images:
            raise DatasetError(f"{self.path}: no image holds an object of "
                               f"{', '.join(str(c['name']) for c in self.categories)}")
        self.annotations = annotations
        self.files = [_image_file(self.root, split, str(image["file_name"])) for image in self.images]

    def read(self, preprocess: Preprocess) -> tuple[np.ndarray, list[np.ndarray], list[tuple[int, int]]]:
        """The images as model inputs, the rows of their non-crowd boxes in input pixels, their original sizes."""
        inputs = np.empty([len(self.images), *preprocess.shape[1:]], dtype=preprocess.dtype)
        rows, sizes = [], []
        for index, (image, path) in enumerate(zip(self.images, self.files, strict=True)):
            inputs[index], placement = read_image(path, preprocess)
            kept = [a for a in self.annotations.get(int(image["id"]), []) if not a.get("iscrowd")]
            rows.append(_rows(kept, self.class_index, placement))
            sizes.append(placement.original_size)
        return inputs, rows, sizes

    def truth(self, sizes: list[tuple[int, int]]) -> DetectionTruth:
        """The split as COCOeval scores it (every annotation of the kept categories, crowd ones included)."""
        from agent.detection.metrics import truth_from_coco

        ids = {int(image["id"]) for image in self.images}
        boxes, image_ids, _, _ = truth_from_coco({
            "images": self.images, "categories": self.categories,
            "annotations": [a for image_id, kept in self.annotations.items() if image_id in ids for a in kept]})
        return DetectionTruth(files=tuple(self.files), image_ids=np.array(image_ids, dtype=np.int64),
                              names=tuple(str(image["file_name"]) for image in self.images),
                              sizes=np.array(sizes, dtype=np.int64), boxes=boxes,
                              category_ids=tuple(int(category["id"]) for category in self.categories),
                              metric="coco_ap", source_classes=self.source_classes)


def _rows(annotations: list[dict[str, Any]], class_index: dict[int, int], placement: Placement) -> np.ndarray:
    """Rows [class_id, x1, y1, x2, y2, 0] in model-input pixels of COCO [x, y, w, h] boxes."""
    rows = []
    for annotation in annotations:
        x, y, width, height = (float(value) for value in annotation["bbox"])
        rows.append([class_index[int(annotation["category_id"])],
                     x * placement.scale_x + placement.pad_x, y * placement.scale_y + placement.pad_y,
                     (x + width) * placement.scale_x + placement.pad_x,
                     (y + height) * placement.scale_y + placement.pad_y, 0.0])
    return np.array(rows, dtype=np.float32).reshape(-1, 6)


def load(spec: Spec, preprocess: Preprocess | None = None) -> Splits:
    """The test split (and the train split, or the test images again) as detection splits, with the test split's
    `truth` for scoring in original pixels (see the module docstring)."""
    chosen = preprocess or Preprocess(size=[spec.image_size, spec.image_size])
    test = _Split(spec, spec.test_split, spec.test_limit, every_image=True)
    train = _Split(spec, spec.train_split, spec.train_limit, every_image=False) if spec.train_split else test
    test_x, test_y, sizes = test.read(chosen)
    train_x, train_y, _ = train.read(chosen) if train is not test else (test_x, test_y, sizes)
    splits = {"train": train, "test": test}

    def at_size(split: str, size: int) -> np.ndarray:
        return splits[split].read(replace(chosen, size=[size, size]))[0]

    return Splits(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                  class_names=tuple(str(category["name"]) for category in test.categories), task="detection",
                  at_size=at_size, truth=test.truth(sizes))


DATASETS.register("coco")(Dataset(Spec, load, takes_preprocess=True))
