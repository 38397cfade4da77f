"""Building a recipe: real training, pruning, export and quantization into a real artifact store."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from orchestrator.artifacts import ArtifactStore, npz_bytes, sha256_bytes
from orchestrator.builder.pipeline import Builder
from orchestrator.recipes import load_recipe
from tests.support import TINY_RECIPE

pytestmark = pytest.mark.slow


def test_every_variant_is_one_self_contained_onnx_named_by_its_hash(built_tiny):
    _, variants, store = built_tiny
    assert len(variants) == 8
    assert len({v.sha256 for v in variants}) == 8
    for variant in variants:
        path = store.path(variant.sha256, ".onnx")
        assert sha256_bytes(path.read_bytes()) == variant.sha256
        model = onnx.load(str(path), load_external_data=False)
        assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer)
    assert not list(store.root.glob("*.data"))


def test_variants_load_in_onnxruntime_and_predict(built_tiny):
    builder, variants, store = built_tiny
    splits = builder.context.splits
    for variant in variants:
        session = ort.InferenceSession(str(store.path(variant.sha256, ".onnx")), providers=["CPUExecutionProvider"])
        logits = session.run(None, {"input": splits.test_x[:4]})[0]
        assert logits.shape == (4, 10)
        assert 0.0 <= variant.meta["host_accuracy"] <= 1.0


def test_pruning_removes_channels_and_quantization_shrinks_the_file(built_tiny):
    _, variants, _ = built_tiny
    by_name = {v.name: v for v in variants}
    dense, pruned = by_name["dense/ft0/fp32"], by_name["l1-0.50/ft0/fp32"]
    assert pruned.meta["macs"] < 0.4 * dense.meta["macs"]
    assert pruned.meta["params"] < 0.4 * dense.meta["params"]
    assert pruned.file_size_bytes < 0.5 * dense.file_size_bytes
    assert by_name["dense/ft0/int8_static"].file_size_bytes < 0.5 * dense.file_size_bytes
    quantized = onnx.load(str(built_tiny[2].path(by_name["dense/ft0/int8_static"].sha256, ".onnx")))
    assert any(node.op_type == "QuantizeLinear" for node in quantized.graph.node)


def test_lineage_records_every_step_with_parameters_and_time(built_tiny):
    _, variants, _ = built_tiny
    variant = next(v for v in variants if v.name == "l1-0.50/ft1/int8_static")
    assert [step["step"] for step in variant.lineage] == ["train", "prune", "finetune", "export", "quantize"]
    assert variant.lineage[1]["params"] == {"method": "l1", "ratio": 0.5, "scope": "per_layer", "round_to": None,
                                            "keep": []}
    assert all(step["wall_s"] >= 0 and len(step["key"]) == 64 for step in variant.lineage)
    assert variant.build_s > 0


def test_rebuilding_with_nothing_changed_runs_no_step(built_tiny, tmp_path):
    builder, variants, store = built_tiny
    again = Builder(builder.loaded, store)
    rebuilt = again.build_all()
    assert again.steps_run == 0
    assert [v.sha256 for v in rebuilt] == [v.sha256 for v in variants]
    assert [v.lineage for v in rebuilt] == [v.lineage for v in variants]


def test_a_cache_entry_whose_artifact_is_missing_is_not_trusted(built_tiny, tmp_path):
    builder, variants, store = built_tiny
    copy_root = tmp_path / "store"
    copy_root.mkdir()
    for item in store.root.rglob("*"):
        if item.is_file():
            target = copy_root / item.relative_to(store.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(item.read_bytes())
    victim = next(v for v in variants if v.name == "dense/ft0/int8_static")
    (copy_root / f"{victim.sha256}.onnx").write_bytes(b"half-written")
    copy = ArtifactStore(copy_root)
    again = Builder(builder.loaded, copy)
    rebuilt = again.build(next(p for p in again.plans() if p.name == victim.name))
    assert again.steps_run == 1  # only the quantize step ran again; the rest came from the cache
    assert rebuilt.sha256 == victim.sha256
    assert copy.verify(victim.sha256, ".onnx")


def test_evaluation_set_is_content_addressed_and_deterministic(built_tiny):
    builder, _, store = built_tiny
    first = builder.evaluation_set()
    assert first == builder.evaluation_set()
    with np.load(store.path(first, ".npz"), allow_pickle=False) as data:
        assert data["x"].shape[1:] == (1, 16, 16) and len(data["x"]) == len(data["y"]) == 360
    assert sha256_bytes(npz_bytes(a=np.arange(3))) == sha256_bytes(npz_bytes(a=np.arange(3)))


def test_cache_index_is_plain_json(built_tiny):
    _, _, store = built_tiny
    entries = list((store.root / "cache").glob("*.json"))
    assert entries
    for entry in entries:
        body = json.loads(entry.read_text())
        assert set(body) == {"sha256", "suffix", "size", "meta"}


def test_tiny_recipe_loads(tiny_recipe_path):
    assert load_recipe(tiny_recipe_path).recipe.name == "tiny"


def test_changing_one_axis_rebuilds_only_what_depends_on_it(built_tiny, tmp_path):
    """A new fine-tune setting reuses the cached trained and pruned models (loaded from checkpoints)."""
    builder, variants, store = built_tiny
    changed = tmp_path / "changed.yaml"
    changed.write_text(TINY_RECIPE.replace("finetune_epochs: [0, 1]}", "finetune_epochs: [0, 1], finetune_lr: 0.003}"))
    again = Builder(load_recipe(changed), store)
    rebuilt = {v.name: v for v in again.build_all()}
    before = {v.name: v for v in variants}
    # Unchanged: no fine-tuning involved.
    for name in ("dense/ft0/fp32", "dense/ft0/int8_static", "l1-0.50/ft0/fp32", "l1-0.50/ft0/int8_static"):
        assert rebuilt[name].sha256 == before[name].sha256 and rebuilt[name].steps_run == 0
    # Changed: finetune, export, quantize for dense and pruned = 2 x 3 steps; train and prune came from checkpoints.
    assert again.steps_run == 6
    assert rebuilt["l1-0.50/ft1/fp32"].sha256 != before["l1-0.50/ft1/fp32"].sha256
    assert rebuilt["l1-0.50/ft1/fp32"].meta["macs"] == before["l1-0.50/ft1/fp32"].meta["macs"]


def test_a_pruned_checkpoint_loads_back_with_identical_outputs(built_tiny, tmp_path):
    builder, _, _ = built_tiny
    import copy

    import torch

    from orchestrator.builder import TorchNode, checkpoint
    from orchestrator.builder.prune import PruneStep

    model = builder.context.new_model().eval()
    params = {"method": "l1", "ratio": 0.5, "scope": "per_layer", "round_to": None, "keep": []}
    pruned = PruneStep().run(builder.context, TorchNode(copy.deepcopy(model)), params).model
    checkpoint.save(pruned, tmp_path / "p.pt", {"note": "x"})
    restored, meta = checkpoint.load(builder.context.new_model(), tmp_path / "p.pt")
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), pruned(x))
    assert meta == {"note": "x"}
    assert restored.classifier.in_features == pruned.classifier.in_features < model.classifier.in_features
