"""Shared fixtures: small real recipes, a real artifact store, real SQLite files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from orchestrator.artifacts import ArtifactStore
from orchestrator.build.pipeline import Builder
from orchestrator.recipes import load_recipe

REPO = Path(__file__).resolve().parent.parent
ORCH = str(Path(sys.executable).with_name("orch"))

# A small recipe: the quickstart's shape at a fraction of its cost.
TINY_RECIPE = """\
name: tiny
model: {arch: digits_cnn, options: {width: 8}}
dataset: {name: digits, image_size: 16}
train: {epochs: 2, lr: 0.05, batch_size: 64, seed: 0}
variants:
  prune: {method: [l1], ratio: [0, 0.5], finetune_epochs: [0, 1]}
  quantize: [none, int8_static]
  calibration_samples: 32
benchmark:
  warmup: {min_iters: 5, min_s: 0.05}
  measure: {min_iters: 80, min_s: 0.2, max_s: 10}
  threads: [1]
"""


@pytest.fixture
def tiny_recipe_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_RECIPE)
    return path


@pytest.fixture(scope="session")
def built_tiny(tmp_path_factory: pytest.TempPathFactory):
    """The tiny recipe built once for the session: (builder, variants, store)."""
    root = tmp_path_factory.mktemp("tiny-build")
    recipe_path = root / "tiny.yaml"
    recipe_path.write_text(TINY_RECIPE)
    store = ArtifactStore(root / "artifacts")
    builder = Builder(load_recipe(recipe_path), store)
    return builder, builder.build_all(), store


def run_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running the real `orch` script with its files inside tmp_path."""
    env = dict(os.environ)
    env["ORCH_DB"] = str(tmp_path / "results.db")
    env["ORCH_ARTIFACTS"] = str(tmp_path / "artifacts")
    env["COLUMNS"] = "200"
    return env
