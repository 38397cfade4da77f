"""Grid expansion: every combination of a recipe's variant axes, as an ordered list of build steps.

A variant's name is its lineage in short: `l1-0.50/ft2/int8_static` is pruned
50% with L1 importance, fine-tuned 2 epochs and statically quantized; `/nms`
at the end: a detector with its NMS inside the graph. Baselines (`variants.baselines`)
come after the grid: `baseline/source` (the weights file's network as it is) and
`baseline/retrained` (the network after `retrain`, before compression), fp32.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from orchestrator.recipes.loading import LoadedRecipe
from orchestrator.recipes.schema import QUANTIZE_PRESETS, QuantizeSpec, VariantsGrid
from orchestrator.runtimes import Runtime

# The most variants one recipe may build (a typo in an axis can ask for millions).
MAX_VARIANTS = 10_000


class Step(BaseModel):
    """One build step of a variant's lineage: a step name and its parameters."""

    model_config = ConfigDict(frozen=True)
    name: str
    params: dict[str, Any]


class VariantPlan(BaseModel):
    """One point of the grid: a readable name, the steps that build it in order, and its axis values."""

    model_config = ConfigDict(frozen=True)
    name: str
    steps: tuple[Step, ...]
    axes: dict[str, Any]


def file_sha256(path: Path) -> str | None:
    """Content hash of an input file (so replacing weights rebuilds); None if it is missing or not a regular file
    (a FIFO or a device is never opened: the build step that needs the file says what is wrong with it)."""
    if not os.path.isfile(path):
        return None
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


def expand(loaded: LoadedRecipe, target: Runtime | None = None) -> list[VariantPlan]:
    """Every combination of the recipe's variant axes, grid after grid (`include`), as build plans
    (duplicates merged, order kept), built for the `target` onnxruntime when one is given (runtimes.py: opsets
    it loads, kernels it has). Two grids that give one name to different builds are a RecipeError."""
    plans: dict[str, VariantPlan] = {}
    grids = loaded.recipe.variants.grids()
    baselines = len(loaded.recipe.variants.baselines) * len(grids[0].input_size or [0])
    total = sum(grid_size(loaded, grid) for grid in grids) + baselines
    if total > MAX_VARIANTS:
        raise loaded.error_at(("variants",), f"the grid has {total} variants, more than the {MAX_VARIANTS} one recipe "
                                             "may build: split the study into several recipes")
    for index, grid in enumerate(grids):
        for plan in _expand_grid(loaded, grid, target):
            known = plans.setdefault(plan.name, plan)
            if known.steps != plan.steps:
                raise loaded.error_at(("variants", "include", index - 1) if index else ("variants",),
                                      f"variant {plan.name} is built differently by an earlier grid (a setting "
                                      "that is not part of variant names differs); give it its own recipe")
    for plan in baseline_plans(loaded, grids[0], target):
        same = next((known for known in plans.values() if known.steps == plan.steps), None)
        if same is not None:
            where = loaded.recipe.variants.baselines.index(plan.axes["baseline"])
            raise loaded.error_at(("variants", "baselines", where),
                                  f"{plan.name} is built exactly as the grid's variant {same.name}: drop "
                                  f"{plan.axes['baseline']!r} from baselines (that variant is the baseline)")
        plans[plan.name] = plan
    return list(plans.values())


def baseline_plans(loaded: LoadedRecipe, grid: VariantsGrid, target: Runtime | None) -> list[VariantPlan]:
    """The recipe's baselines (schema.py BASELINES) as plans: each exported fp32 at every input size of the main
    grid, with no compression step. `source` loads the weights file whole (its own head, however many classes it
    scores: a detector's labels are scored as the data set's classes of the same name); `retrained` is the main
    grid's training and retrain, the very steps (and cache entries) its compressed variants start from."""
    recipe = loaded.recipe
    max_opset = target.max_opsets.get("", grid.opset) if target else grid.opset
    sizes = grid.input_size or [recipe.dataset.image_size]
    plans = []
    for baseline, size in itertools.product(recipe.variants.baselines, sizes):
        if baseline == "source":
            model = _model_params(loaded)
            weights = {key: value for key, value in model.pop("weights").items() if key != "skip_head"}
            chain = [Step(name="import_weights", params={"model": model, "weights": weights,
                                                         "dataset": recipe.dataset.model_dump()})]
        else:
            chain = _trained(loaded, grid)
        chain.append(Step(name="export", params={"image_size": size, "opset": min(grid.opset, max_opset)}))
        name = f"baseline/{baseline}" + (f"/{size}px" if grid.input_size else "")
        plans.append(VariantPlan(name=name, steps=tuple(chain), axes={
            "baseline": baseline, "prune_method": None, "prune_ratio": 0.0, "prune_scope": None,
            "prune_steps": None, "finetune_epochs": 0, "sparsity_target": 0.0, "fold_bn": False, "distill": None,
            "input_size": size, "simplify": False, "quantize": QUANTIZE_PRESETS["none"].label, "graph_nms": False,
            "target_runtime": target.version if target else None}))
    return plans


def grid_size(loaded: LoadedRecipe, grid: VariantsGrid) -> int:
    """How many variants a grid has before duplicates merge (counted, not built: a huge grid costs nothing)."""
    sizes = [len(grid.input_size or [0]), len(grid.simplify), len(grid.quantize), len(grid.graph_nms)]
    if loaded.recipe.model.onnx is None:
        distills = 1 if grid.distill is None else len(grid.distill.temperature) * len(grid.distill.alpha)
        prune, sparsify = grid.prune, grid.sparsify
        sizes += [len(prune.method), len(prune.ratio), len(prune.scope), len(prune.steps), len(prune.finetune_epochs),
                  distills, len(sparsify.ratio), len(sparsify.scope), len(grid.fold_bn)]
    return math.prod(sizes)


def _expand_grid(loaded: LoadedRecipe, grid: VariantsGrid, target: Runtime | None) -> list[VariantPlan]:
    recipe = loaded.recipe
    max_opset = target.max_opsets.get("", grid.opset) if target else grid.opset
    plans: dict[str, VariantPlan] = {}
    prefixes = _onnx_prefixes(loaded) if recipe.model.onnx else _torch_prefixes(loaded, grid)
    sizes = grid.input_size or [recipe.dataset.image_size]
    for (prefix_name, prefix_steps, axes), size, simplify, quantize, graph_nms in itertools.product(
            prefixes, sizes, grid.simplify, grid.quantize, grid.graph_nms):
        steps = list(prefix_steps)
        if recipe.model.onnx:
            if grid.input_size:
                steps.append(Step(name="resize_input", params={"image_size": size}))
            if "opset" in grid.model_fields_set:
                steps.append(Step(name="convert_opset", params={"opset": min(grid.opset, max_opset)}))
            if target is not None:
                steps.append(Step(name="limit_opset", params={"max_opset": max_opset}))
        else:
            steps.append(Step(name="export", params={"image_size": size, "opset": min(grid.opset, max_opset)}))
        if simplify:
            steps.append(Step(name="simplify", params={}))
        if quantize.mode != "none":
            params = _quantize_params(quantize, grid)
            if target is not None:
                params["target"] = target.key()
            steps.append(Step(name="quantize", params=params))
        if graph_nms:
            # The recipe's detection settings are the step's parameters: changing a threshold rebuilds it.
            steps.append(Step(name="graph_nms", params={"detection": recipe.model.detection or {}}))
        parts = [prefix_name] if prefix_name else []
        if grid.input_size:
            parts.append(f"{size}px")
        if simplify:
            parts.append("slim")
        parts.append(quantize.label)
        if graph_nms:
            parts.append("nms")
        name = "/".join(parts)
        plans.setdefault(name, VariantPlan(name=name, steps=tuple(steps), axes={
            "baseline": None, **axes, "input_size": size, "simplify": simplify, "quantize": quantize.label,
            "graph_nms": graph_nms, "target_runtime": target.version if target else None}))
    return list(plans.values())


def _quantize_params(quantize: QuantizeSpec, grid: VariantsGrid) -> dict[str, Any]:
    params = quantize.model_dump()
    if quantize.mode == "static":
        params["samples"] = quantize.samples or grid.calibration_samples
    else:
        params.pop("samples")
    return params


def _onnx_prefixes(loaded: LoadedRecipe) -> list[tuple[str, list[Step], dict[str, Any]]]:
    recipe = loaded.recipe
    path = loaded.resolve(recipe.model.onnx or "")
    declared = recipe.model.preprocess.model_dump(exclude_none=True) if recipe.model.preprocess else {}
    source = Step(name="import_onnx", params={"path": str(path), "sha256": file_sha256(path), "preprocess": declared})
    return [("", [source], {})]


def _model_params(loaded: LoadedRecipe) -> dict[str, Any]:
    """The model section as a step's parameters: weights with their resolved path, format and content hash."""
    recipe = loaded.recipe
    model = recipe.model.model_dump()
    if recipe.model.weights is not None:
        weights_path = loaded.resolve(recipe.model.weights.path)
        model["weights"] = {"path": str(weights_path), "format": recipe.model.weights.resolved_format,
                            "skip_head": recipe.model.weights.skip_head, "sha256": file_sha256(weights_path)}
    return model


def _trained(loaded: LoadedRecipe, variants: VariantsGrid) -> list[Step]:
    """The steps of the trained network before compression: training, then the grid's retrain if it has one."""
    recipe = loaded.recipe
    base = [Step(name="train", params={"model": _model_params(loaded), "dataset": recipe.dataset.model_dump(),
                                       "train": recipe.train.model_dump()})]
    if variants.retrain is not None:
        base.append(Step(name="finetune", params={"batch_size": recipe.train.batch_size, "seed": recipe.train.seed,
                                                  "epochs": variants.retrain.epochs, "lr": variants.retrain.lr,
                                                  "trainable": variants.retrain.trainable, "distill": None}))
    return base


def _torch_prefixes(loaded: LoadedRecipe, variants: VariantsGrid) -> list[tuple[str, list[Step], dict[str, Any]]]:
    """Every torch-side lineage (training through folding) of one grid, with its name and axis values."""
    recipe = loaded.recipe
    base = _trained(loaded, variants)
    training = {"batch_size": recipe.train.batch_size, "seed": recipe.train.seed}
    prune = variants.prune
    finetune_lr = prune.finetune_lr or recipe.train.lr / 5
    distills: list[dict[str, Any] | None] = [None]
    if variants.distill is not None:
        distills = [{"teacher": variants.distill.teacher, "temperature": t, "alpha": a}
                    for t, a in itertools.product(variants.distill.temperature, variants.distill.alpha)]
    prefixes = []
    for method, ratio, scope, steps, epochs, distill, sparsity, sparse_scope, fold in itertools.product(
            prune.method, prune.ratio, prune.scope, prune.steps, prune.finetune_epochs, distills,
            variants.sparsify.ratio, variants.sparsify.scope, variants.fold_bn):
        chain = list(base)
        finetune = {**training, "epochs": epochs, "lr": finetune_lr, "trainable": None, "distill": distill}
        pruning = {"method": method, "ratio": ratio, "scope": scope, "round_to": prune.round_to, "keep": prune.keep}
        if ratio > 0 and steps > 1:
            chain.append(Step(name="iterative_prune", params={**pruning, "steps": steps, "finetune": finetune}))
        else:
            if ratio > 0:
                chain.append(Step(name="prune", params=pruning))
            if epochs > 0:
                chain.append(Step(name="finetune", params=finetune))
        if sparsity > 0:
            chain.append(Step(name="sparsify", params={"ratio": sparsity, "scope": sparse_scope}))
        if fold:
            chain.append(Step(name="fold_bn", params={}))
        parts = [_prune_label(method, ratio, scope, steps), f"ft{epochs}"]
        if distill:
            parts.append(f"kd-T{distill['temperature']:g}-a{distill['alpha']:g}")
        if sparsity > 0:
            parts.append(f"sp{sparsity:.2f}" + ("" if sparse_scope == "global" else "-layer"))
        if fold:
            parts.append("fold")
        axes = {"prune_method": method if ratio > 0 else None, "prune_ratio": ratio,
                "prune_scope": scope if ratio > 0 else None, "prune_steps": steps if ratio > 0 else None,
                "finetune_epochs": epochs, "sparsity_target": sparsity, "fold_bn": fold,
                "distill": distill}
        prefixes.append(("/".join(parts), chain, axes))
    return prefixes


def _prune_label(method: str, ratio: float, scope: str, steps: int) -> str:
    if ratio == 0:
        return "dense"
    label = f"{method}-{ratio:.2f}"
    if scope == "global":
        label += "-global"
    if steps > 1:
        label += f"x{steps}"
    return label
