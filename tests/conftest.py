"""Shared fixtures: small real recipes, a real artifact store, real SQLite files."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.artifacts import ArtifactStore
from orchestrator.builder.pipeline import Builder
from orchestrator.recipes import load_recipe
from tests.support import TINY_RECIPE
from tests.support.fakes import boards


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


@pytest.fixture
def board(tmp_path: Path):
    """board(name) builds that fake board under tmp_path and returns its root as a string."""
    def build(name: str) -> str:
        root = tmp_path / name
        root.mkdir()
        return str(boards.BOARDS[name](root))
    return build
