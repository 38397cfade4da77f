"""The example recipes: all validate; the studies build end to end on small fixtures in the real formats."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from orchestrator.artifacts import ArtifactStore
from orchestrator.builder.pipeline import build_recipe
from orchestrator.lab.sweep import build_and_record
from orchestrator.models import MODELS
from orchestrator.models.darknet import save_darknet
from orchestrator.recipes import expand, load_recipe
from orchestrator.results.db import open_database
from orchestrator.results.queries import result_rows  # noqa: F401  (the database module is importable)
from tests.support import ORCH, REPO, run_env
from tests.support.datasets import write_cifar10, write_image_folder
from tests.support.onnx_models import dynamic_dims, trained

EXAMPLES = sorted((REPO / "recipes").glob("*.yaml"))


def test_there_is_an_example_recipe_per_study():
    assert {p.stem for p in EXAMPLES} >= {"quickstart", "mobilenetv1-cifar10", "tinyyolov2-voc-person",
                                          "mobilenetv2-voc-int8", "onnx-ptq"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_recipe_validates_and_says_what_it_reproduces(path: Path):
    loaded = load_recipe(path)
    assert expand(loaded)
    assert path.read_text().startswith("#"), "each example opens with a comment naming its study"


def test_recipes_check_command_accepts_every_example(tmp_path: Path):
    """Every example checks out once the files it says to bring are there (the ONNX example's model is read)."""
    copies = tmp_path / "recipes"
    copies.mkdir()
    for example in EXAMPLES:
        (copies / example.name).write_text(example.read_text())
    (tmp_path / "models").mkdir()
    dynamic_dims(tmp_path / "models" / "yolov5n.onnx", trained())  # an export with symbolic batch and size
    done = subprocess.run([ORCH, "recipes", "check", *sorted(map(str, copies.glob("*.yaml")))],
                          capture_output=True, text=True, env=run_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ok ") == len(EXAMPLES)


def _reduced_mobilenet_recipe(tmp_path: Path) -> Path:
    """recipes/mobilenetv1-cifar10.yaml shrunk to seconds: narrow, few images, a 2 x 2 x 2 grid."""
    write_cifar10(tmp_path / "data" / "cifar10", n_train_per_batch=40, n_test=40)
    text = (REPO / "recipes" / "mobilenetv1-cifar10.yaml").read_text()
    text = (text.replace("options: {width: 1.0}", "options: {width: 0.25}")
                .replace("root: ../data/cifar10,", "root: data/cifar10,")
                .replace("train: {epochs: 30, lr: 0.05, batch_size: 128, seed: 0}",
                         "train: {epochs: 2, lr: 0.05, batch_size: 32, seed: 0}")
                .replace("ratio: [0, 0.05, 0.25, 0.5, 0.75, 0.9]", "ratio: [0, 0.5]")
                .replace("finetune_epochs: [0, 3, 5]", "finetune_epochs: [0, 1]"))
    path = tmp_path / "mobilenetv1-small.yaml"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_reduced_mobilenetv1_cifar10_builds_end_to_end(tmp_path: Path):
    recipe = _reduced_mobilenet_recipe(tmp_path)
    engine = open_database(str(tmp_path / "results.db"))
    outcome = build_and_record(load_recipe(recipe), engine, ArtifactStore(tmp_path / "artifacts"))
    variants = {v.name: v for v in outcome.variants}
    assert sorted(variants) == sorted(f"{p}/{ft}/{q}" for p in ("dense", "l1-0.50") for ft in ("ft0", "ft1")
                                      for q in ("fp32", "dynamic_uint8"))
    dense, pruned = variants["dense/ft0/fp32"], variants["l1-0.50/ft1/fp32"]
    assert pruned.meta["macs"] < 0.4 * dense.meta["macs"]
    quantized = onnx.load(str(tmp_path / "artifacts" / f"{variants['dense/ft0/dynamic_uint8'].sha256}.onnx"))
    assert any(node.op_type in ("ConvInteger", "DynamicQuantizeLinear", "MatMulInteger")
               for node in quantized.graph.node)
    for variant in variants.values():
        assert 0 <= variant.meta["host_accuracy"] <= 1 and variant.file_size_bytes > 0
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT name, params, macs, file_size_bytes, host_accuracy, build_s, lineage FROM variants").fetchall()
    assert len(rows) == 8 and all(r[1] and r[2] and r[3] and r[5] is not None and r[6] for r in rows)


@pytest.mark.slow
def test_tiny_yolov2_starts_from_darknet_weights(tmp_path: Path):
    """A 20-class model saved as .weights, loaded by a recipe with epochs 0, exports the same function."""
    from tests.support.datasets import write_voc

    torch.manual_seed(0)
    source = MODELS.get("tiny_yolov2")(num_classes=20, in_channels=3).eval()
    save_darknet(source, tmp_path / "tiny.weights")
    write_voc(tmp_path / "voc")
    recipe = tmp_path / "yolo.yaml"
    recipe.write_text("name: yolo\nmodel: {arch: tiny_yolov2, weights: tiny.weights}\n"
                      "dataset: {name: voc, root: voc, image_size: 64}\ntrain: {epochs: 0}\n"
                      "benchmark: {accuracy: none}\n")
    outcome = build_recipe(load_recipe(recipe), ArtifactStore(tmp_path / "artifacts"))
    (variant,) = outcome.variants
    session = ort.InferenceSession(str(tmp_path / "artifacts" / f"{variant.sha256}.onnx"),
                                   providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        expected = source(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, rtol=1e-3, atol=1e-4)
    assert variant.meta["host_accuracy"] is None  # detection is not scored by top-1


@pytest.mark.parametrize("problem", ["dataset path", "corrupt weights", "unloadable onnx"])
def test_bad_inputs_at_build_time_are_one_line_and_exit_2(tmp_path: Path, problem: str):
    recipe = tmp_path / "r.yaml"
    if problem == "dataset path":
        recipe.write_text("name: r\nmodel: {arch: mobilenet_v1}\ndataset: {name: cifar10, root: nowhere}\n")
        expected = "nowhere"
    elif problem == "corrupt weights":
        (tmp_path / "w.weights").write_bytes(b"\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00")
        write_image_folder(tmp_path / "imgs", classes=["a", "b"], n=4)
        recipe.write_text("name: r\nmodel: {arch: tiny_yolov2, weights: w.weights}\n"
                          "dataset: {name: image_folder, root: imgs, image_size: 64}\ntrain: {epochs: 0}\n")
        expected = "w.weights"
    else:
        (tmp_path / "m.onnx").write_bytes(b"this is no protobuf")
        write_image_folder(tmp_path / "imgs", n=4)
        recipe.write_text("name: r\nmodel: {onnx: m.onnx}\ndataset: {name: image_folder, root: imgs}\n")
        expected = "m.onnx"
    done = subprocess.run([ORCH, "build", str(recipe)], capture_output=True, text=True, env=run_env(tmp_path),
                          timeout=300)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in done.stderr, done.stderr
