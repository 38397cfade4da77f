"""Data sets: one module per data set, each reading a local copy in its standard on-disk format.

Contract of a data set module: it defines a pydantic `Spec` (subclass of
DatasetSpec, with `name: Literal["<its name>"]` and its own options) and a
loader `load(spec) -> Splits` (or `load(spec, preprocess)`, see Dataset), and registers both:

    DATASETS.register("cifar10")(Dataset(Spec, load))

Recipes validate the `dataset:` section against the Spec of the named data
set, so a bad option is reported with its file, line and key. Nothing is
downloaded at run time: a missing or malformed copy raises DatasetError
naming the path and the expected layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agent.registry import Registry


class DatasetSpec(BaseModel):
    """Fields every data set accepts.

    name: the data set module
    image_size: side of the square images fed to the model, in pixels
    root: folder holding the local copy (absent for data sets shipped in a package)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    image_size: int = Field(32, gt=0, le=4096)
    root: str | None = None


@dataclass(frozen=True)
class Splits:
    """Fixed train and test splits, ready for the model.

    train_x, test_x: float32 arrays, NCHW, normalized as the model expects
    train_y, test_y: classification: int64 class ids, shape (N,);
        detection: a list with one float32 array per image, shape (k, 6), rows
        [class_id, x1, y1, x2, y2, difficult] in pixels of the resized image
    class_names: names of the class ids, in order
    task: "classification" or "detection"
    at_size: the train or test images read again at another square size, for data sets that keep their
        files (None: the images are resized from the arrays here, NCHW float)
    """

    train_x: np.ndarray
    train_y: Any
    test_x: np.ndarray
    test_y: Any
    class_names: tuple[str, ...]
    task: str = "classification"
    at_size: Callable[[str, int], np.ndarray] | None = field(default=None, compare=False, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])


@dataclass(frozen=True)
class Dataset:
    """A registered data set: its recipe schema and its loader.

    load(spec) -> Splits; a data set with `takes_preprocess` reads image files, and its loader also takes an
    agent.preprocess.Preprocess (load(spec, preprocess)) to read them as a model's pre-processing says
    """

    spec: type[DatasetSpec]
    load: Callable[..., Splits]
    takes_preprocess: bool = False


DATASETS: Registry[Dataset] = Registry("dataset", modules={
    name: f"orchestrator.datasets.{name}" for name in ("cifar10", "digits", "image_folder", "voc")})
