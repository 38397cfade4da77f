"""Bring-your-own ONNX on files shaped like the ones users have (tests/support/onnx_models.py): every quantize
preset, fp16 and simplify build and measure `ok` on `local`, agree with the fp32 model, and score top-1 on the
device; one variant's failed build costs no other variant its measurement; `recipes check` judges the file."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from agent.preprocess import Preprocess
from orchestrator.lab import Lab
from tests.support import one_line_error, onnx_models, orch, run_env

pytestmark = pytest.mark.slow

ALL_PRESETS = ["none", "fp16", "dynamic_uint8", "dynamic_int8", "int8_static", "uint8_static",
               "int8_static_qoperator"]
RECIPE = """\
name: {name}
model: {{onnx: {file}}}
dataset: {{name: image_folder, root: images, image_size: 32, test_fraction: 0.25}}
variants:
  quantize: [{presets}]
  calibration_samples: 16
  include:
    - {{simplify: true, quantize: [none, fp16, int8_static]}}
benchmark:
  warmup: {{min_iters: 2, min_s: 0.01}}
  measure: {{min_iters: 64, min_s: 0.05, max_s: 10}}
"""
# How far a variant's outputs may be from the fp32 model's on the test images (mean relative L2 error of the
# class probabilities), and how often its top-1 class must agree with the fp32 model's.
TOLERANCE = {"fp32": (1e-5, 1.0), "fp16": (1e-2, 1.0), "int8": (0.15, 0.9)}
MODELS = {"zoo": (onnx_models.zoo_format, Preprocess(size=[32, 32])),
          "nhwc_uint8": (onnx_models.nhwc_uint8, Preprocess(size=[32, 32], layout="NHWC", dtype="uint8",
                                                             scale="0-255")),
          "dynamic": (onnx_models.dynamic_dims, Preprocess(size=[32, 32]))}


@pytest.fixture(scope="module")
def workshop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the labelled colour images and one trained classifier in each file shape."""
    root = tmp_path_factory.mktemp("byo")
    onnx_models.write_colour_folder(root / "images")
    net = onnx_models.trained()
    for name, (write, _) in MODELS.items():
        write(root / f"{name}.onnx", net)
    onnx_models.fixed_flatten(root / "flat.onnx", onnx_models.trained(pooled=False))
    return root


def _outputs(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: image[None]})[0] for image in images])


@pytest.mark.parametrize("name", list(MODELS))
def test_every_preset_fp16_and_simplify_measure_ok_and_agree_with_fp32(workshop: Path, tmp_path: Path, name: str):
    recipe = workshop / f"{name}.yaml"
    recipe.write_text(RECIPE.format(name=name, file=f"{name}.onnx", presets=", ".join(ALL_PRESETS)))
    lab = Lab(db=str(tmp_path / "results.db"), artifacts=tmp_path / "artifacts")
    report = lab.sweep(recipe, "local")
    assert report.statuses == {"ok": 10} and not report.failed_builds, report.statuses

    with sqlite3.connect(tmp_path / "results.db") as db:
        rows = db.execute("SELECT v.name, v.sha256, r.accuracy, v.output_error, v.top1_agreement, "
                          "v.nodes_before_simplify, v.nodes_after_simplify FROM results r "
                          "JOIN variants v ON v.sha256 = r.variant_sha256").fetchall()
    # Ten jobs; a variant whose bytes equal another's (simplify may change nothing the quantizer's own
    # pre-processing does not) shares its artifact, and the first name given to it.
    variants = {row[0]: row for row in rows}
    assert len(rows) == 10 and {"fp32", "fp16", "int8_static", "slim/fp32"} <= set(variants)
    files = sorted((workshop / "images").rglob("*.png"))
    images = MODELS[name][1].batch([str(path) for path in files])
    reference = _outputs(tmp_path / "artifacts" / f"{variants['fp32'][1]}.onnx", images)
    labels = np.array([onnx_models.CLASSES.index(path.parent.name) for path in files])
    assert np.mean(reference.argmax(axis=1) == labels) >= 0.9  # the model tells the colours apart
    for variant, (_, sha256, device_top1, output_error, agreement, before, after) in variants.items():
        got = _outputs(tmp_path / "artifacts" / f"{sha256}.onnx", images)
        assert np.isfinite(got).all(), variant
        error = float(np.mean(np.linalg.norm(got - reference, axis=1) / np.linalg.norm(reference, axis=1)))
        same = float(np.mean(got.argmax(axis=1) == reference.argmax(axis=1)))
        kind = variant.split("/")[-1]
        limit, least = TOLERANCE["fp32" if kind == "fp32" else "fp16" if kind == "fp16" else "int8"]
        assert error <= limit and same >= least, (variant, error, same)
        assert device_top1 is not None and device_top1 >= (0.9 if kind in ("fp32", "fp16") else 0.8), variant
        if kind != "fp32":  # orch's own record of the same comparison, on its calibration images
            assert output_error is not None and output_error <= limit and agreement >= least, variant
        if variant.startswith("slim/"):
            assert before >= after > 0, variant


def test_a_variant_that_cannot_build_costs_no_other_its_measurement(workshop: Path, tmp_path: Path):
    recipe = workshop / "flat.yaml"
    recipe.write_text(RECIPE.format(name="flat", file="flat.onnx", presets="none, int8_static")
                      .replace("  include:\n    - {simplify: true, quantize: [none, fp16, int8_static]}\n",
                               "  input_size: [32, 40]\n"))
    env = run_env(tmp_path)
    done = orch("sweep", str(recipe), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    for variant in ("40px/fp32", "40px/int8_static"):
        assert f"{variant}: build failed at resize_input:" in done.stdout, done.stdout
    assert "2 variants did not build" in done.stderr and "Traceback" not in done.stderr
    with sqlite3.connect(tmp_path / "results.db") as db:
        results = db.execute("SELECT v.name, r.status, r.error FROM results r "
                             "JOIN variants v ON v.sha256 = r.variant_sha256 ORDER BY v.name").fetchall()
        failed = db.execute("SELECT name, build_status, failed_step, build_error FROM variants "
                            "WHERE build_status = 'failed' ORDER BY name").fetchall()
    assert [(name, status) for name, status, _ in results] == [
        ("32px/fp32", "ok"), ("32px/int8_static", "ok"), ("40px/fp32", "error"), ("40px/int8_static", "error")]
    assert all(error.startswith("build failed at resize_input: input_size 40: onnxruntime cannot run it")
               for _, status, error in results if status == "error")
    assert [(name, status, step) for name, status, step, _ in failed] == [
        ("40px/fp32", "failed", "resize_input"), ("40px/int8_static", "failed", "resize_input")]
    built = orch("build", str(recipe), env=env)
    assert built.returncode == 1 and built.stdout.count("build failed at resize_input") == 2, built.stdout


def _check(recipe: Path, env: dict[str, str]):
    return orch("recipes", "check", str(recipe), env=env, timeout=60)


def test_recipes_check_judges_the_onnx_file_without_reading_what_is_not_one(workshop: Path, tmp_path: Path):
    env = run_env(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(name="r", file="model.onnx", presets="none"))
    (tmp_path / "images").symlink_to(workshop / "images")
    model = tmp_path / "model.onnx"
    model.symlink_to(workshop / "zoo.onnx")
    assert _check(recipe, env).returncode == 0
    model.unlink()
    os.mkfifo(model)  # reading it would block forever: the check must not open it
    done = _check(recipe, env)
    assert done.returncode == 2 and f"{recipe}:2:" in done.stderr and "model.onnx: " in done.stderr
    assert "is a FIFO, not a regular file; refusing to read it" in done.stderr
    model.unlink()
    model.symlink_to("/dev/zero")
    assert "is a device or socket, not a regular file" in _check(recipe, env).stderr
    model.unlink()
    model.write_bytes(b"\x08\x07 not a protobuf at all")
    assert "not a loadable ONNX model" in _check(recipe, env).stderr
    model.unlink()
    with open(model, "wb") as sparse:
        sparse.truncate(2 * 1024**3 + 1)  # sparse: takes no disk
    assert "over the 2 GiB an ONNX file can hold" in _check(recipe, env).stderr
    model.unlink()
    model.symlink_to(workshop / "zoo.onnx")
    recipe.write_text(recipe.read_text().replace("image_size: 32", "image_size: 64"))
    done = _check(recipe, env)
    assert done.returncode == 2 and "dataset.image_size" in done.stderr and "is 32x32 pixels" in done.stderr


def test_accuracy_asked_of_an_unlabelled_folder_is_a_located_error_not_a_null(workshop: Path, tmp_path: Path):
    """An image folder without class sub-folders has nothing to score on: accuracy: full_test_set (the default)
    is refused, naming the key, before any job runs; accuracy: none measures without it."""
    flat = workshop / "unlabelled"
    flat.mkdir(exist_ok=True)
    for path in sorted((workshop / "images").rglob("*.png"))[:12]:
        shutil.copy(path, flat / f"{path.parent.name}-{path.name}")
    recipe = workshop / "unlabelled.yaml"
    recipe.write_text(RECIPE.format(name="unlabelled", file="zoo.onnx", presets="none")
                      .replace("root: images", "root: unlabelled")
                      .replace("  include:\n    - {simplify: true, quantize: [none, fp16, int8_static]}\n", ""))
    one_line_error(orch("sweep", str(recipe), env=run_env(tmp_path)), "unlabelled.yaml", "benchmark.accuracy",
                   "accuracy: none")
    with sqlite3.connect(tmp_path / "results.db") as db:
        assert db.execute("SELECT count(*) FROM results").fetchone() == (0,)
    recipe.write_text(recipe.read_text() + "  accuracy: none\n")
    done = orch("sweep", str(recipe), env=run_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
