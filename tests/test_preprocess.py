"""agent/preprocess.py: how an image becomes a model input, checked against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from agent.preprocess import Preprocess


def _image(width: int, height: int, rgb: tuple[int, int, int]) -> Image.Image:
    return Image.fromarray(np.full((height, width, 3), rgb, dtype=np.uint8))


def test_plain_resize_scales_to_unit_range_nchw_float32():
    values, placement = Preprocess(size=[4, 6]).image(_image(12, 8, (255, 51, 0)))
    assert values.shape == (3, 4, 6) and values.dtype == np.float32
    np.testing.assert_allclose(values[:, 0, 0], [1.0, 0.2, 0.0], rtol=1e-6)
    assert (placement.original_size, placement.scale_x, placement.scale_y) == ((12, 8), 0.5, 0.5)


def test_letterbox_keeps_the_aspect_ratio_and_says_where_the_image_landed():
    values, placement = Preprocess(size=[8, 8], resize="letterbox", layout="NHWC", dtype="uint8", scale="0-255",
                                   pad_value=114).image(_image(16, 8, (10, 20, 30)))
    assert values.shape == (8, 8, 3) and values.dtype == np.uint8
    assert placement.scale_x == placement.scale_y == 0.5 and (placement.pad_x, placement.pad_y) == (0, 2)
    assert (values[:2] == 114).all() and (values[6:] == 114).all()  # padding above and below
    assert (values[2:6] == [10, 20, 30]).all()
    # A box corner in input pixels maps back to the original as (x - pad) / scale.
    assert ((4 - placement.pad_x) / placement.scale_x, (5 - placement.pad_y) / placement.scale_y) == (8.0, 6.0)


def test_centre_crop_bgr_and_mean_std():
    image = Image.fromarray(np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3))
    preprocess = Preprocess(size=[4, 4], crop=0.5, channels="BGR", scale="0-255", mean=[1, 2, 3], std=[2, 2, 2])
    values, placement = preprocess.image(image)
    resized = np.asarray(image.resize((8, 8), Image.Resampling.BILINEAR), dtype=np.float32)[2:6, 2:6, ::-1]
    np.testing.assert_allclose(values, ((resized - [1, 2, 3]) / 2).transpose(2, 0, 1), rtol=1e-6)
    assert (placement.scale_x, placement.pad_x) == (0.8, -2)


@pytest.mark.parametrize(("fields", "problem"), [
    ({"resize": "stretch"}, "resize"),
    ({"dtype": "uint8"}, "dtype"),  # uint8 needs scale 0-255
    ({"mean": [0.5]}, "mean"),
    ({"std": [1, 0, 1]}, "std"),
    ({"crop": 0.9, "resize": "letterbox"}, "crop"),
    ({"size": [0, 224]}, "size"),
    ({"mean": [float("nan"), 0, 0]}, "mean"),
])
def test_problems_name_the_field(fields, problem):
    assert problem in [field for field, _ in Preprocess(**fields).problems()]


def test_a_batch_of_files_in_the_model_layout(tmp_path):
    for index in range(3):
        _image(20, 10, (index, 0, 0)).save(tmp_path / f"{index}.png")
    batch = Preprocess(size=[5, 5], layout="NHWC").batch([str(tmp_path / f"{i}.png") for i in range(3)])
    assert batch.shape == (3, 5, 5, 3)
    np.testing.assert_allclose(batch[:, 0, 0, 0], [0, 1 / 255, 2 / 255], rtol=1e-5)
