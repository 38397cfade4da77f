"""CIFAR-10 from a local copy of its official python version (`cifar-10-batches-py/`).

Layout: data_batch_1 .. data_batch_5 (50000 training images), test_batch
(10000), batches.meta (class names). Each file is a pickle of a dict with
b'data' (uint8, N x 3072: the R, G and B planes of a 32x32 image, each row-major)
and b'labels'. Images are scaled to [0, 1], resized bilinearly when
`image_size` is not 32, and normalized per channel with the usual CIFAR-10
training-set mean and standard deviation.
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
from pydantic import Field

from orchestrator.datasets import DATASETS, Dataset, DatasetSpec, Splits
from orchestrator.errors import DatasetError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
LAYOUT = f"expected {FOLDER}/data_batch_1..5 and test_batch (the python version of CIFAR-10)"
SIDE = 32
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Per-channel statistics of the 50000 training images in [0, 1] (the true std, not the often-copied 0.2023 set).
MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)
RESIZE_CHUNK = 1024


class Spec(DatasetSpec):
    """CIFAR-10 options.

    root: the folder holding cifar-10-batches-py, or that folder itself (required)
    image_size: 32 keeps the native size; anything else resizes bilinearly
    train_limit, test_limit: keep only the first N images of each split (all when absent)
    """

    name: Literal["cifar10"]
    root: str = Field(min_length=1)
    train_limit: int | None = Field(None, gt=0)
    test_limit: int | None = Field(None, gt=0)


def _numpy_reconstruct() -> Any:
    try:
        return importlib.import_module("numpy._core.multiarray")._reconstruct
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core.multiarray")._reconstruct


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batch files, resolving only the globals that numpy arrays and bytes need.

    The official format is a pickle, and unpickling calls whatever importable
    callable a file names: a crafted batch file could run code. Every global
    outside this list is refused.
    """

    ALLOWED: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),  # written under numpy 1 (the official files)
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),  # written under numpy 2
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how protocol 2 writes bytes under Python 3
        ("builtins", "bytes"): bytes,
        ("__builtin__", "bytes"): bytes,  # Python 2's name, as protocol 2 writes it
    }

    def __init__(self, file: BinaryIO, path: Path):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise DatasetError(f"{self.path}: refused to load {module}.{name} (a CIFAR-10 batch holds only numpy "
                               "arrays, lists and bytes; this file is not one)") from None


def _unpickle(path: Path) -> dict[bytes, Any]:
    try:
        with path.open("rb") as file:
            content = _BatchUnpickler(file, path).load()
    except FileNotFoundError:
        raise DatasetError(f"{path.parent}: {path.name} is missing; {LAYOUT}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DatasetError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(content, dict):
        raise DatasetError(f"{path}: not a CIFAR-10 python batch (holds a {type(content).__name__}, not a dict)")
    return content


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A batch file's images (uint8, N x 3 x 32 x 32) and labels (int64)."""
    batch = _unpickle(path)
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * SIDE * SIDE or labels is None or len(labels) != len(data):
        raise DatasetError(f"{path}: not a CIFAR-10 python batch (expected b'data' uint8 N x 3072 and N b'labels')")
    return data.reshape(-1, 3, SIDE, SIDE), np.asarray(labels, dtype=np.int64)


def _read_split(folder: Path, files: tuple[str, ...], limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    images, labels, count = [], [], 0
    for file in files:
        if limit is not None and count >= limit:
            break
        batch_images, batch_labels = _read_batch(folder / file)
        images.append(batch_images)
        labels.append(batch_labels)
        count += len(batch_labels)
    return np.concatenate(images)[:limit], np.concatenate(labels)[:limit]


def _class_names(folder: Path) -> tuple[str, ...]:
    if not (folder / META_FILE).is_file():
        return CLASS_NAMES
    names = _unpickle(folder / META_FILE).get(b"label_names")
    if not isinstance(names, list) or not all(isinstance(name, bytes) for name in names):
        raise DatasetError(f"{folder / META_FILE}: expected b'label_names', a list of class names")
    return tuple(name.decode() for name in names)


def _normalize(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 NCHW -> float32 NCHW at `size`, normalized; in chunks to bound the peak memory."""
    import torch  # here, not at the top: reading a recipe never needs torch
    import torch.nn.functional as F

    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for start in range(0, len(images), RESIZE_CHUNK):
        chunk = torch.from_numpy(images[start:start + RESIZE_CHUNK].astype(np.float32) / 255.0)
        if size != SIDE:
            chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False)
        out[start:start + RESIZE_CHUNK] = chunk.numpy()
    out -= MEAN[None, :, None, None]
    out /= STD[None, :, None, None]
    return out


def find_folder(root: str) -> Path:
    """The cifar-10-batches-py folder under `root`, or `root` itself when it is that folder."""
    base = Path(root)
    for folder in (base / FOLDER, base):
        if all((folder / file).is_file() for file in (*TRAIN_FILES, TEST_FILE)):
            return folder
    raise DatasetError(f"{base}: {LAYOUT}")


def load(spec: Spec) -> Splits:
    """CIFAR-10's official train (50000) and test (10000) splits, or their first train_limit/test_limit images."""
    folder = find_folder(spec.root)
    train_images, train_y = _read_split(folder, TRAIN_FILES, spec.train_limit)
    test_images, test_y = _read_split(folder, (TEST_FILE,), spec.test_limit)
    return Splits(train_x=_normalize(train_images, spec.image_size), train_y=train_y,
                  test_x=_normalize(test_images, spec.image_size), test_y=test_y,
                  class_names=_class_names(folder))


DATASETS.register("cifar10")(Dataset(Spec, load))
