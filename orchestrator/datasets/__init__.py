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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agent.registry import Registry

if TYPE_CHECKING:
    from agent.detection.metrics import Boxes
    from agent.preprocess import Preprocess


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

    def preprocess(self, size: int | None = None) -> Preprocess:
        """How this data set turns an image file into a model input at `size` pixels (default image_size): a plain
        resize, scaled to [0, 1], RGB, NCHW float32 (data sets with their own normalization override it)."""
        from agent.preprocess import Preprocess

        side = size or self.image_size
        return Preprocess(size=[side, side])


@dataclass(frozen=True)
class DetectionTruth:
    """The test split of a detection data set as its official scorer sees it: every image file, its size and the
    ground truth in original-image pixels, so average precision is computed where the official tools compute it.

    files: the image files, in the test split's order
    image_ids: the data set's image ids (COCO's own; the position in the image list for VOC)
    names: the images' names in the data set (VOC ids, COCO file names)
    sizes: (n, 2) int64 original width, height
    boxes: the ground truth (agent/detection/metrics.py Boxes: continuous x, y, w, h; crowd and difficult flags)
    category_ids: the category id of each class index, in class_names order (VOC: the index itself)
    metric: the data set's official headline metric: voc07_ap50 (VOC2007's 11-point AP), voc_ap50 (VOC2010+
        all-point AP) or coco_ap (COCO's AP at IoU .50:.95)
    source_classes: every class of the data set's source, in its own order (VOC's 20; a COCO file's categories
        by id), which a model trained on the whole source labels by
    """

    files: tuple[Path, ...]
    image_ids: np.ndarray
    names: tuple[str, ...]
    sizes: np.ndarray
    boxes: Boxes
    category_ids: tuple[int, ...]
    metric: str
    source_classes: tuple[str, ...] = ()


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
    truth: detection: the test split as the official scorer sees it (DetectionTruth); None otherwise
    """

    train_x: np.ndarray
    train_y: Any
    test_x: np.ndarray
    test_y: Any
    class_names: tuple[str, ...]
    task: str = "classification"
    at_size: Callable[[str, int], np.ndarray] | None = field(default=None, compare=False, repr=False)
    truth: DetectionTruth | None = field(default=None, compare=False, repr=False)

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
    name: f"orchestrator.datasets.{name}" for name in ("cifar10", "coco", "digits", "image_folder", "voc")})
