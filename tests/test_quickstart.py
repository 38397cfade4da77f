"""The quickstart recipe itself, built for real: the study the README promises."""

from __future__ import annotations

import pytest

from orchestrator.artifacts import ArtifactStore
from orchestrator.builder.pipeline import Builder
from orchestrator.recipes import load_recipe
from tests.support import REPO

pytestmark = pytest.mark.slow


def test_quickstart_builds_sixteen_variants_and_pruning_keeps_accuracy(tmp_path):
    builder = Builder(load_recipe(REPO / "recipes" / "quickstart.yaml"), ArtifactStore(tmp_path / "artifacts"))
    variants = {v.name: v for v in builder.build_all()}
    assert len(variants) == 16
    dense = variants["dense/ft0/fp32"]
    assert dense.meta["host_accuracy"] > 0.95
    for ratio in ("0.25", "0.50"):
        for quantize in ("fp32", "int8_static"):
            pruned = variants[f"l1-{ratio}/ft2/{quantize}"]
            assert pruned.meta["host_accuracy"] >= dense.meta["host_accuracy"] - 0.03, pruned.name
    half = variants["l1-0.50/ft2/fp32"]
    assert half.meta["macs"] < 0.3 * dense.meta["macs"]
    assert half.file_size_bytes < 0.3 * dense.file_size_bytes
