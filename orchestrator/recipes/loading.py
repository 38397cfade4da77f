"""Reading recipe files: YAML, validation, and errors that name file, line, column and key."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from orchestrator.datasets import DATASETS
from orchestrator.errors import RecipeError
from orchestrator.recipes.schema import Recipe, onnx_source_conflicts


class LoadedRecipe(BaseModel):
    """A validated recipe with the file it came from and that file's sha256."""

    model_config = ConfigDict(frozen=True)
    recipe: Recipe
    path: str
    sha256: str
    _yaml: Any = PrivateAttr(default=None)  # the composed YAML, to locate later errors in the file

    def error_at(self, loc: tuple[str | int, ...], message: str) -> RecipeError:
        """A RecipeError naming this recipe's file, the line of `loc`, and the key."""
        return _located(self.path, self._yaml, list(loc), message)

    def with_repeat(self, repeat: int) -> LoadedRecipe:
        """This recipe with every job measured `repeat` times (the --repeat flag)."""
        benchmark = self.recipe.benchmark.model_copy(update={"repeat": repeat})
        copy = self.model_copy(update={"recipe": self.recipe.model_copy(update={"benchmark": benchmark})})
        copy._yaml = self._yaml
        return copy

    def resolve(self, path: str) -> Path:
        """A path written in the recipe: `~` and $VARIABLES expanded, relative to the recipe's folder."""
        expanded = Path(os.path.expandvars(os.path.expanduser(path)))
        return expanded if expanded.is_absolute() else Path(self.path).parent / expanded


def load_recipe(path: str | Path) -> LoadedRecipe:
    """Read and validate a recipe file; every problem is a RecipeError naming file, line and key."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(shown, "no such recipe file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(shown, f"cannot read recipe: {exc}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed YAML"
        raise RecipeError(shown, f"YAML syntax error: {problem}",
                          line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise RecipeError(shown, f"YAML error: {exc}") from None
    if not isinstance(data, dict):
        raise RecipeError(shown, "a recipe must be a YAML mapping (name:, model:, dataset:, ...)", line=1, column=1)
    _refuse_duplicate_keys(shown, root)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise _recipe_error(shown, root, exc) from None
    for key_path, message in onnx_source_conflicts(recipe):
        raise _located(shown, root, list(key_path), message)
    loaded = LoadedRecipe(recipe=recipe, path=shown, sha256=hashlib.sha256(text.encode()).hexdigest())
    loaded._yaml = root
    return loaded


def check_recipe(path: str | Path) -> LoadedRecipe:
    """load_recipe, plus the checks that need the model code (and so torch): its options."""
    loaded = load_recipe(path)
    problem = loaded.recipe.model.options_problem()
    if problem:
        raise loaded.error_at(("model", "options"), problem)
    return loaded


def _refuse_duplicate_keys(path: str, node: yaml.Node | None, trail: str = "") -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            dotted = f"{trail}.{key}" if trail else key
            if key in seen:
                raise RecipeError(path, "duplicate key", line=key_node.start_mark.line + 1,
                                  column=key_node.start_mark.column + 1, key=dotted)
            seen.add(key)
            _refuse_duplicate_keys(path, value_node, dotted)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(path, item, f"{trail}[{index}]")


def _recipe_error(path: str, root: yaml.Node | None, exc: ValidationError) -> RecipeError:
    """The first validation error, located in the file by walking the composed YAML."""
    error = exc.errors()[0]
    loc = [part for index, part in enumerate(error["loc"])
           if isinstance(part, int) or not (_is_pydantic_tag(part) or _is_union_tag(error["loc"], index))]
    message = error["msg"].removeprefix("Value error, ")
    index_in_message = re.match(r"^\[(\d+)\] ", message)
    if index_in_message:  # a list validator names the bad element itself
        loc.append(int(index_in_message.group(1)))
        message = message[index_in_message.end():]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("name")
        message = f"unknown dataset {error['input'].get('name')!r}; known: {', '.join(DATASETS.names())}" \
            if isinstance(error["input"], dict) and "name" in error["input"] else "dataset needs a name"
    elif error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return _located(path, root, loc, message, at_key=error["type"] == "extra_forbidden")


def _located(path: str, root: yaml.Node | None, loc: list[str | int], message: str,
             at_key: bool = False) -> RecipeError:
    """A RecipeError at the deepest YAML node of `loc` that the file has (its key, if at_key)."""
    node, found = root, []
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        node = child
        found.append(part)
    if at_key and found:
        node = _key_node(root, found) or node
    mark = node.start_mark if node is not None else None
    return RecipeError(path, message, line=mark.line + 1 if mark else None,
                       column=mark.column + 1 if mark else None, key=_dotted(loc) or "(top level)")


def _is_pydantic_tag(part: str) -> bool:
    return "[" in part or part in {"function-after", "function-before", "literal_error"}


def _is_union_tag(loc: tuple[Any, ...], index: int) -> bool:
    """pydantic puts the chosen member's tag in the location of a discriminated union's errors."""
    return index > 0 and loc[index - 1] == "dataset" and loc[index] in DATASETS


def _child(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        return next((value for key, value in node.value if key.value == part), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    return None


def _key_node(root: yaml.Node | None, loc: list[str | int]) -> yaml.Node | None:
    parent = root
    for part in loc[:-1]:
        parent = _child(parent, part)
    if isinstance(parent, yaml.MappingNode):
        return next((key for key, _ in parent.value if key.value == loc[-1]), None)
    return None


def _dotted(loc: list[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
