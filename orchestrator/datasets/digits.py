"""scikit-learn's handwritten digits (1797 8x8 images, ships inside scikit-learn: no download).

Images are scaled to [0, 1], upsampled bilinearly to `image_size` so the
convolutions are not trivially small, and normalized to zero mean and unit
variance (statistics of the training split). The split is fixed: 20% test,
stratified, random_state 0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from orchestrator.datasets import DATASETS, Dataset, DatasetSpec, Splits

TEST_FRACTION = 0.2
SPLIT_SEED = 0


def _upsample(images: np.ndarray, size: int) -> np.ndarray:
    import torch  # here, not at the top: reading a recipe never needs torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(images[:, None, :, :].astype(np.float32) / 16.0)
    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False).numpy()


class Spec(DatasetSpec):
    """digits takes no root: the data ships inside scikit-learn."""

    name: Literal["digits"]


def load(spec: Spec) -> Splits:
    """The digits data set at spec.image_size pixels, fixed train/test split."""
    from sklearn.datasets import load_digits  # here, not at the top: a cached build never needs sklearn
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_img, test_img, train_y, test_y = train_test_split(
        digits.images, digits.target, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=digits.target)
    train_x = _upsample(train_img, spec.image_size)
    test_x = _upsample(test_img, spec.image_size)
    mean, std = float(train_x.mean()), float(train_x.std())
    return Splits(train_x=(train_x - mean) / std, train_y=train_y.astype(np.int64),
                  test_x=(test_x - mean) / std, test_y=test_y.astype(np.int64),
                  class_names=tuple(str(d) for d in range(10)))


DATASETS.register("digits")(Dataset(Spec, load))
