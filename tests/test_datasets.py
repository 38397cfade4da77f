"""Data sets read from real files in their standard formats: CIFAR-10 python batches, Pascal VOC, image folders."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from orchestrator.datasets import DATASETS, Splits, cifar10, image_folder, voc
from orchestrator.errors import DatasetError, RecipeError
from orchestrator.recipes import load_recipe
from tests.support import TINY_RECIPE
from tests.support.datasets import VocBox, cifar_rows, write_cifar10, write_cifar_batch, write_image_folder, write_voc


def test_every_data_set_is_registered():
    assert {"cifar10", "digits", "image_folder", "voc"} <= set(DATASETS.names())


# --------------------------------------------------------------------------- CIFAR-10


def _cifar(root: Path, **options: object) -> Splits:
    return cifar10.load(cifar10.Spec(name="cifar10", root=str(root), **options))


def _cifar_pixels(normalized: np.ndarray) -> np.ndarray:
    """Normalized NCHW back to 0..255 values."""
    return (normalized * cifar10.STD[None, :, None, None] + cifar10.MEAN[None, :, None, None]) * 255


def test_cifar10_splits_shapes_dtypes_and_class_names(tmp_path: Path):
    write_cifar10(tmp_path, n_train_per_batch=4, n_test=6)
    splits = _cifar(tmp_path)
    assert splits.train_x.shape == (20, 3, 32, 32) and splits.test_x.shape == (6, 3, 32, 32)
    assert splits.train_x.dtype == np.float32 and splits.test_x.dtype == np.float32
    assert splits.train_y.dtype == np.int64 and splits.train_y.shape == (20,) and splits.test_y.shape == (6,)
    assert set(splits.train_y) <= set(range(10))
    assert splits.class_names[0] == "airplane" and splits.num_classes == 10 and splits.task == "classification"
    pixels = _cifar_pixels(splits.train_x)
    assert pixels.min() > -0.01 and pixels.max() < 255.01


def test_cifar10_reads_the_rgb_planes_row_major(tmp_path: Path):
    folder = write_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    # Written by hand from the official description, not by the fixture's encoder: the first 1024 bytes are
    # the red plane, then green, then blue, each row-major; here byte i holds (i * 7) % 256.
    row = (np.arange(3072) * 7 % 256).astype(np.uint8)
    write_cifar_batch(folder / "data_batch_1", np.stack([row, row[::-1]]), [3, 9], "training batch 1 of 5")
    splits = _cifar(folder)
    pixels = np.rint(_cifar_pixels(splits.train_x[:1]))[0]
    for channel, y, x in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0), (2, 31, 31), (1, 5, 17)]:
        assert pixels[channel, y, x] == (channel * 1024 + y * 32 + x) * 7 % 256
    assert splits.train_y[:2].tolist() == [3, 9]


def test_cifar10_root_may_be_the_batches_folder_and_limits_take_the_first_images(tmp_path: Path):
    folder = write_cifar10(tmp_path, n_train_per_batch=4, n_test=6)
    full = _cifar(tmp_path)
    limited = _cifar(folder, train_limit=7, test_limit=2)
    assert limited.train_x.shape[0] == 7 and limited.test_x.shape[0] == 2
    np.testing.assert_array_equal(limited.train_x, full.train_x[:7])
    np.testing.assert_array_equal(limited.test_y, full.test_y[:2])


def test_cifar10_resizes_to_image_size(tmp_path: Path):
    folder = write_cifar10(tmp_path, n_train_per_batch=1, n_test=1)
    flat = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    flat[..., 0], flat[..., 1], flat[..., 2] = 200, 100, 50
    write_cifar_batch(folder / "test_batch", cifar_rows(flat), [0], "testing batch 1 of 1")
    splits = _cifar(tmp_path, image_size=48)
    assert splits.train_x.shape == (5, 3, 48, 48)
    np.testing.assert_allclose(_cifar_pixels(splits.test_x)[0].mean(axis=(1, 2)), [200, 100, 50], atol=1e-3)


def test_cifar10_reads_batches_pickled_by_python2_as_released_and_by_python3(tmp_path: Path):
    folder = write_cifar10(tmp_path, n_train_per_batch=3, n_test=3)
    released = (folder / "data_batch_1").read_bytes()
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in released and b"_codecs" not in released
    before = _cifar(tmp_path)
    data = cifar_rows(np.rint(_cifar_pixels(before.train_x[:3])).astype(np.uint8).transpose(0, 2, 3, 1))
    write_cifar_batch(folder / "data_batch_1", data, before.train_y[:3], "training batch 1 of 5", python2=False)
    assert b"_codecs" in (folder / "data_batch_1").read_bytes()
    after = _cifar(tmp_path)
    np.testing.assert_allclose(after.train_x, before.train_x, atol=1e-6)
    np.testing.assert_array_equal(after.train_y, before.train_y)


class _RunsACommand:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_cifar10_refuses_a_pickle_that_would_run_code(tmp_path: Path):
    folder = write_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    marker = tmp_path / "pwned"
    evil = {b"data": _RunsACommand(f"touch {marker}"), b"labels": [0]}
    (folder / "data_batch_1").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DatasetError, match=r"data_batch_1: refused to load (posix|os)\.system"):
        _cifar(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    b"cbuiltins\neval\n(S'1+1'\ntR.",                      # a call to eval
    b"cnumpy\nload\n(S'/etc/passwd'\ntR.",                  # a numpy function that is not array reconstruction
])
def test_cifar10_refuses_any_other_global(tmp_path: Path, payload: bytes):
    folder = write_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(DatasetError, match="test_batch: refused to load"):
        _cifar(tmp_path)


def test_cifar10_truncated_or_wrong_content_is_a_dataset_error(tmp_path: Path):
    folder = write_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    content = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(content[:len(content) // 2])
    with pytest.raises(DatasetError, match="data_batch_3: not a CIFAR-10 python batch"):
        _cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(DatasetError, match="data_batch_3: not a CIFAR-10 python batch"):
        _cifar(tmp_path)


def test_cifar10_missing_files_name_the_path_and_the_layout(tmp_path: Path):
    with pytest.raises(DatasetError) as caught:
        _cifar(tmp_path / "nowhere")
    assert str(caught.value) == (f"{tmp_path / 'nowhere'}: expected cifar-10-batches-py/data_batch_1..5 and "
                                 "test_batch (the python version of CIFAR-10)")
    folder = write_cifar10(tmp_path, n_train_per_batch=1, n_test=1)
    (folder / "test_batch").unlink()
    with pytest.raises(DatasetError, match=f"^{tmp_path}: expected cifar-10-batches-py"):
        _cifar(tmp_path)


# --------------------------------------------------------------------------- Pascal VOC


def _voc(root: Path, **options: object) -> Splits:
    return voc.load(voc.Spec(name="voc", root=str(root), **options))


def test_voc_splits_shapes_dtypes_and_ranges(tmp_path: Path):
    write_voc(tmp_path)
    splits = _voc(tmp_path, image_size=40)
    assert splits.task == "detection" and splits.class_names == voc.VOC_CLASSES and splits.num_classes == 20
    assert splits.train_x.shape == (6, 3, 40, 40) and splits.test_x.shape == (2, 3, 40, 40)
    assert splits.train_x.dtype == np.float32 and splits.train_x.min() >= 0.0 and splits.train_x.max() <= 1.0
    assert len(splits.train_y) == 6 and len(splits.test_y) == 2
    for boxes in splits.train_y + splits.test_y:
        assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 6 and len(boxes) >= 1
        assert (boxes[:, 1:5] >= 0).all() and (boxes[:, 1:5] <= 40).all()
        assert (boxes[:, 1] < boxes[:, 3]).all() and (boxes[:, 2] < boxes[:, 4]).all()


def test_voc_rescales_a_known_box_as_a_continuous_span_of_the_resized_image(tmp_path: Path):
    objects = {"000007": [VocBox("dog", 11, 6, 51, 26)]}
    write_voc(tmp_path, objects=objects, sizes={"000007": (100, 50)},
              sets={"trainval": ["000007"], "test": ["000007"]})
    splits = _voc(tmp_path, image_size=64)
    dog = voc.VOC_CLASSES.index("dog")
    # Pixels 11..51 (inclusive, 1-based) are the span [10, 51): (11 - 1) * 64/100, (6 - 1) * 64/50, 51 * 64/100,
    # 26 * 64/50, as the devkit's +1 in widths has it.
    np.testing.assert_allclose(splits.train_y[0], [[dog, 6.4, 6.4, 32.64, 33.28, 0.0]], rtol=1e-6)
    # The box was drawn in the dog's colour: its inside differs from the grey background.
    image = splits.train_x[0]
    assert abs(image[:, 20, 20] - image[:, 50, 50]).max() > 0.2


def _people_and_pets(root: Path, year: int = 2007) -> None:
    objects = {
        "000001": [VocBox("person", 2, 2, 20, 30), VocBox("dog", 30, 10, 60, 40)],
        "000002": [VocBox("dog", 5, 5, 25, 25)],
        "000003": [VocBox("car", 1, 1, 30, 20), VocBox("person", 40, 10, 60, 50, difficult=True)],
        "000004": [VocBox("cat", 10, 10, 30, 30), VocBox("person", 35, 5, 70, 55)],
    }
    write_voc(root, year=year, objects=objects,
              sets={"trainval": ["000001", "000002", "000003"], "val": ["000004"], "test": ["000004"]})


def test_voc_person_only_keeps_person_boxes_and_images_with_a_person(tmp_path: Path):
    _people_and_pets(tmp_path)
    splits = _voc(tmp_path, classes=["person"])
    assert splits.class_names == ("person",) and splits.num_classes == 1
    assert len(splits.train_y) == 2 and splits.train_x.shape[0] == 2  # 000002 holds no person
    for boxes in splits.train_y + splits.test_y:
        assert (boxes[:, 0] == 0).all()
    assert [len(boxes) for boxes in splits.train_y] == [1, 1]


def test_voc_classes_are_renumbered_in_the_given_order(tmp_path: Path):
    _people_and_pets(tmp_path)
    splits = _voc(tmp_path, classes=["person", "dog"])
    assert splits.class_names == ("person", "dog")
    assert splits.train_y[0][:, 0].tolist() == [0, 1] and splits.train_y[1][:, 0].tolist() == [1]


def test_voc_difficult_flag_is_carried_or_the_objects_dropped(tmp_path: Path):
    _people_and_pets(tmp_path)
    with_difficult = _voc(tmp_path)
    assert with_difficult.train_y[2][:, 5].tolist() == [0.0, 1.0]
    without = _voc(tmp_path, include_difficult=False)
    assert without.train_y[2][:, 5].tolist() == [0.0] and len(without.train_y[2]) == 1
    person_only = _voc(tmp_path, classes=["person"], include_difficult=False)
    assert len(person_only.train_y) == 1  # 000003's only person is difficult


def test_voc_limits_take_the_first_kept_images(tmp_path: Path):
    _people_and_pets(tmp_path)
    full = _voc(tmp_path, classes=["person", "dog"])
    limited = _voc(tmp_path, classes=["person", "dog"], train_limit=2, test_limit=1)
    assert len(full.train_y) == 3 and len(limited.train_y) == 2 and len(limited.test_y) == 1
    np.testing.assert_array_equal(limited.train_x, full.train_x[:2])
    np.testing.assert_array_equal(limited.train_y[1], full.train_y[1])


def test_voc_2012_defaults_to_val_for_testing_and_ignores_person_parts(tmp_path: Path):
    spec = voc.Spec(name="voc", root="data", year=2012)
    assert spec.test_set == "val" and spec.train_set == "trainval"
    assert voc.Spec(name="voc", root="data").test_set == "test"
    assert voc.Spec(name="voc", root="data", year=2012, test_set="train").test_set == "train"
    _people_and_pets(tmp_path, year=2012)
    splits = _voc(tmp_path, year=2012, classes=["person"])
    assert [len(boxes) for boxes in splits.train_y] == [1, 1] and len(splits.test_y) == 1  # no <part> counted


@pytest.mark.parametrize("where", ["", "VOCdevkit", "VOCdevkit/VOC2012"])
def test_voc_root_may_be_the_devkit_parent_the_devkit_or_the_year_folder(tmp_path: Path, where: str):
    write_voc(tmp_path, year=2012)
    assert len(_voc(tmp_path / where, year=2012).train_y) == 8


def test_voc_missing_or_mismatched_folders_name_the_path(tmp_path: Path):
    with pytest.raises(DatasetError) as caught:
        _voc(tmp_path)
    assert str(caught.value) == (f"{tmp_path}: expected VOCdevkit/VOC2007 (or VOC2007 itself) with Annotations/, "
                                 "ImageSets/Main/ and JPEGImages/ (Pascal VOC 2007)")
    folder = write_voc(tmp_path, year=2012)
    with pytest.raises(DatasetError, match="VOC2012: is not VOC2007"):
        _voc(folder)
    with pytest.raises(DatasetError, match=r"ImageSets/Main/test\.txt: image list is missing"):
        _voc(tmp_path, year=2012, test_set="test")
    (folder / "JPEGImages" / "2008_000002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"JPEGImages/2008_000002\.jpg: image file is missing"):
        _voc(tmp_path, year=2012)


def test_voc_broken_annotations_are_dataset_errors(tmp_path: Path):
    folder = write_voc(tmp_path)
    (folder / "Annotations" / "000001.xml").write_text("<annotation><object><name>person</name>")
    with pytest.raises(DatasetError, match=r"000001\.xml: not a VOC annotation"):
        _voc(tmp_path)
    (folder / "Annotations" / "000001.xml").write_text("<annotation><object><name>unicorn</name></object></annotation>")
    with pytest.raises(DatasetError, match=r"000001\.xml: object 1 needs a VOC class"):
        _voc(tmp_path)
    with pytest.raises(DatasetError, match="no listed image holds an object of cow"):
        _voc(tmp_path, classes=["cow"], train_set="test")


# --------------------------------------------------------------------------- image folders


def _folder(root: Path, **options: object) -> Splits:
    return image_folder.load(image_folder.Spec(name="image_folder", root=str(root), **options))


def test_image_folder_with_class_folders_labels_by_sorted_folder_name(tmp_path: Path):
    write_image_folder(tmp_path, classes=["dog", "ant", "cat"], n=5)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    splits = _folder(tmp_path, image_size=16)
    assert splits.class_names == ("ant", "cat", "dog") and splits.task == "classification"
    assert splits.train_x.shape == (12, 3, 16, 16) and splits.test_x.shape == (3, 3, 16, 16)
    assert splits.train_x.dtype == np.float32 and splits.train_x.min() >= 0.0 and splits.train_x.max() <= 1.0
    assert splits.train_y.dtype == np.int64 and sorted(splits.test_y.tolist()) == [0, 1, 2]  # one per class
    # Class "dog" (written as class 0, palette red) is id 2: its images are red.
    red = splits.train_x[splits.train_y == 2][:, 0].mean()
    assert red > splits.train_x[splits.train_y == 2][:, 2].mean() + 0.3


def test_image_folder_flat_has_no_labels(tmp_path: Path):
    write_image_folder(tmp_path, n=10)
    splits = _folder(tmp_path)
    assert splits.class_names == () and splits.train_x.shape[0] == 8 and splits.test_x.shape[0] == 2
    assert splits.train_y.dtype == np.int64 and (splits.train_y == -1).all() and (splits.test_y == -1).all()


def test_image_folder_split_is_fixed_and_limit_applies(tmp_path: Path):
    write_image_folder(tmp_path, classes=["a", "b"], n=8)
    first, second = _folder(tmp_path, test_fraction=0.25), _folder(tmp_path, test_fraction=0.25)
    np.testing.assert_array_equal(first.test_x, second.test_x)
    assert first.test_x.shape[0] == 4
    assert not any(np.array_equal(image, held_out) for image in first.train_x for held_out in first.test_x)
    limited = _folder(tmp_path, limit=5, test_fraction=0.0)
    assert limited.train_x.shape[0] == 5 and limited.test_x.shape[0] == 0


def test_image_folder_channels_and_normalization(tmp_path: Path):
    write_image_folder(tmp_path, classes=["a", "b"], n=3)
    rgb = _folder(tmp_path)
    np.testing.assert_array_equal(_folder(tmp_path, channels="BGR").train_x, rgb.train_x[:, ::-1])
    grey = _folder(tmp_path, channels="L")
    assert grey.train_x.shape[1] == 1 and grey.in_channels == 1
    normalized = _folder(tmp_path, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.5])
    expected = (rgb.train_x - np.array([0.5, 0.4, 0.3])[:, None, None]) / np.array([0.2, 0.25, 0.5])[:, None, None]
    np.testing.assert_allclose(normalized.train_x, expected, rtol=1e-5, atol=1e-6)


def test_image_folder_bad_layouts_name_the_path(tmp_path: Path):
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'missing'}: folder is missing"):
        _folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: no images found; expected images"):
        _folder(tmp_path / "empty")
    write_image_folder(tmp_path / "mixed", classes=["a"], n=2)
    write_image_folder(tmp_path / "mixed", n=2)
    with pytest.raises(DatasetError, match=r"mixed: holds both images and class sub-folders \(a/\)"):
        _folder(tmp_path / "mixed")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"x\.png: not a readable image"):
        _folder(tmp_path / "broken")


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(("name", "options", "message"), [
    ("cifar10", {"train_limit": -1}, "greater than 0"),
    ("cifar10", {"test_limit": 0}, "greater than 0"),
    ("cifar10", {"shuffle": True}, "Extra inputs are not permitted"),
    ("cifar10", {"root": None}, "Input should be a valid string"),
    ("voc", {"classes": ["person", "persn"]}, "[1] unknown VOC class 'persn'; known: aeroplane,"),
    ("voc", {"classes": ["dog", "dog"]}, "class 'dog' is listed twice"),
    ("voc", {"classes": []}, "at least 1 item"),
    ("voc", {"year": 2010}, "2007 or 2012"),
    ("voc", {"train_limit": -3}, "greater than 0"),
    ("voc", {"test_set": "minival"}, "'train', 'val', 'trainval' or 'test'"),
    ("image_folder", {"limit": -1}, "greater than 0"),
    ("image_folder", {"test_fraction": 1.0}, "less than 1"),
    ("image_folder", {"mean": [0.5]}, "mean needs 3 values for channels RGB, got 1"),
    ("image_folder", {"channels": "L", "std": [0.5, 0.5, 0.5]}, "std needs 1 value"),
    ("image_folder", {"std": [1, 0, 1]}, "std values must be > 0"),
    ("image_folder", {"channels": "RGBA"}, "'RGB', 'BGR' or 'L'"),
    ("image_folder", {"root": ""}, "at least 1 character"),
])
def test_bad_options_fail_validation(name: str, options: dict, message: str):
    with pytest.raises(ValidationError) as caught:
        DATASETS.get(name).spec.model_validate({"name": name, "root": "data", **options})
    assert message in str(caught.value)


def _recipe_with(tmp_path: Path, dataset: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(TINY_RECIPE.replace("dataset: {name: digits, image_size: 16}", f"dataset: {dataset}"))
    return path


def test_a_recipe_picks_the_data_set_schema_by_name(tmp_path: Path):
    loaded = load_recipe(_recipe_with(tmp_path, "{name: voc, root: v, year: 2012, classes: [person], image_size: 64}"))
    assert isinstance(loaded.recipe.dataset, voc.Spec) and loaded.recipe.dataset.test_set == "val"
    loaded = load_recipe(_recipe_with(tmp_path, "{name: cifar10, root: data, train_limit: 100}"))
    assert isinstance(loaded.recipe.dataset, cifar10.Spec) and loaded.recipe.dataset.train_limit == 100


def test_an_unknown_voc_class_fails_at_recipe_load_naming_the_known_ones(tmp_path: Path):
    with pytest.raises(RecipeError) as caught:
        load_recipe(_recipe_with(tmp_path, "{name: voc, root: data, classes: [person, persn]}"))
    assert caught.value.key == "dataset.classes[1]" and caught.value.line == 3
    assert "unknown VOC class 'persn'; known: aeroplane, bicycle" in str(caught.value)
    with pytest.raises(RecipeError) as caught:
        load_recipe(_recipe_with(tmp_path, "{name: image_folder, root: data, limit: -5}"))
    assert caught.value.key == "dataset.limit"
    with pytest.raises(RecipeError) as caught:
        load_recipe(_recipe_with(tmp_path, "{name: cifar10}"))
    assert caught.value.key == "dataset.root" and "required key is missing" in str(caught.value)
