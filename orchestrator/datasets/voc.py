"""Pascal VOC 2007 / 2012 detection from a local copy of `VOCdevkit/VOCyyyy`.

Layout: ImageSets/Main/<set>.txt lists image ids (set: train, val, trainval,
test), Annotations/<id>.xml holds the objects, JPEGImages/<id>.jpg the image.
Each image is resized plainly to image_size x image_size (bilinear, aspect
ratio not kept, as YOLOv2 does) and scaled to [0, 1] with no mean/std (the YOLO
convention). Boxes are VOC's 1-based pixel coordinates made 0-based and
scaled with the image; labels are per-image float32 arrays of rows
[class_id, x1, y1, x2, y2, difficult]. An image is kept only if at least one
of its objects is kept (by `classes` and `include_difficult`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from agent.preprocess import Preprocess
from orchestrator.datasets import DATASETS, Dataset, DatasetSpec, Splits
from orchestrator.datasets.image_folder import read_image
from orchestrator.errors import DatasetError

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
SetName = Literal["train", "val", "trainval", "test"]


class Spec(DatasetSpec):
    """Pascal VOC options.

    root: the folder holding VOCdevkit, VOCdevkit itself, or its VOC2007/VOC2012 folder (required)
    year: 2007 or 2012
    train_set: image list used for training (train, val, trainval, test); default trainval
    test_set: image list used for testing; default test for 2007, val for 2012 (its test annotations are not public)
    classes: keep only these classes, renumbered in this order, and only images holding one of them;
        absent keeps the 20 VOC classes in the standard order
    include_difficult: keep objects marked difficult (column 5 of each box row says which)
    train_limit, test_limit: keep only the first N kept images of each list (all when absent)
    presence_of: a class name: turns the set into image classification, label 1 when the image holds an
        object of that class and 0 when not (every listed image kept; `classes` does not apply)
    """

    name: Literal["voc"]
    root: str = Field(min_length=1)
    year: Literal[2007, 2012] = 2007
    train_set: SetName = "trainval"
    test_set: SetName = "test"
    classes: list[str] | None = Field(None, min_length=1)
    include_difficult: bool = True
    train_limit: int | None = Field(None, gt=0)
    test_limit: int | None = Field(None, gt=0)
    presence_of: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _test_set_follows_year(cls, data: Any) -> Any:
        if isinstance(data, dict) and "test_set" not in data and str(data.get("year")) == "2012":
            return {**data, "test_set": "val"}
        return data

    @field_validator("presence_of")
    @classmethod
    def _known_presence_class(cls, name: str | None) -> str | None:
        if name is not None and name not in VOC_CLASSES:
            raise ValueError(f"unknown VOC class {name!r}; known: {', '.join(VOC_CLASSES)}")
        return name

    @model_validator(mode="after")
    def _presence_or_classes(self) -> Spec:
        if self.presence_of is not None and self.classes is not None:
            raise ValueError("give `presence_of` (classify images) or `classes` (detect objects), not both")
        return self

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, classes: list[str] | None) -> list[str] | None:
        for index, name in enumerate(classes or []):
            if name not in VOC_CLASSES:
                raise ValueError(f"[{index}] unknown VOC class {name!r}; known: {', '.join(VOC_CLASSES)}")
            if classes and classes.index(name) != index:
                raise ValueError(f"[{index}] class {name!r} is listed twice")
        return classes


@dataclass(frozen=True)
class VocObject:
    """One annotated object: its class, its box in VOC's 1-based pixel coordinates, its difficult flag."""

    class_name: str
    box: tuple[float, float, float, float]
    difficult: bool


def find_folder(root: str, year: int) -> Path:
    """The VOCyyyy folder under `root` (VOCdevkit's parent, VOCdevkit, or the VOCyyyy folder itself)."""
    name = f"VOC{year}"
    base = Path(root)
    for folder in (base / "VOCdevkit" / name, base / name, base):
        if all((folder / part).is_dir() for part in ("Annotations", "ImageSets/Main", "JPEGImages")):
            if re.fullmatch(r"VOC\d{4}", folder.name) and folder.name != name:
                raise DatasetError(f"{folder}: is not {name} (year is {year})")
            return folder
    raise DatasetError(f"{base}: expected VOCdevkit/{name} (or {name} itself) with Annotations/, ImageSets/Main/ "
                       f"and JPEGImages/ (Pascal VOC {year})")


def read_ids(path: Path) -> list[str]:
    """The image ids of an ImageSets/Main list (first word of each line)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: image list is missing; expected one image id per line") from None
    return [line.split()[0] for line in lines if line.strip()]


def _parse_object(element: ET.Element, path: Path, number: int) -> VocObject:
    name, box = (element.findtext("name") or "").strip(), element.find("bndbox")
    try:
        corners = [float(box.findtext(key) or "") for key in ("xmin", "ymin", "xmax", "ymax")] \
            if box is not None else []
    except ValueError:
        corners = []
    if name not in VOC_CLASSES or len(corners) != 4:
        raise DatasetError(f"{path}: object {number} needs a VOC class <name> and a <bndbox> with numeric <xmin>, "
                           f"<ymin>, <xmax>, <ymax> (got name {name!r})")
    difficult = (element.findtext("difficult") or "0").strip() == "1"  # some VOC2012 objects omit <difficult>
    return VocObject(name, (corners[0], corners[1], corners[2], corners[3]), difficult)


def read_annotation(path: Path) -> list[VocObject]:
    """The objects of a VOC annotation file (direct <object> children; a person's <part>s are not objects)."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file is missing") from None
    except ET.ParseError as exc:
        raise DatasetError(f"{path}: not a VOC annotation ({exc})") from None
    if root.tag != "annotation":
        raise DatasetError(f"{path}: not a VOC annotation (root element <{root.tag}>, expected <annotation>)")
    return [_parse_object(element, path, number) for number, element in enumerate(root.findall("object"), 1)]


def _box_rows(objects: list[VocObject], class_ids: dict[str, int], scale_x: float, scale_y: float) -> np.ndarray:
    rows = [[class_ids[obj.class_name], (obj.box[0] - 1) * scale_x, (obj.box[1] - 1) * scale_y,
             (obj.box[2] - 1) * scale_x, (obj.box[3] - 1) * scale_y, float(obj.difficult)] for obj in objects]
    return np.array(rows, dtype=np.float32).reshape(-1, 6)


def _read_set(folder: Path, set_name: str, spec: Spec, limit: int | None) -> tuple[np.ndarray, list[np.ndarray]]:
    class_ids = {name: index for index, name in enumerate(spec.classes or VOC_CLASSES)}
    kept: list[tuple[str, list[VocObject]]] = []
    for image_id in read_ids(folder / "ImageSets" / "Main" / f"{set_name}.txt"):
        objects = [obj for obj in read_annotation(folder / "Annotations" / f"{image_id}.xml")
                   if obj.class_name in class_ids and (spec.include_difficult or not obj.difficult)]
        if objects:
            kept.append((image_id, objects))
        if limit is not None and len(kept) >= limit:
            break
    if not kept:
        raise DatasetError(f"{folder / 'ImageSets' / 'Main' / f'{set_name}.txt'}: no listed image holds an object "
                           f"of {', '.join(class_ids)}")
    size = spec.image_size
    grid = Preprocess(size=[size, size])
    images = np.empty((len(kept), 3, size, size), dtype=np.float32)
    boxes = []
    for index, (image_id, objects) in enumerate(kept):
        images[index], (width, height) = read_image(folder / "JPEGImages" / f"{image_id}.jpg", grid)
        boxes.append(_box_rows(objects, class_ids, size / width, size / height))
    return images, boxes


def _read_presence(folder: Path, set_name: str, spec: Spec, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Every listed image, labelled 1 when it holds an object of spec.presence_of, else 0."""
    ids = read_ids(folder / "ImageSets" / "Main" / f"{set_name}.txt")[:limit]
    size = spec.image_size
    grid = Preprocess(size=[size, size])
    images = np.empty((len(ids), 3, size, size), dtype=np.float32)
    labels = np.zeros(len(ids), dtype=np.int64)
    for index, image_id in enumerate(ids):
        objects = read_annotation(folder / "Annotations" / f"{image_id}.xml")
        labels[index] = any(obj.class_name == spec.presence_of and (spec.include_difficult or not obj.difficult)
                            for obj in objects)
        images[index], _ = read_image(folder / "JPEGImages" / f"{image_id}.jpg", grid)
    return images, labels


def load(spec: Spec) -> Splits:
    """The train_set and test_set lists of VOC `year` as detection splits (see the module docstring)."""
    folder = find_folder(spec.root, spec.year)
    if spec.presence_of is not None:
        train_x, train_labels = _read_presence(folder, spec.train_set, spec, spec.train_limit)
        test_x, test_labels = _read_presence(folder, spec.test_set, spec, spec.test_limit)
        return Splits(train_x=train_x, train_y=train_labels, test_x=test_x, test_y=test_labels,
                      class_names=(f"no_{spec.presence_of}", spec.presence_of))
    train_x, train_y = _read_set(folder, spec.train_set, spec, spec.train_limit)
    test_x, test_y = _read_set(folder, spec.test_set, spec, spec.test_limit)
    return Splits(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                  class_names=tuple(spec.classes or VOC_CLASSES), task="detection")


DATASETS.register("voc")(Dataset(Spec, load))
