"""Data sets: one module per data set, each reading a local copy in its standard format.

Contract of a data set module: a loader registered in DATASETS with signature
`(spec: DatasetSpec) -> Splits`; nothing is downloaded at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.registry import Registry


@dataclass(frozen=True)
class Splits:
    """Fixed train and test splits as float32 NCHW images and int64 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])


DatasetLoader = Callable[[Any], Splits]
DATASETS: Registry[DatasetLoader] = Registry("dataset")

from orchestrator.datasets import digits  # noqa: E402,F401
