"""Recipe loading, validation messages (file:line:column key: problem) and grid expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import RecipeError
from orchestrator.recipes import expand, load_recipe
from tests.support import REPO, TINY_RECIPE


def test_quickstart_expands_to_sixteen_named_variants():
    loaded = load_recipe(REPO / "recipes" / "quickstart.yaml")
    plans = expand(loaded)
    assert len(plans) == 16
    names = {plan.name for plan in plans}
    assert "dense/ft0/fp32" in names and "l1-0.50/ft2/int8_static" in names
    by_name = {plan.name: plan for plan in plans}
    assert [s.name for s in by_name["l1-0.50/ft2/int8_static"].steps] == [
        "train", "prune", "finetune", "export", "quantize"]
    assert [s.name for s in by_name["dense/ft0/fp32"].steps] == ["train", "export"]
    assert len(loaded.sha256) == 64


def test_scalar_is_a_one_point_axis(tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_text(TINY_RECIPE.replace("ratio: [0, 0.5]", "ratio: 0.5").replace("[none, int8_static]", "none"))
    plans = expand(load_recipe(path))
    assert sorted(p.name for p in plans) == ["l1-0.50/ft0/fp32", "l1-0.50/ft1/fp32"]


def _error(tmp_path: Path, text: str) -> RecipeError:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    return caught.value


def test_out_of_range_ratio_names_file_line_column_and_key(tmp_path: Path):
    text = TINY_RECIPE.replace("ratio: [0, 0.5]", "ratio: [0, 0.5, 1.3]")
    error = _error(tmp_path, text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "1.3" in row)
    assert str(error) == f"{tmp_path / 'bad.yaml'}:{line}:{error.column} variants.prune.ratio[2]: 1.3 is not in [0, 1)"
    assert text.splitlines()[line - 1][error.column - 1:].startswith("1.3")


def test_unknown_key_points_at_the_key(tmp_path: Path):
    error = _error(tmp_path, TINY_RECIPE.replace("seed: 0}", "seed: 0, epocs: 3}"))
    assert error.key == "train.epocs" and error.line == 4
    assert "unknown key" in str(error)


def test_yaml_syntax_error_names_the_line(tmp_path: Path):
    error = _error(tmp_path, TINY_RECIPE.replace("dataset: {name: digits, image_size: 16}", "dataset: {name: digits"))
    assert "YAML syntax error" in str(error) and error.line is not None and error.line >= 3


def test_missing_file(tmp_path: Path):
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "absent.yaml")


def test_wrong_type_and_unknown_model(tmp_path: Path):
    error = _error(tmp_path, TINY_RECIPE.replace("epochs: 2", "epochs: many"))
    assert error.key == "train.epochs" and error.line == 4
    error = _error(tmp_path, TINY_RECIPE.replace("arch: digits_cnn", "arch: resnet9000"))
    assert error.key == "model.arch" and "unknown model 'resnet9000'" in str(error) and error.line == 2


def test_duplicate_key_is_refused(tmp_path: Path):
    error = _error(tmp_path, TINY_RECIPE + "name: again\n")
    assert error.key == "name" and "duplicate key" in str(error)
    assert error.line == len(TINY_RECIPE.splitlines()) + 1


def test_missing_required_section(tmp_path: Path):
    error = _error(tmp_path, "name: x\nmodel: {arch: digits_cnn}\n")
    assert error.key == "dataset" and "required key is missing" in str(error)
