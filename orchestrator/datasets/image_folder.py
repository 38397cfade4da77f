"""A folder of images: flat (unlabelled, e.g. to calibrate a user's ONNX model) or one sub-folder per class.

Images are .jpg, .jpeg, .png or .bmp (any case). In the ImageNet-style
layout, `root/<class>/**/<image>`, class ids follow the sorted folder names.
In the flat layout, `root/<image>`, there are no labels: both splits carry
label -1 and class_names is empty, so accuracy cannot be scored. Every image
is read by agent/preprocess.py: by default resized plainly (bilinear, aspect
ratio not kept) to image_size x image_size, scaled to [0, 1], then normalized
with `mean`/`std` when given, NCHW float32; an ONNX model's declared or
inferred pre-processing (letterbox, crop, NHWC, uint8, ...) replaces that.
The test split is a fixed-seed draw of `test_fraction` of the images of each
class (of all images when flat).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import Field, model_validator

from agent.preprocess import Placement, Preprocess
from orchestrator.datasets import DATASETS, Dataset, DatasetSpec, Splits
from orchestrator.errors import DatasetError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
LAYOUT = "expected images (.jpg, .jpeg, .png, .bmp) directly in it, or in one sub-folder per class"
SPLIT_SEED = 0
NO_LABEL = -1


def read_image(path: Path, preprocess: Preprocess) -> tuple[np.ndarray, Placement]:
    """An image file as one model input (agent/preprocess.py), and where the original landed in it."""
    try:
        return preprocess.file(str(path))
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file is missing") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from None


class Spec(DatasetSpec):
    """Image folder options.

    root: the folder of images (required)
    channels: "RGB", "BGR" (channel order reversed, as Caffe-era models expect) or "L" (one grey channel)
    mean, std: per-channel values subtracted and divided after scaling to [0, 1]
        (one value per channel of `channels`); absent means no normalization
    test_fraction: share of each class (of all images when flat) held out for testing, in [0, 1)
    limit: use at most this many images, a fixed-seed random subset (all when absent)
    """

    name: Literal["image_folder"]
    root: str = Field(min_length=1)
    channels: Literal["RGB", "BGR", "L"] = "RGB"
    mean: list[float] | None = None
    std: list[float] | None = None
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    limit: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_value_per_channel(self) -> Spec:
        count = 1 if self.channels == "L" else 3
        for field, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) != count:
                raise ValueError(f"{field} needs {count} value{'s' if count > 1 else ''} for channels "
                                 f"{self.channels}, got {len(values)}")
        if self.std is not None and any(value <= 0 for value in self.std):
            raise ValueError("std values must be > 0")
        return self

    def preprocess(self, size: int | None = None) -> Preprocess:
        """This data set's own pre-processing: plain resize, scaled to [0, 1], its channels, mean and std, NCHW."""
        side = size or self.image_size
        return Preprocess(size=[side, side], channels=self.channels, mean=self.mean, std=self.std)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


def find_images(root: str) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """The image paths under `root`, their labels (-1 when flat) and the class names (empty when flat)."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{base}: folder is missing; {LAYOUT}")
    flat = sorted(path for path in base.iterdir() if _is_image(path))
    class_dirs = [folder for folder in _visible_dirs(base) if any(_is_image(path) for path in folder.rglob("*"))]
    if flat and class_dirs:
        raise DatasetError(f"{base}: holds both images and class sub-folders ({class_dirs[0].name}/); {LAYOUT}")
    if flat:
        return flat, np.full(len(flat), NO_LABEL, dtype=np.int64), ()
    if not class_dirs:
        raise DatasetError(f"{base}: no images found; {LAYOUT}")
    paths: list[Path] = []
    labels: list[int] = []
    for class_id, folder in enumerate(class_dirs):
        images = sorted(path for path in folder.rglob("*") if _is_image(path))
        paths += images
        labels += [class_id] * len(images)
    return paths, np.array(labels, dtype=np.int64), tuple(folder.name for folder in class_dirs)


def split_indices(labels: np.ndarray, test_fraction: float, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-seed train and test indices: test_fraction of each label's items, at least one left for training."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held_out = min(math.floor(test_fraction * len(members) + 0.5), len(members) - 1)
        test.append(members[:held_out])
        train.append(members[held_out:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def read_all(paths: list[Path], preprocess: Preprocess) -> np.ndarray:
    """Image files as one batch of model inputs."""
    images = np.empty([len(paths), *preprocess.shape[1:]], dtype=preprocess.dtype)
    for index, path in enumerate(paths):
        images[index] = read_image(path, preprocess)[0]
    return images


def load(spec: Spec, preprocess: Preprocess | None = None) -> Splits:
    """The folder's images split into train and test, each image pre-processed as `preprocess` says (default:
    the data set's own, see the module docstring); other sizes are read again from the files."""
    paths, labels, class_names = find_images(spec.root)
    if spec.limit is not None and spec.limit < len(paths):
        keep = np.sort(np.random.default_rng(SPLIT_SEED).permutation(len(paths))[:spec.limit])
        paths, labels = [paths[index] for index in keep], labels[keep]
    train, test = split_indices(labels, spec.test_fraction)
    chosen = preprocess or spec.preprocess()
    files = {"train": [paths[index] for index in train], "test": [paths[index] for index in test]}

    def at_size(split: str, size: int) -> np.ndarray:
        return read_all(files[split], replace(chosen, size=[size, size]))

    return Splits(train_x=read_all(files["train"], chosen), train_y=labels[train],
                  test_x=read_all(files["test"], chosen), test_y=labels[test], class_names=class_names,
                  at_size=at_size)


DATASETS.register("image_folder")(Dataset(Spec, load, takes_preprocess=True))
