"""Tiny data sets written in the real on-disk formats: CIFAR-10 python batches, Pascal VOC, image folders.

The images carry signal (a colour and stripe pattern per class, objects drawn
as class-coloured boxes) so a model trained on them learns something.
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
from PIL import Image

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Ten well-separated colours, one per class id (VOC classes use them by index modulo 10).
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [128, 128, 128]], dtype=np.int16)
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def class_image(class_id: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """An HWC uint8 image: the class's colour, stripes whose period depends on the class, and noise."""
    rows = np.arange(height)[:, None, None]
    stripes = ((rows // (1 + class_id % 4)) % 2) * 40 - 20
    noise = rng.integers(-25, 26, size=(height, width, 3))
    return np.clip(PALETTE[class_id % len(PALETTE)] + stripes + noise, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- CIFAR-10


def cifar_rows(images_hwc: np.ndarray) -> np.ndarray:
    """N x 32 x 32 x 3 uint8 images as CIFAR rows: N x 3072, the R, G, B planes one after the other, row-major."""
    return images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), -1)


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did when CIFAR-10 was released: str and bytes as BINSTRING, numpy.core names.

    Python 3 writes bytes under protocol 2 as calls to _codecs.encode; the official files hold plain strings.
    """

    dispatch: ClassVar[dict[type, Any]] = dict(pickle._Pickler.dispatch)

    def save_python2_string(self, obj: str | bytes) -> None:
        pickler: Any = self  # typeshed does not declare the pure-Python pickler's write and memoize
        data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        header = pickle.SHORT_BINSTRING + bytes([len(data)]) if len(data) < 256 \
            else pickle.BINSTRING + struct.pack("<i", len(data))
        pickler.write(header + data)
        pickler.memoize(obj)

    dispatch[bytes] = save_python2_string
    dispatch[str] = save_python2_string

    def save_global(self, obj: Any, name: str | None = None) -> None:
        pickler: Any = self
        module = {"numpy._core.multiarray": "numpy.core.multiarray"}.get(obj.__module__, obj.__module__)
        pickler.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        pickler.memoize(obj)


def write_cifar_batch(path: Path, data: np.ndarray, labels: Sequence[int] | np.ndarray, batch_label: str,
                      python2: bool = True) -> None:
    """One batch file: a protocol-2 pickle of a dict with bytes keys, written as Python 2 did (or as Python 3 does)."""
    batch = {b"batch_label": batch_label.encode(), b"labels": [int(label) for label in labels],
             b"data": np.ascontiguousarray(data, dtype=np.uint8),
             b"filenames": [f"fixture_{index:05d}.png".encode() for index in range(len(data))]}
    with path.open("wb") as file:
        (Python2Pickler(file, protocol=2) if python2 else pickle.Pickler(file, protocol=2)).dump(batch)


def write_cifar10(root: Path, n_train_per_batch: int = 20, n_test: int = 20, seed: int = 0) -> Path:
    """root/cifar-10-batches-py with data_batch_1..5, test_batch and batches.meta; returns that folder."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def batch(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, size=count)
        return cifar_rows(np.stack([class_image(int(label), 32, 32, rng) for label in labels])), labels

    for index in range(1, 6):
        data, labels = batch(n_train_per_batch)
        write_cifar_batch(folder / f"data_batch_{index}", data, labels, f"training batch {index} of 5")
    data, labels = batch(n_test)
    write_cifar_batch(folder / "test_batch", data, labels, "testing batch 1 of 1")
    meta = {b"num_cases_per_batch": n_train_per_batch, b"label_names": [name.encode() for name in CIFAR_CLASSES],
            b"num_vis": 3072}
    with (folder / "batches.meta").open("wb") as file:
        Python2Pickler(file, protocol=2).dump(meta)
    return folder


# --------------------------------------------------------------------------- Pascal VOC


class VocBox(NamedTuple):
    """One object of a VOC annotation, in VOC's 1-based inclusive pixel coordinates."""

    name: str
    xmin: int
    ymin: int
    xmax: int
    ymax: int
    difficult: bool = False


def _default_objects(ids: Sequence[str], rng: np.random.Generator) -> dict[str, list[VocBox]]:
    objects = {}
    for image_id in ids:
        boxes = []
        for _ in range(int(rng.integers(1, 4))):
            name = "person" if rng.random() < 0.4 else str(rng.choice(["dog", "car", "cat", "bicycle"]))
            xmin, ymin = int(rng.integers(1, 40)), int(rng.integers(1, 30))
            boxes.append(VocBox(name, xmin, ymin, xmin + int(rng.integers(8, 40)), ymin + int(rng.integers(8, 30)),
                                bool(rng.random() < 0.15)))
        objects[image_id] = boxes
    return objects


def _default_sets(ids: Sequence[str], year: int) -> dict[str, list[str]]:
    if year == 2012:  # the public 2012 release has no test annotations and no test.txt in its trainval tarball
        trainval, test = list(ids), []
    else:
        trainval = [image_id for index, image_id in enumerate(ids) if index % 4 != 3]
        test = [image_id for index, image_id in enumerate(ids) if index % 4 == 3]
    sets = {"train": trainval[0::2], "val": trainval[1::2], "trainval": trainval}
    return {**sets, "test": test} if test else sets


def _voc_image(size: tuple[int, int], boxes: Sequence[VocBox], rng: np.random.Generator) -> Image.Image:
    width, height = size
    pixels = rng.integers(90, 130, size=(height, width, 3)).astype(np.uint8)
    for box in boxes:
        colour = PALETTE[VOC_CLASSES.index(box.name) % len(PALETTE)].astype(np.uint8)
        pixels[box.ymin - 1:box.ymax, box.xmin - 1:box.xmax] = colour
    return Image.fromarray(pixels)


def _text(parent: ET.Element, tag: str, text: object) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = str(text)
    return element


def _bndbox(parent: ET.Element, xmin: int, ymin: int, xmax: int, ymax: int) -> None:
    box = ET.SubElement(parent, "bndbox")
    for tag, value in (("xmin", xmin), ("ymin", ymin), ("xmax", xmax), ("ymax", ymax)):
        _text(box, tag, value)


def voc_annotation(year: int, image_id: str, size: tuple[int, int], boxes: Sequence[VocBox]) -> str:
    """The XML text of a VOC annotation, with the elements and nesting of the real files."""
    root = ET.Element("annotation")
    _text(root, "folder", f"VOC{year}")
    _text(root, "filename", f"{image_id}.jpg")
    source = ET.SubElement(root, "source")
    _text(source, "database", f"The VOC{year} Database")
    _text(source, "annotation", f"PASCAL VOC{year}")
    _text(source, "image", "flickr")
    size_element = ET.SubElement(root, "size")
    for tag, value in (("width", size[0]), ("height", size[1]), ("depth", 3)):
        _text(size_element, tag, value)
    _text(root, "segmented", 0)
    for box in boxes:
        element = ET.SubElement(root, "object")
        _text(element, "name", box.name)
        _text(element, "pose", "Unspecified")
        _text(element, "truncated", 0)
        _text(element, "difficult", int(box.difficult))
        _bndbox(element, box.xmin, box.ymin, box.xmax, box.ymax)
        if year == 2012 and box.name == "person":  # 2012 person layout: parts nested in the object, each named
            part = ET.SubElement(element, "part")
            _text(part, "name", "head")
            _bndbox(part, box.xmin, box.ymin, (box.xmin + box.xmax) // 2, (box.ymin + box.ymax) // 2)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def write_voc(root: Path, year: int = 2007, ids: Sequence[str] | None = None,
              objects: Mapping[str, Sequence[VocBox]] | None = None, sizes: Mapping[str, tuple[int, int]] | None = None,
              sets: Mapping[str, Sequence[str]] | None = None, seed: int = 0) -> Path:
    """root/VOCdevkit/VOC<year> with JPEGImages, Annotations and ImageSets/Main lists; returns the VOC<year> folder.

    ids default to 8 images (or the keys of `objects`); objects default to 1-3 random boxes of person, dog, car,
    cat, bicycle; sizes (width, height) default to 80 x 60; sets default to a 2007-like split (no test list for 2012).
    """
    rng = np.random.default_rng(seed)
    prefix = "" if year == 2007 else "2008_"  # the real ids look like 000005 and 2008_000002
    ids = list(ids if ids is not None else (objects or [f"{prefix}{index:06d}" for index in range(1, 9)]))
    objects = objects if objects is not None else _default_objects(ids, rng)
    folder = root / "VOCdevkit" / f"VOC{year}"
    for part in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / part).mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        size = (sizes or {}).get(image_id, (80, 60))
        _voc_image(size, objects[image_id], rng).save(folder / "JPEGImages" / f"{image_id}.jpg", quality=95)
        (folder / "Annotations" / f"{image_id}.xml").write_text(voc_annotation(year, image_id, size, objects[image_id]))
    for set_name, members in (sets if sets is not None else _default_sets(ids, year)).items():
        (folder / "ImageSets" / "Main" / f"{set_name}.txt").write_text("".join(f"{member}\n" for member in members))
    return folder


# --------------------------------------------------------------------------- image folders

SUFFIXES = (".png", ".jpg", ".JPEG", ".bmp")  # mixed case on purpose: the reader matches suffixes case-insensitively


def write_image_folder(root: Path, classes: Sequence[str] | None = None, n: int = 6, size: tuple[int, int] = (24, 20),
                       seed: int = 0) -> Path:
    """root with n images per class in one sub-folder per class, or n images directly in it when classes is None."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    width, height = size
    groups = [(root, None)] if classes is None else [(root / name, index) for index, name in enumerate(classes)]
    for folder, class_id in groups:
        folder.mkdir(exist_ok=True)
        for index in range(n):
            colour_id = class_id if class_id is not None else int(rng.integers(0, 10))
            image = Image.fromarray(class_image(colour_id, height, width, rng))
            image.save(folder / f"image_{index:03d}{SUFFIXES[index % len(SUFFIXES)]}")
    return root


# --------------------------------------------------------------------------- COCO

# A few of COCO's real categories, with their real ids (COCO's ids have gaps: 1 person, 3 car, 18 dog).
COCO_CATEGORIES = ({"id": 1, "name": "person", "supercategory": "person"},
                   {"id": 3, "name": "car", "supercategory": "vehicle"},
                   {"id": 18, "name": "dog", "supercategory": "animal"})


class CocoBox(NamedTuple):
    """One object of a COCO annotation: category id, [x, y, w, h] in pixels, crowd flag."""

    category_id: int
    x: float
    y: float
    w: float
    h: float
    crowd: bool = False


def _coco_objects(rng: np.random.Generator, size: tuple[int, int], categories: Sequence[dict[str, Any]]
                  ) -> list[CocoBox]:
    width, height = size
    boxes = []
    for _ in range(int(rng.integers(0, 3))):
        w, h = int(rng.integers(width // 6, width // 2)), int(rng.integers(height // 6, height // 2))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        boxes.append(CocoBox(int(categories[int(rng.integers(0, len(categories)))]["id"]), x, y, w, h))
    return boxes


def write_coco(root: Path, split: str = "val2017", n: int = 12, size: tuple[int, int] = (96, 72),
               objects: Mapping[int, Sequence[CocoBox]] | None = None,
               categories: Sequence[dict[str, Any]] = COCO_CATEGORIES, first_id: int = 139, seed: int = 0) -> Path:
    """root/annotations/instances_<split>.json and root/<split>/<000000xxxxxx>.jpg, as COCO 2017 lays them out.

    Images get ids first_id, first_id + 1, ... (objects maps an image id to its boxes; default 0-2 random boxes,
    so some images hold none); each object is drawn as a box of its category's colour on a noisy grey image. The
    JSON has COCO's fields (info, licenses, images with width/height, annotations with area, iscrowd and a
    polygon segmentation, categories with supercategory), listed in a shuffled order as real files are not sorted.
    """
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(parents=True, exist_ok=True)
    colour = {int(category["id"]): PALETTE[index % len(PALETTE)] for index, category in enumerate(categories)}
    images, annotations = [], []
    width, height = size
    for image_id in range(first_id, first_id + n):
        boxes = list(objects[image_id]) if objects is not None else _coco_objects(rng, size, categories)
        pixels = rng.integers(90, 130, size=(height, width, 3)).astype(np.int16)
        for box in boxes:
            x0, y0 = int(round(box.x)), int(round(box.y))
            pixels[y0:y0 + int(round(box.h)), x0:x0 + int(round(box.w))] = colour[box.category_id]
        file_name = f"{image_id:012d}.jpg"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / split / file_name, quality=95)
        images.append({"license": 1, "file_name": file_name, "coco_url": "", "height": height, "width": width,
                       "date_captured": "2013-11-14 16:28:13", "flickr_url": "", "id": image_id})
        for box in boxes:
            polygon = [box.x, box.y, box.x + box.w, box.y, box.x + box.w, box.y + box.h, box.x, box.y + box.h]
            annotations.append({"segmentation": [polygon], "area": float(box.w * box.h), "iscrowd": int(box.crowd),
                                "image_id": image_id, "bbox": [box.x, box.y, box.w, box.h],
                                "category_id": box.category_id, "id": 900000 + len(annotations)})
    order = rng.permutation(len(images))
    dataset = {"info": {"description": "orch test fixture in COCO 2017's format", "version": "1.0", "year": 2017},
               "licenses": [{"url": "", "id": 1, "name": "fixture"}],
               "images": [images[index] for index in order], "annotations": annotations,
               "categories": list(categories)}
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(dataset))
    return root


def write_person_study_data(data: Path, images: int) -> Path:
    """The files recipes/tinyyolov2-voc-person.yaml reads, under `data`: a 20-class tiny-YOLOv2 Darknet weights file
    (random, seed 0) at weights/tiny-yolo-voc.weights and a VOC2007 of `images` images at VOCdevkit/."""
    import torch

    from orchestrator.models import MODELS
    from orchestrator.models.darknet import save_darknet

    torch.manual_seed(0)
    (data / "weights").mkdir(parents=True, exist_ok=True)
    save_darknet(MODELS.get("tiny_yolov2")(num_classes=20, in_channels=3).eval(),
                 data / "weights" / "tiny-yolo-voc.weights")
    write_voc(data / "voc", ids=[f"{index:06d}" for index in range(1, images + 1)])
    shutil.move(data / "voc" / "VOCdevkit", data / "VOCdevkit")
    return data
