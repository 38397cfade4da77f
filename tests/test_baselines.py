"""Baseline variants (`variants.baselines`): the source network as its weights file holds it, and the retrained
network before compression, built, scored and named as variants of the study they are compared in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from orchestrator.artifacts import ArtifactStore
from orchestrator.builder.pipeline import Builder, BuiltVariant
from orchestrator.datasets.voc import VOC_CLASSES
from orchestrator.models import MODELS
from orchestrator.models.darknet import load_darknet
from orchestrator.recipes import expand, load_recipe
from tests.support import REPO, orch, recipe_refused, run_env
from tests.support.datasets import write_person_study_data, write_voc

SIZE = 64


def _person_study(tmp_path: Path) -> Path:
    """recipes/tinyyolov2-voc-person.yaml reduced to seconds: 64 px, one retrain epoch, one pruned variant, fp32
    with NMS in numpy, on a generated VOC2007 and a 20-class Darknet weights file."""
    write_person_study_data(tmp_path / "data", images=16)
    (tmp_path / "recipes").mkdir()
    recipe = tmp_path / "recipes" / "tinyyolov2-voc-person.yaml"
    text = (REPO / "recipes" / "tinyyolov2-voc-person.yaml").read_text()
    for old, new in (("image_size: 416", f"image_size: {SIZE}"), ("retrain: {epochs: 10", "retrain: {epochs: 1"),
                     ("ratio: [0, 0.25, 0.5], steps: 3, finetune_epochs: 2", "ratio: [0, 0.5], steps: 2, "
                                                                              "finetune_epochs: 1"),
                     ("quantize: [none, int8_static]", "quantize: none"),
                     ("graph_nms: [false, true]", "graph_nms: false"),
                     ("  pipeline: {source: ../data/videos/street.mp4, frames: 300, save_frames: 8}\n", "")):
        assert old in text, old
        text = text.replace(old, new)
    assert "baselines: [source, retrained]" in text
    recipe.write_text(text)
    return recipe


@pytest.mark.slow
def test_the_person_study_scores_the_source_network_and_the_retrained_head_on_its_own_metric(tmp_path: Path):
    recipe = _person_study(tmp_path)
    store = ArtifactStore(tmp_path / "artifacts")
    builder = Builder(load_recipe(recipe), store)
    built = builder.build_all()
    assert not builder.failures
    variants: dict[str, BuiltVariant] = {variant.name: variant for variant in built}
    assert sorted(variants) == ["baseline/retrained", "baseline/source", "dense/ft1/fold/fp32",
                                "l1-0.50x2/ft1/fold/fp32"]
    for name, variant in variants.items():  # one metric, one evaluation set, for every variant
        assert variant.meta["host_metric"] == "voc07_ap50", name
        assert 0 <= variant.meta["host_accuracy"] <= 1, name
        assert variant.axes["baseline"] == (name.split("/")[1] if name.startswith("baseline/") else None), name
    assert len({variant.sha256 for variant in built}) == 4

    # The source baseline is the Darknet network unmodified: 20 classes, its person label scored as the data set's.
    source = variants["baseline/source"]
    assert [step["step"] for step in source.lineage] == ["import_weights", "export"]
    assert source.meta["evaluation"]["class_map"] == [0 if name == "person" else -1 for name in VOC_CLASSES]
    assert source.meta["detector"]["labels"] == list(VOC_CLASSES)
    assert source.axes["quantize"] == "fp32" and source.axes["prune_ratio"] == 0.0
    reference = MODELS.get("tiny_yolov2")(num_classes=20, in_channels=3)
    load_darknet(reference, tmp_path / "data" / "weights" / "tiny-yolo-voc.weights")
    x = np.random.default_rng(0).random((2, 3, SIZE, SIZE), dtype=np.float32)
    with torch.no_grad():
        expected = reference.eval()(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(store.path(source.sha256, ".onnx")), providers=["CPUExecutionProvider"])
    (outputs,) = session.run(None, {"input": x})
    assert outputs.shape == (2, 5 * (5 + 20), SIZE // 32, SIZE // 32)
    np.testing.assert_allclose(outputs, expected, rtol=1e-3, atol=1e-4)

    # The retrained baseline is the person head after the retrain and nothing else: the very training steps (and
    # cache entries) the compressed variants start from, then the export.
    retrained, dense = variants["baseline/retrained"], variants["dense/ft1/fold/fp32"]
    assert [step["step"] for step in retrained.lineage] == ["train", "finetune", "export"]
    assert retrained.lineage[1]["params"]["trainable"] == ["head"] and retrained.lineage[1]["params"]["epochs"] == 1
    assert [step["key"] for step in retrained.lineage[:2]] == [step["key"] for step in dense.lineage[:2]]
    assert [step["step"] for step in dense.lineage] == ["train", "finetune", "finetune", "fold_bn", "export"]
    assert retrained.meta["evaluation"]["class_map"] == [0]

    # Built again, nothing is rebuilt: the source network's export is in the cache like every other.
    again = Builder(load_recipe(recipe), store)
    assert {variant.name: variant.sha256 for variant in again.build_all()} == \
        {name: variant.sha256 for name, variant in variants.items()}
    assert again.steps_run == 0


def _recipe(tmp_path: Path, model: str, baselines: str, grid: str = "") -> Path:
    write_voc(tmp_path / "voc")
    (tmp_path / "w.weights").write_bytes(b"")
    path = tmp_path / "r.yaml"
    path.write_text(f"name: r\nmodel: {model}\ndataset: {{name: voc, root: voc, image_size: 64, classes: [person]}}\n"
                    f"train: {{epochs: 0}}\nvariants:\n  baselines: {baselines}\n{grid}")
    return path


def test_baselines_expand_after_the_grid_at_every_input_size(tmp_path: Path):
    path = _recipe(tmp_path, "{arch: tiny_yolov2, weights: {path: w.weights, skip_head: true}}", "[retrained, source]",
                   "  retrain: {epochs: 1, trainable: [head]}\n  prune: {ratio: 0.5}\n  input_size: [64, 96]\n"
                   "  quantize: [none, int8_static]\n")
    plans = expand(load_recipe(path))
    names = [plan.name for plan in plans]
    assert names[-4:] == ["baseline/retrained/64px", "baseline/retrained/96px", "baseline/source/64px",
                          "baseline/source/96px"]
    source = plans[-1]
    assert [step.name for step in source.steps] == ["import_weights", "export"]
    assert source.steps[-1].params["image_size"] == 96 and source.axes["quantize"] == "fp32"
    assert all(plan.axes["baseline"] is None for plan in plans[:-4])


@pytest.mark.parametrize("model, baselines, grid, fragments", [
    ("{arch: tiny_yolov2, weights: w.weights}", "[source, teacher]", "",
     ("r.yaml:6:", "variants.baselines", "unknown baseline 'teacher'", "source", "retrained")),
    ("{arch: tiny_yolov2}", "[retrained, source]", "",
     ("r.yaml:6:", "variants.baselines[1]", "give model.weights")),
    ("{arch: tiny_yolov2, weights: w.weights}", "retrained", "",
     ("r.yaml:6:", "variants.baselines[0]", "baseline/retrained", "dense/ft0/fp32")),
    ("{onnx: m.onnx}", "[source]", "", ("variants.baselines", "needs a torch model")),
])
def test_a_baseline_the_recipe_cannot_build_is_a_located_recipe_error(tmp_path: Path, model: str, baselines: str,
                                                                      grid: str, fragments: tuple[str, ...]):
    path = _recipe(tmp_path, model, baselines, grid)
    recipe_refused(orch("recipes", "check", str(path), env=run_env(tmp_path)), *fragments)
