"""Reading recipe files: YAML, validation, and errors that name file, line, column and key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from orchestrator.datasets import DATASETS
from orchestrator.errors import LocatedError, RecipeError, UserError
from orchestrator.recipes.schema import Recipe, baseline_conflicts, onnx_source_conflicts
from orchestrator.yamlfile import YamlDocument, dotted, read_yaml


class LoadedRecipe(BaseModel):
    """A validated recipe with the file it came from and that file's sha256."""

    model_config = ConfigDict(frozen=True)
    recipe: Recipe
    path: str
    sha256: str
    _yaml: Any = PrivateAttr(default=None)  # the parsed YamlDocument, to locate later errors in the file

    def error_at(self, loc: tuple[str | int, ...], message: str) -> LocatedError:
        """A RecipeError naming this recipe's file, the line of `loc`, and the key."""
        if self._yaml is None:
            return RecipeError(self.path, message, key=dotted(list(loc)))
        return self._yaml.error_at(loc, message)

    def with_repeat(self, repeat: int) -> LoadedRecipe:
        """This recipe with every job measured `repeat` times (the --repeat flag)."""
        benchmark = self.recipe.benchmark.model_copy(update={"repeat": repeat})
        copy = self.model_copy(update={"recipe": self.recipe.model_copy(update={"benchmark": benchmark})})
        copy._yaml = self._yaml
        return copy

    def with_target_runtime(self, target: str) -> LoadedRecipe:
        """This recipe built for another onnxruntime (the --target-runtime flag: `auto` or a release)."""
        try:
            variants = type(self.recipe.variants).model_validate(
                {**self.recipe.variants.model_dump(exclude_unset=True), "target_runtime": target})
        except ValidationError as exc:
            raise UserError(f"--target-runtime {target}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") \
                from None
        copy = self.model_copy(update={"recipe": self.recipe.model_copy(update={"variants": variants})})
        copy._yaml = self._yaml
        return copy

    def resolve(self, path: str) -> Path:
        """A path written in the recipe: `~` and $VARIABLES expanded, relative to the recipe's folder."""
        expanded = Path(os.path.expandvars(os.path.expanduser(path)))
        return expanded if expanded.is_absolute() else Path(self.path).parent / expanded


# A recipe is a shared file; a command meter runs its program on every board the recipe is swept on.
COMMAND_METER_REFUSED = ("a `command` meter runs a program on every board: it belongs in the board's inventory "
                         "entry (its owner's file), or pass --allow-command-meter to run this recipe as written")


def load_recipe(path: str | Path, allow_command_meter: bool = False) -> LoadedRecipe:
    """Read and validate a recipe file; every problem is a RecipeError naming file, line and key. A recipe that
    names a `command` power meter is refused unless `allow_command_meter` (the command line's flag) says so."""
    document = read_yaml(path, RecipeError, "recipe")
    if not isinstance(document.data, dict):
        raise RecipeError(document.path, "a recipe must be a YAML mapping (name:, model:, dataset:, ...)",
                          line=1, column=1)
    try:
        recipe = Recipe.model_validate(document.data)
    except ValidationError as exc:
        raise _recipe_error(document, exc) from None
    for key_path, message in onnx_source_conflicts(recipe) + baseline_conflicts(recipe):
        raise document.error_at(key_path, message)
    if (recipe.benchmark.power or {}).get("type") == "command" and not allow_command_meter:
        raise document.error_at(("benchmark", "power", "type"), COMMAND_METER_REFUSED)
    loaded = LoadedRecipe(recipe=recipe, path=document.path, sha256=document.sha256)
    loaded._yaml = document
    _check_pipeline_source(loaded)
    return loaded


def _check_pipeline_source(loaded: LoadedRecipe) -> None:
    """A camera source needs a frame count (it has no end). A file source is looked for when a sweep starts, as
    the data set is: a recipe is checked on machines that do not hold the data."""
    pipeline = loaded.recipe.benchmark.pipeline
    if pipeline is not None and pipeline.camera and pipeline.frames is None:
        raise loaded.error_at(("benchmark", "pipeline", "frames"),
                              "is required with a camera source: a camera has no last frame")


def check_recipe(path: str | Path, allow_command_meter: bool = False) -> LoadedRecipe:
    """load_recipe, plus the checks that need the model itself: a zoo model's options (which imports torch), an
    ONNX file (recipes/sources.py: a regular file, loadable, an image input the recipe can feed)."""
    from orchestrator.recipes.sources import check_model_source

    loaded = load_recipe(path, allow_command_meter)
    problem = loaded.recipe.model.options_problem()
    if problem:
        raise loaded.error_at(("model", "options"), problem)
    check_model_source(loaded)
    return loaded


def _recipe_error(document: YamlDocument, exc: ValidationError) -> LocatedError:
    """The first validation error, located in the file; an unknown data set names the known ones."""
    error = exc.errors()[0]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        given = error["input"].get("name") if isinstance(error["input"], dict) else None
        message = f"unknown dataset {given!r}; known: {', '.join(DATASETS.names())}" if given is not None \
            else "dataset needs a name"
        return document.error_at(("dataset", "name"), message)
    return document.validation_error(exc, skip=_is_union_tag)


def _is_union_tag(loc: tuple[Any, ...], index: int) -> bool:
    """pydantic puts the chosen member's tag in the location of a discriminated union's errors."""
    return index > 0 and loc[index - 1] == "dataset" and loc[index] in DATASETS
