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


@pytest.fixture
def lab_db(tmp_path: Path) -> Path:
    """A results.db (the ORCH_DB of run_env) with 2 boards x 3 variants x 3 nights of synthetic results."""
    from orchestrator.results.db import open_database
    from orchestrator.results.store import ResultsStore
    from orchestrator.results.synthetic import SyntheticLab

    path = tmp_path / "results.db"
    engine = open_database(str(path))
    lab = SyntheticLab(boards=2, variants_per_board=3, samples_per_result=20)
    for _ in range(3):
        lab.record_night(ResultsStore(engine))
    engine.dispose()
    return path
