"""Pascal VOC 2007 / 2012 detection from a local copy of `VOCdevkit/VOCyyyy`.

Layout: ImageSets/Main/<set>.txt lists image ids (set: train, val, trainval,
test), Annotations/<id>.xml holds the objects, JPEGImages/<id>.jpg the image.
Each image is resized plainly to image_size x image_size (bilinear, aspect
ratio not kept, as YOLOv2 does) and scaled to [0, 1] with no mean/std (the YOLO
convention), unless an ONNX model's pre-processing says otherwise. VOC boxes
are inclusive 1-based pixel indices: xmin..xmax covers the continuous span
[xmin - 1, xmax), which is how they are moved into the model input; labels
are per-image float32 arrays of rows [class_id, x1, y1, x2, y2, difficult].
A training image is kept only if at least one of its objects is kept (by
`classes` and `include_difficult`); the test split keeps every listed image,
and its `truth` holds every object of the kept classes in original pixels,
difficult ones flagged, as the devkit scores them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from agent.preprocess import Placement, Preprocess
from orchestrator.datasets import DATASETS, Dataset, DatasetSpec, DetectionTruth, Splits
from orchestrator.datasets.image_folder import read_image
from orchestrator.errors import DatasetError

if TYPE_CHECKING:
    from agent.detection.metrics import Boxes

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


def _box_rows(objects: list[VocObject], class_ids: dict[str, int], placement: Placement) -> np.ndarray:
    """Rows [class_id, x1, y1, x2, y2, difficult] in model-input pixels: VOC's inclusive 1-based box covers the
    continuous span [xmin - 1, xmax), moved and scaled to where the image landed in the input."""
    rows = [[class_ids[obj.class_name],
             (obj.box[0] - 1) * placement.scale_x + placement.pad_x, (obj.box[1] - 1) * placement.scale_y
             + placement.pad_y, obj.box[2] * placement.scale_x + placement.pad_x,
             obj.box[3] * placement.scale_y + placement.pad_y, float(obj.difficult)] for obj in objects]
    return np.array(rows, dtype=np.float32).reshape(-1, 6)


@dataclass(frozen=True)
class _Listed:
    """One image of a set: its id, file and the objects of the kept classes (difficult ones flagged)."""

    image_id: str
    path: Path
    objects: list[VocObject]


def _list_set(folder: Path, set_name: str, spec: Spec, limit: int | None, every_image: bool) -> list[_Listed]:
    """The images of an ImageSets/Main list with their objects of the kept classes. Training keeps only images
    holding a kept object (and drops difficult ones unless include_difficult); testing keeps every listed image and
    every kept object, difficult ones flagged, as the devkit scores a class over the whole test list."""
    class_ids = _class_ids(spec)
    listed: list[_Listed] = []
    for image_id in read_ids(folder / "ImageSets" / "Main" / f"{set_name}.txt"):
        objects = [obj for obj in read_annotation(folder / "Annotations" / f"{image_id}.xml")
                   if obj.class_name in class_ids and (every_image or spec.include_difficult or not obj.difficult)]
        if objects or every_image:
            listed.append(_Listed(image_id, folder / "JPEGImages" / f"{image_id}.jpg", objects))
        if limit is not None and len(listed) >= limit:
            break
    if not any(item.objects for item in listed):
        raise DatasetError(f"{folder / 'ImageSets' / 'Main' / f'{set_name}.txt'}: no listed image holds an object "
                           f"of {', '.join(class_ids)}")
    return listed


def _class_ids(spec: Spec) -> dict[str, int]:
    return {name: index for index, name in enumerate(spec.classes or VOC_CLASSES)}


def _read_images(listed: list[_Listed], spec: Spec, preprocess: Preprocess
                 ) -> tuple[np.ndarray, list[np.ndarray], list[tuple[int, int]]]:
    """The images as model inputs, their box rows in input pixels (training rows: include_difficult applies),
    and their original (width, height)."""
    class_ids = _class_ids(spec)
    images = np.empty([len(listed), *preprocess.shape[1:]], dtype=preprocess.dtype)
    rows, sizes = [], []
    for index, item in enumerate(listed):
        images[index], placement = read_image(item.path, preprocess)
        trained = [obj for obj in item.objects if spec.include_difficult or not obj.difficult]
        rows.append(_box_rows(trained, class_ids, placement))
        sizes.append(placement.original_size)
    return images, rows, sizes


def truth_boxes(objects: list[tuple[int, VocObject]], class_ids: dict[str, int]) -> Boxes:
    """(image index, object) pairs as ground truth Boxes in original pixels: the inclusive 1-based box
    xmin..xmax is the continuous span [xmin - 1, xmax); difficult flags kept; objects of other classes dropped."""
    from agent.detection.metrics import Boxes

    kept = [(index, obj) for index, obj in objects if obj.class_name in class_ids]
    xywh = np.array([[obj.box[0] - 1, obj.box[1] - 1, obj.box[2] - obj.box[0] + 1, obj.box[3] - obj.box[1] + 1]
                     for _, obj in kept], dtype=np.float64).reshape(-1, 4)
    return Boxes(image_id=np.array([index for index, _ in kept], dtype=np.int64),
                 category_id=np.array([class_ids[obj.class_name] for _, obj in kept], dtype=np.int64),
                 xywh=xywh, area=xywh[:, 2] * xywh[:, 3], crowd=np.zeros(len(kept), dtype=bool),
                 difficult=np.array([obj.difficult for _, obj in kept], dtype=bool))


def _truth(listed: list[_Listed], sizes: list[tuple[int, int]], spec: Spec) -> DetectionTruth:
    """The test list as the devkit scores it: boxes in original pixels, difficult objects flagged."""
    class_ids = _class_ids(spec)
    boxes = truth_boxes([(index, obj) for index, item in enumerate(listed) for obj in item.objects], class_ids)
    return DetectionTruth(files=tuple(item.path for item in listed), image_ids=np.arange(len(listed), dtype=np.int64),
                          names=tuple(item.image_id for item in listed), sizes=np.array(sizes, dtype=np.int64),
                          boxes=boxes, category_ids=tuple(range(len(class_ids))),
                          metric="voc07_ap50" if spec.year == 2007 else "voc_ap50", source_classes=VOC_CLASSES)


def _read_presence(folder: Path, set_name: str, spec: Spec, limit: int | None, preprocess: Preprocess
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Every listed image, labelled 1 when it holds an object of spec.presence_of, else 0."""
    ids = read_ids(folder / "ImageSets" / "Main" / f"{set_name}.txt")[:limit]
    images = np.empty([len(ids), *preprocess.shape[1:]], dtype=preprocess.dtype)
    labels = np.zeros(len(ids), dtype=np.int64)
    for index, image_id in enumerate(ids):
        objects = read_annotation(folder / "Annotations" / f"{image_id}.xml")
        labels[index] = any(obj.class_name == spec.presence_of and (spec.include_difficult or not obj.difficult)
                            for obj in objects)
        images[index], _ = read_image(folder / "JPEGImages" / f"{image_id}.jpg", preprocess)
    return images, labels


def load(spec: Spec, preprocess: Preprocess | None = None) -> Splits:
    """The train_set and test_set lists of VOC `year` as detection splits (see the module docstring), each image
    pre-processed as `preprocess` says (default: plain resize to image_size, scaled to [0, 1])."""
    folder = find_folder(spec.root, spec.year)
    chosen = preprocess or Preprocess(size=[spec.image_size, spec.image_size])
    if spec.presence_of is not None:
        train_x, train_labels = _read_presence(folder, spec.train_set, spec, spec.train_limit, chosen)
        test_x, test_labels = _read_presence(folder, spec.test_set, spec, spec.test_limit, chosen)
        return Splits(train_x=train_x, train_y=train_labels, test_x=test_x, test_y=test_labels,
                      class_names=(f"no_{spec.presence_of}", spec.presence_of))
    listed = {"train": _list_set(folder, spec.train_set, spec, spec.train_limit, every_image=False),
              "test": _list_set(folder, spec.test_set, spec, spec.test_limit, every_image=True)}
    train_x, train_y, _ = _read_images(listed["train"], spec, chosen)
    test_x, test_y, test_sizes = _read_images(listed["test"], spec, chosen)

    def at_size(split: str, size: int) -> np.ndarray:
        return _read_images(listed[split], spec, replace(chosen, size=[size, size]))[0]

    return Splits(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                  class_names=tuple(spec.classes or VOC_CLASSES), task="detection", at_size=at_size,
                  truth=_truth(listed["test"], test_sizes, spec))


DATASETS.register("voc")(Dataset(Spec, load, takes_preprocess=True))
