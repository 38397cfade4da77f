"""Recipes: the YAML schema (pydantic), loading with file:line:column errors, grid expansion.

A recipe describes one study: a model, the data set it is trained and scored
on, how it is trained, the variant axes (every list is a grid axis), and how
each variant is benchmarked. See recipes/quickstart.yaml.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from orchestrator.datasets import DATASETS, DatasetSpec
from orchestrator.errors import RecipeError


def _as_list(value: Any) -> Any:
    """A grid axis may be written as one value or as a list of values."""
    return value if isinstance(value, list) else [value]


class Spec(BaseModel):
    """Base of every recipe section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(Spec):
    """Where the network comes from.

    arch: name of a model in the zoo (orchestrator/models/)
    options: keyword arguments of that model (e.g. width)
    """

    arch: str
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        from orchestrator.models import MODELS

        if arch not in MODELS:
            raise ValueError(f"unknown model {arch!r}; known: {', '.join(MODELS.names())}")
        return arch


class TrainSpec(Spec):
    """How the base model is trained (SGD with momentum, cosine schedule).

    epochs, lr, batch_size, momentum, weight_decay, seed: as in any training loop
    """

    epochs: int = Field(5, ge=0)
    lr: float = Field(0.05, gt=0)
    batch_size: int = Field(64, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    seed: int = 0


Ratio = Annotated[float, Field(ge=0)]


class PruneAxes(Spec):
    """Structured channel pruning axes (each a list: the grid takes every combination).

    method: channel importance criterion (l1)
    ratio: fraction of each layer's output channels removed, in [0, 1)
    finetune_epochs: epochs of fine-tuning after pruning (0 = none)
    finetune_lr: learning rate of fine-tuning (default: train.lr / 5)
    """

    method: Annotated[list[Literal["l1"]], BeforeValidator(_as_list)] = ["l1"]
    ratio: Annotated[list[float], BeforeValidator(_as_list)] = [0.0]
    finetune_epochs: Annotated[list[Annotated[int, Field(ge=0)]], BeforeValidator(_as_list)] = [0]
    finetune_lr: float | None = Field(None, gt=0)

    @field_validator("ratio")
    @classmethod
    def _ratio_range(cls, ratios: list[float]) -> list[float]:
        for index, ratio in enumerate(ratios):
            if not 0 <= ratio < 1:
                raise ValueError(f"[{index}] {ratio} is not in [0, 1)")
        return ratios


QuantizeMode = Literal["none", "int8_static"]


class VariantsSpec(Spec):
    """The variant grid: pruning axes x quantization modes.

    prune: see PruneAxes
    quantize: none (fp32) and/or int8_static (QDQ, calibrated on training images)
    calibration_samples: training images used to calibrate static quantization
    """

    prune: PruneAxes = Field(default_factory=PruneAxes)
    quantize: Annotated[list[QuantizeMode], BeforeValidator(_as_list)] = ["none"]
    calibration_samples: int = Field(128, gt=0)


class WarmupGate(Spec):
    """Warm-up: at least min_iters runs AND min_s seconds (capped by max_s if set)."""

    min_iters: int = Field(10, ge=0)
    min_s: float = Field(0.5, ge=0)
    max_s: float | None = Field(None, gt=0)


class MeasureGate(Spec):
    """Timed runs: at least min_iters AND min_s seconds, stopped at max_s."""

    min_iters: int = Field(300, ge=1)
    min_s: float = Field(3.0, ge=0)
    max_s: float = Field(60.0, gt=0)


class BenchmarkSpec(Spec):
    """How each variant is measured on each device.

    warmup, measure: run gates (see WarmupGate, MeasureGate)
    threads: onnxruntime intra-op thread counts (a grid axis)
    providers: onnxruntime execution providers, in order
    graph_optimization: onnxruntime graph optimization level
    accuracy: full_test_set (score every test sample on the device) or none
    """

    warmup: WarmupGate = Field(default_factory=WarmupGate)
    measure: MeasureGate = Field(default_factory=MeasureGate)
    threads: Annotated[list[Annotated[int, Field(ge=1)]], BeforeValidator(_as_list)] = [1]
    providers: list[str] = ["CPUExecutionProvider"]
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    accuracy: Literal["full_test_set", "none"] = "full_test_set"


def _dataset_specs() -> Any:
    """The `dataset:` section: one schema per registered data set, chosen by its `name`."""
    specs = [DATASETS.get(name).spec for name in DATASETS.names()]
    if len(specs) == 1:
        return specs[0]
    return Annotated[Union[tuple(specs)], Field(discriminator="name")]  # noqa: UP007


if TYPE_CHECKING:
    DatasetSection = DatasetSpec
else:
    DatasetSection = _dataset_specs()


class Recipe(Spec):
    """One study: what to build and how to measure it."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    model: ModelSpec
    dataset: DatasetSection
    train: TrainSpec = Field(default_factory=TrainSpec)
    variants: VariantsSpec = Field(default_factory=VariantsSpec)
    benchmark: BenchmarkSpec = Field(default_factory=BenchmarkSpec)


class LoadedRecipe(BaseModel):
    """A validated recipe with the file it came from and that file's sha256."""

    model_config = ConfigDict(frozen=True)
    recipe: Recipe
    path: str
    sha256: str


# --------------------------------------------------------------------------- loading


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
    return LoadedRecipe(recipe=recipe, path=shown, sha256=hashlib.sha256(text.encode()).hexdigest())


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
    node, found = root, []
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        node = child
        found.append(part)
    if error["type"] == "extra_forbidden" and isinstance(node, yaml.ScalarNode):
        key_node = _key_node(root, found)
        node = key_node or node
    mark = node.start_mark if node is not None else None
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
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


# --------------------------------------------------------------------------- grid expansion


class Step(BaseModel):
    """One build step of a variant's lineage: a step name and its parameters."""

    model_config = ConfigDict(frozen=True)
    name: str
    params: dict[str, Any]


class VariantPlan(BaseModel):
    """One point of the grid: a readable name and the steps that build it, in order."""

    model_config = ConfigDict(frozen=True)
    name: str
    steps: tuple[Step, ...]
    axes: dict[str, Any]


def expand(recipe: Recipe) -> list[VariantPlan]:
    """Every combination of the recipe's variant axes, as build plans (duplicates merged)."""
    prune = recipe.variants.prune
    finetune_lr = prune.finetune_lr or recipe.train.lr / 5
    train = Step(name="train", params={
        "model": recipe.model.model_dump(), "dataset": recipe.dataset.model_dump(),
        "train": recipe.train.model_dump()})
    plans: dict[str, VariantPlan] = {}
    for method, ratio, epochs, quantize in itertools.product(
            prune.method, prune.ratio, prune.finetune_epochs, recipe.variants.quantize):
        steps = [train]
        if ratio > 0:
            steps.append(Step(name="prune", params={"method": method, "ratio": ratio}))
        if epochs > 0:
            steps.append(Step(name="finetune", params={"epochs": epochs, "lr": finetune_lr,
                                                       "batch_size": recipe.train.batch_size,
                                                       "seed": recipe.train.seed}))
        steps.append(Step(name="export", params={"image_size": recipe.dataset.image_size}))
        if quantize != "none":
            steps.append(Step(name="quantize", params={
                "mode": quantize, "calibration_samples": recipe.variants.calibration_samples}))
        pruned = f"{method}-{ratio:.2f}" if ratio > 0 else "dense"
        name = f"{pruned}/ft{epochs}/{'fp32' if quantize == 'none' else quantize}"
        axes = {"prune_method": method if ratio > 0 else None, "prune_ratio": ratio,
                "finetune_epochs": epochs, "quantize": quantize}
        plans.setdefault(name, VariantPlan(name=name, steps=tuple(steps), axes=axes))
    return list(plans.values())
