"""Compression steps built for real from one trained model: structured, iterative and unstructured pruning,
BatchNorm folding, every quantization onnxruntime accepts, fp16, distillation and input sizes (issue 4)."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from orchestrator.artifacts import ArtifactStore
from orchestrator.builder import TorchNode
from orchestrator.builder.evaluate import onnx_top1
from orchestrator.builder.export import ExportStep, export_bytes
from orchestrator.builder.fold import fold_batchnorm
from orchestrator.builder.pipeline import Builder, build_recipe
from orchestrator.builder.quantize import quantized_bytes
from orchestrator.errors import BuildError, RecipeError
from orchestrator.lab.sweep import build_and_record
from orchestrator.models import MODELS
from orchestrator.recipes import expand, load_recipe
from orchestrator.results.db import open_database
from tests.support import REPO

pytestmark = pytest.mark.slow

# One trained quickstart-style model (narrow, 16 px) and every compression of issue 4 as `include` grids.
RECIPE = """\
name: compression
model: {arch: digits_cnn, options: {width: 8}}
dataset: {name: digits, image_size: 16}
train: {epochs: 2, lr: 0.05, batch_size: 64, seed: 0}
variants:
  calibration_samples: 32
  include:
    - prune: {method: [l1, l2, taylor, bn_scale, random], ratio: 0.5}
    - prune: {method: l1, ratio: 0.5, steps: 3, finetune_epochs: 1}
    - prune: {method: l1, ratio: 0.5, finetune_epochs: 1}
    - {prune: {method: l1, ratio: 0.5, finetune_epochs: 1}, distill: {teacher: base, temperature: 4, alpha: 0.9}}
    - sparsify: {ratio: 0.5}
    - sparsify: {ratio: 0.5, scope: per_layer}
    - fold_bn: true
    - input_size: [20, 24]
    - quantize: [dynamic_uint8, dynamic_int8, int8_static, int8_static_qoperator,
                 {mode: static, format: qdq, calibration: entropy},
                 {mode: static, format: qoperator, calibration: entropy}, fp16]
"""
STRUCTURED = ["l1", "l2", "taylor", "bn_scale", "random"]
QUANTIZED = ["dynamic_uint8", "dynamic_int8", "int8_static", "int8_static_qoperator", "qdq-s8s8-entropy",
             "qoperator-s8s8-entropy", "fp16"]
EXPECTED = (["dense/ft0/fp32"] + [f"{m}-0.50/ft0/fp32" for m in STRUCTURED]
            + ["l1-0.50x3/ft1/fp32", "l1-0.50/ft1/fp32", "l1-0.50/ft1/kd-T4-a0.9/fp32", "dense/ft0/sp0.50/fp32",
               "dense/ft0/sp0.50-layer/fp32", "dense/ft0/fold/fp32", "dense/ft0/20px/fp32", "dense/ft0/24px/fp32"]
            + [f"dense/ft0/{q}" for q in QUANTIZED])


class Built:
    """The compression recipe built once: its builder, variants by name, store and database engine."""

    def __init__(self, root: Path):
        recipe = root / "compression.yaml"
        recipe.write_text(RECIPE)
        self.store = ArtifactStore(root / "artifacts")
        self.engine = open_database(str(root / "results.db"))
        self.outcome = build_and_record(load_recipe(recipe), self.engine, self.store)
        self.builder = Builder(load_recipe(recipe), self.store)  # everything is cached: its context (data) only
        self.variants = {v.name: v for v in self.outcome.variants}
        self.splits = self.builder.context.splits

    def path(self, name: str) -> str:
        return str(self.store.path(self.variants[name].sha256, ".onnx"))

    def graph(self, name: str) -> onnx.ModelProto:
        return onnx.load(self.path(name))

    def run(self, name: str, x: np.ndarray) -> np.ndarray:
        session = ort.InferenceSession(self.path(name), providers=["CPUExecutionProvider"])
        return session.run(None, {"input": x})[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return Built(tmp_path_factory.mktemp("compression"))


def ops(model: onnx.ModelProto) -> set[str]:
    return {node.op_type for node in model.graph.node}


def test_one_trained_model_gives_every_variant_and_each_predicts_the_test_split(built: Built):
    assert sorted(built.variants) == sorted(EXPECTED)
    assert len({v.lineage[0]["key"] for v in built.variants.values()}) == 1  # one trained model
    for name, variant in built.variants.items():
        size = variant.meta["input"]["shape"][-1]
        x = built.builder.context.images("test", size)
        logits = built.run(name, x)
        assert logits.shape == (len(built.splits.test_y), 10), name
        assert onnx_top1(built.path(name), x, built.splits.test_y) == pytest.approx(variant.meta["host_accuracy"])


def test_every_variant_has_its_figures_in_the_database(built: Built):
    with built.engine.connect() as connection:
        rows = {row[0]: row for row in connection.exec_driver_sql(
            "SELECT sha256, params, macs, file_size_bytes, sparsity, host_accuracy, build_s, lineage "
            "FROM variants").fetchall()}
    for name, variant in built.variants.items():
        _, params, macs, size, sparsity, accuracy, build_s, lineage = rows[variant.sha256]
        assert params > 0 and macs > 0 and size == variant.file_size_bytes and sparsity is not None, name
        assert accuracy == pytest.approx(variant.meta["host_accuracy"]) and build_s > 0
        for record in json.loads(lineage):  # every step: its parameters and its own wall time
            assert set(record) >= {"step", "params", "wall_s", "version", "key", "meta"} and record["wall_s"] >= 0


def test_structured_pruning_at_half_cuts_macs_and_file_size_by_more_than_60_percent(built: Built):
    dense = built.variants["dense/ft0/fp32"]
    for method in STRUCTURED:
        pruned = built.variants[f"{method}-0.50/ft0/fp32"]
        assert pruned.meta["macs"] <= 0.4 * dense.meta["macs"], method
        assert pruned.file_size_bytes <= 0.4 * dense.file_size_bytes, method
    assert len({built.variants[f"{m}-0.50/ft0/fp32"].sha256 for m in STRUCTURED}) == len(STRUCTURED)


def test_iterative_schedule_keeps_the_accuracy_after_every_round(built: Built):
    variant = built.variants["l1-0.50x3/ft1/fp32"]
    iterations = variant.meta["iterations"]
    assert [i["step"] for i in iterations] == [0, 1, 2, 3]
    assert [i["ratio"] for i in iterations] == pytest.approx([0, 1 / 6, 1 / 3, 0.5], abs=1e-6)
    macs = [i["macs"] for i in iterations]
    assert macs == sorted(macs, reverse=True) and macs[0] == built.variants["dense/ft0/fp32"].meta["macs"]
    assert macs[-1] == variant.meta["macs"] == built.variants["l1-0.50/ft0/fp32"].meta["macs"]
    assert all(0 <= i["accuracy"] <= 1 for i in iterations)
    # fine-tuned between rounds, it beats one-shot pruning without fine-tuning by far
    assert iterations[-1]["accuracy"] > built.variants["l1-0.50/ft0/fp32"].meta["host_accuracy"] + 0.3
    with built.engine.connect() as connection:
        (lineage,) = connection.exec_driver_sql("SELECT lineage FROM variants WHERE sha256 = ?",
                                                (variant.sha256,)).fetchone()
    step = next(r for r in json.loads(lineage) if r["step"] == "iterative_prune")
    assert step["meta"]["iterations"] == iterations and step["params"]["steps"] == 3


def test_unstructured_sparsity_is_recorded_and_the_dense_file_does_not_shrink(built: Built):
    dense = built.variants["dense/ft0/fp32"]
    for name in ("dense/ft0/sp0.50/fp32", "dense/ft0/sp0.50-layer/fp32"):
        sparse = built.variants[name]
        assert sparse.meta["sparsity"] == pytest.approx(0.5, abs=0.01)
        assert sparse.meta["sparsity_achieved"] == pytest.approx(0.5, abs=0.01)
        assert "does not" in sparse.meta["note"] or "keeps its size" in sparse.meta["note"]
        assert sparse.meta["macs"] == dense.meta["macs"] and sparse.meta["params"] == dense.meta["params"]
        assert abs(sparse.file_size_bytes - dense.file_size_bytes) <= 0.02 * dense.file_size_bytes
    weights = [onnx.numpy_helper.to_array(i) for i in built.graph("dense/ft0/sp0.50-layer/fp32").graph.initializer
               if len(i.dims) > 1]
    assert all(np.mean(w == 0) == pytest.approx(0.5, abs=0.02) for w in weights)  # each layer half zero


def test_folded_graph_has_no_batchnorm_and_computes_the_same(built: Built):
    assert "BatchNormalization" in ops(built.graph("dense/ft0/fp32"))
    assert "BatchNormalization" not in ops(built.graph("dense/ft0/fold/fp32"))
    assert built.variants["dense/ft0/fold/fp32"].meta["bn_folded"] == 4
    x = built.splits.test_x[:64]
    np.testing.assert_allclose(built.run("dense/ft0/fold/fp32", x), built.run("dense/ft0/fp32", x), atol=1e-4)


@pytest.mark.parametrize("name", MODELS.names())
def test_folding_keeps_every_zoo_model_s_function(name: str):
    arguments: dict[str, Any] = {"num_classes": 10, "in_channels": 3}
    arguments.update({"mobilenet_v1": {"width": 0.25}, "mobilenet_v2": {"width": 0.25}}.get(name, {}))
    torch.manual_seed(0)
    model = MODELS.get(name)(**arguments).eval()
    for module in model.modules():  # non-trivial statistics, so that a wrong fold shows
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
    folded = copy.deepcopy(model)
    count, left = fold_batchnorm(folded)
    assert count > 0 and left == 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)
    assert type(folded) is type(model) and folded.keep_outputs()


def test_quantized_variants_are_what_they_say(built: Built):
    graph = built.graph
    assert ops(graph("dense/ft0/dynamic_uint8")) & {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
    assert ops(graph("dense/ft0/dynamic_int8")) & {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops(graph("dense/ft0/int8_static"))
    assert "QLinearConv" in ops(graph("dense/ft0/int8_static_qoperator"))
    assert "QLinearConv" in ops(graph("dense/ft0/qoperator-s8s8-entropy"))
    # entropy calibration chooses other ranges than MinMax (onnxruntime's defaults would not)
    assert built.variants["dense/ft0/qdq-s8s8-entropy"].sha256 != built.variants["dense/ft0/int8_static"].sha256
    fp16 = ort.InferenceSession(built.path("dense/ft0/fp16"), providers=["CPUExecutionProvider"])
    assert fp16.get_inputs()[0].type == fp16.get_outputs()[0].type == "tensor(float)"
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph("dense/ft0/fp16").graph.initializer)
    dense = built.variants["dense/ft0/fp32"]
    for label in QUANTIZED:
        variant = built.variants[f"dense/ft0/{label}"]
        assert variant.file_size_bytes < 0.6 * dense.file_size_bytes, label
        # entropy calibration clips ranges, which costs this 2-epoch model a few points
        allowed = 0.08 if "entropy" in label else 0.03
        assert variant.meta["host_accuracy"] >= dense.meta["host_accuracy"] - allowed, label


def test_distilled_student_learns_from_the_base_model(built: Built):
    student = built.variants["l1-0.50/ft1/kd-T4-a0.9/fp32"]
    plain = built.variants["l1-0.50/ft1/fp32"]
    finetune = next(r for r in student.lineage if r["step"] == "finetune")
    assert finetune["params"]["distill"] == {"teacher": "base", "temperature": 4.0, "alpha": 0.9}
    assert student.sha256 != plain.sha256
    assert student.meta["host_accuracy"] > built.variants["l1-0.50/ft0/fp32"].meta["host_accuracy"] + 0.2


def test_input_size_axis_exports_at_each_size(built: Built):
    for size in (20, 24):
        variant = built.variants[f"dense/ft0/{size}px/fp32"]
        session = ort.InferenceSession(built.path(variant.name), providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].shape[1:] == [1, size, size]
        assert variant.meta["input"]["shape"] == [1, 1, size, size]
    assert built.variants["dense/ft0/24px/fp32"].meta["macs"] > built.variants["dense/ft0/fp32"].meta["macs"]


class FixedFlatten(nn.Module):
    """A classifier whose linear layer fits only 16x16 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x), 1))


def test_a_model_that_cannot_take_an_input_size_is_a_build_error(built: Built):
    with pytest.raises(BuildError, match=r"input_size 24x24: FixedFlatten cannot take a 24x24 input"):
        ExportStep().run(built.builder.context, TorchNode(FixedFlatten().eval()), {"image_size": 24, "opset": 17})


def test_checkpointless_steps_are_rerun_from_their_parent(built: Built):
    for name, step in (("dense/ft0/fold/fp32", "fold_bn"), ("dense/ft0/sp0.50/fp32", "sparsify")):
        variant = built.variants[name]
        record = next(r for r in variant.lineage if r["step"] == step)
        assert not built.store.checkpoint_path(record["key"]).exists(), step
        export_key = variant.lineage[-1]["key"]
        (built.store.root / "cache" / f"{export_key}.json").unlink()  # forget the exported file
        again = Builder(built.builder.loaded, built.store)
        rebuilt = again.build(next(p for p in again.plans() if p.name == name))
        assert again.steps_run == 2 and rebuilt.sha256 == variant.sha256  # the step and export, from the parent


def test_rebuilding_runs_no_step(built: Built):
    again = Builder(built.builder.loaded, built.store)
    assert [v.sha256 for v in again.build_all()] == [v.sha256 for v in built.outcome.variants]
    assert again.steps_run == 0


# -- every quantization onnxruntime accepts --------------------------------------------------------------------

def _quantize_settings() -> list[dict[str, Any]]:
    settings: list[dict[str, Any]] = [{"mode": "fp16"}]
    settings += [{"mode": "dynamic", "weights": w, "per_channel": pc}
                 for w, pc in itertools.product(["uint8", "int8"], [False, True])]
    # The calibration method only yields ranges, which every format and type takes alike: the full
    # product with the two quick methods here; entropy (seconds per model) is in RECIPE, with each format.
    settings += [{"mode": "static", "format": f, "calibration": c, "activations": a, "weights": w, "per_channel": pc,
                  "samples": 16}
                 for f, c, a, w, pc in itertools.product(["qdq", "qoperator"], ["minmax", "percentile"],
                                                         ["uint8", "int8"], ["uint8", "int8"], [False, True])
                 if not (a == "int8" and w == "uint8")]  # refused by onnxruntime (a recipe error, below)
    return settings


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    model = MODELS.get("digits_cnn")(num_classes=10, in_channels=1, width=4).eval()
    path = tmp_path_factory.mktemp("quantize") / "small.onnx"
    path.write_bytes(export_bytes(model, torch.zeros(1, 1, 16, 16)))
    x = np.random.default_rng(0).standard_normal((32, 1, 16, 16), dtype=np.float32)
    with torch.no_grad():
        return path, x, model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("setting", _quantize_settings(),
                         ids=lambda s: "-".join(str(v) for k, v in s.items() if k not in ("mode", "samples")) or "fp16")
def test_every_quantization_onnxruntime_accepts_builds_and_runs(small_onnx, setting: dict[str, Any]):
    path, x, expected = small_onnx
    params = {"weights": "int8", "activations": "int8", "format": "qdq", "calibration": "minmax",
              "per_channel": False, **setting}
    session = ort.InferenceSession(quantized_bytes(path, params, "input", x), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x})[0]
    assert out.shape == expected.shape and np.isfinite(out).all()
    assert np.corrcoef(out.ravel(), expected.ravel())[0, 1] > 0.9  # close to the float model


@pytest.mark.parametrize(("mapping", "fragment"), [
    ("{mode: static, activations: int8, weights: uint8}", "does not support int8 activations with uint8 weights"),
    ("{mode: dynamic, calibration: entropy}", "`calibration` does not apply to mode dynamic"),
    ("{mode: fp16, per_channel: true}", "`per_channel` does not apply to mode fp16"),
])
def test_a_quantization_onnxruntime_refuses_is_a_recipe_error(tmp_path: Path, mapping: str, fragment: str):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.split("variants:")[0] + f"variants:\n  quantize: [none, {mapping}]\n")
    with pytest.raises(RecipeError, match="variants.quantize\\[1\\]") as caught:
        load_recipe(path)
    assert fragment in str(caught.value) and caught.value.line == 6


# -- `include` grids --------------------------------------------------------------------------------------------

def test_include_entries_replace_whole_sections_of_the_main_grid(tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.split("variants:")[0] + "variants:\n  quantize: [none, int8_static]\n  include:\n"
                    "    - prune: {method: taylor, ratio: 0.5}\n    - {quantize: fp16, calibration_samples: 8}\n")
    plans = {p.name: p for p in expand(load_recipe(path))}
    assert sorted(plans) == sorted(["dense/ft0/fp32", "dense/ft0/int8_static", "taylor-0.50/ft0/fp32",
                                    "taylor-0.50/ft0/int8_static", "dense/ft0/fp16"])
    assert [s.name for s in plans["taylor-0.50/ft0/int8_static"].steps] == ["train", "prune", "export", "quantize"]


def test_two_grids_giving_one_name_to_different_builds_is_a_recipe_error(tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.split("variants:")[0] + "variants:\n  prune: {ratio: 0.5, finetune_epochs: 1}\n"
                    "  include:\n    - prune: {ratio: 0.5, finetune_epochs: 1, finetune_lr: 0.5}\n")
    with pytest.raises(RecipeError, match=r"variants.include\[0\]: variant l1-0.50/ft1/fp32 is built differently"):
        expand(load_recipe(path))


def test_an_onnx_source_refuses_torch_steps_in_an_include_entry(tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nmodel: {onnx: m.onnx}\ndataset: {name: digits}\nvariants:\n  include:\n"
                    "    - quantize: fp16\n    - fold_bn: true\n")
    with pytest.raises(RecipeError, match=r"variants.include\[1\].fold_bn: needs a torch model") as caught:
        load_recipe(path)
    assert caught.value.line == 7


# -- the criteria on the real quickstart and on tiny-YOLOv2 ------------------------------------------

QUICKSTART_NAMES = ("dense/ft0/fp32", "l1-0.50/ft2/fp32", "l1-0.50/ft2/int8_static")


def test_quickstart_half_pruned_and_fine_tuned_stays_within_two_points_and_int8_within_one(tmp_path: Path):
    builder = Builder(load_recipe(REPO / "recipes" / "quickstart.yaml"), ArtifactStore(tmp_path / "artifacts"))
    variants = {plan.name: builder.build(plan) for plan in builder.plans() if plan.name in QUICKSTART_NAMES}
    dense, pruned, quantized = (variants[name] for name in QUICKSTART_NAMES)
    assert pruned.meta["host_accuracy"] >= dense.meta["host_accuracy"] - 0.02
    assert quantized.meta["host_accuracy"] >= pruned.meta["host_accuracy"] - 0.01
    assert pruned.meta["macs"] <= 0.4 * dense.meta["macs"]
    assert pruned.file_size_bytes <= 0.4 * dense.file_size_bytes


def test_tiny_yolov2_half_pruned_cuts_macs_and_size_and_keeps_its_head(tmp_path: Path):
    from tests.support.datasets import VocBox, write_voc

    write_voc(tmp_path / "voc", objects={f"{index:06d}": [VocBox("person", 5, 5, 30, 40)] for index in range(1, 9)})
    recipe = tmp_path / "yolo.yaml"
    recipe.write_text("name: yolo\nmodel: {arch: tiny_yolov2}\n"
                      "dataset: {name: voc, root: voc, classes: [person], image_size: 64}\ntrain: {epochs: 0}\n"
                      "variants: {prune: {method: l1, ratio: [0, 0.5]}}\nbenchmark: {accuracy: none}\n")
    store = ArtifactStore(tmp_path / "artifacts")
    dense, pruned = build_recipe(load_recipe(recipe), store).variants
    assert pruned.meta["macs"] <= 0.4 * dense.meta["macs"]
    assert pruned.file_size_bytes <= 0.4 * dense.file_size_bytes
    x = np.zeros((1, 3, 64, 64), np.float32)
    for variant in (dense, pruned):
        session = ort.InferenceSession(str(store.path(variant.sha256, ".onnx")), providers=["CPUExecutionProvider"])
        assert session.run(None, {"input": x})[0].shape == (1, 5 * (5 + 1), 2, 2)


def test_a_tiny_yolov2_person_head_retrains_prunes_iteratively_and_is_scored_by_voc_ap(tmp_path: Path):
    """The detection study's chain on a fixture: retrain the head, prune in 2 rounds fine-tuning with the
    region loss, fold, int8; every variant and every round scored by VOC2007 AP@0.5 of person (11-point)."""
    from tests.support.datasets import write_voc

    write_voc(tmp_path / "voc", ids=[f"{index:06d}" for index in range(1, 17)])
    recipe = tmp_path / "yolo.yaml"
    recipe.write_text("name: yolo\nmodel: {arch: tiny_yolov2}\n"
                      "dataset: {name: voc, root: voc, classes: [person], image_size: 64}\ntrain: {epochs: 0}\n"
                      "variants:\n  retrain: {epochs: 2, lr: 0.001, trainable: [head]}\n"
                      "  prune: {method: [l1, taylor], ratio: 0.5, steps: 2, finetune_epochs: 1, finetune_lr: 0.001}\n"
                      "  fold_bn: true\n  quantize: [none, int8_static]\n  calibration_samples: 4\n")
    variants = {v.name: v for v in build_recipe(load_recipe(recipe), ArtifactStore(tmp_path / "artifacts")).variants}
    assert sorted(variants) == sorted(f"{method}-0.50x2/ft1/fold/{label}" for method in ("l1", "taylor")
                                      for label in ("fp32", "int8_static"))
    for variant in variants.values():
        assert variant.meta["host_metric"] == "voc07_ap50" and 0 <= variant.meta["host_accuracy"] <= 1
        assert [i["step"] for i in variant.meta["iterations"]] == [0, 1, 2]
        assert all(0 <= i["accuracy"] <= 1 for i in variant.meta["iterations"])
        steps = [s["step"] for s in variant.lineage]
        assert steps[:4] == ["train", "finetune", "iterative_prune", "fold_bn"]
