"""What a recipe's model source needs before anything is built: its ONNX file judged (a regular file under the
size cap, loadable, one image input of a size the recipe can feed) and its pre-processing worked out.

`orch recipes check` runs check_model_source; the build's import step uses the same functions
(models/onnx_file.py), so a file is judged the same way at both.
"""

from __future__ import annotations

from typing import Any

from agent.preprocess import Preprocess
from orchestrator.errors import ModelSourceError
from orchestrator.models.onnx_file import (
    describe_input,
    image_input,
    inferred_layout,
    input_dims,
    load_source,
    numpy_dtype,
)
from orchestrator.recipes.loading import LoadedRecipe


def source_preprocess(loaded: LoadedRecipe) -> Preprocess | None:
    """How images become the ONNX source's input: the recipe's `model.preprocess`, with what it leaves out inferred
    from the model's input (layout, dtype) and taken from the data set (channels, mean, std). None when nothing
    is declared and the model takes the data set's own pre-processing (NCHW float32)."""
    recipe = loaded.recipe
    path = loaded.resolve(recipe.model.onnx or "")
    graph_input = image_input(load_source(path), str(path))
    dims = input_dims(graph_input)
    dtype = numpy_dtype(graph_input.type.tensor_type.elem_type)
    declared = recipe.model.preprocess.model_dump(exclude_none=True) if recipe.model.preprocess else {}
    layout = declared.get("layout") or inferred_layout(dims)
    if not declared and layout == "NCHW" and dtype == "float32":
        return None
    dataset = recipe.dataset
    size = recipe.dataset.image_size
    fields: dict[str, Any] = {"size": [size, size], "layout": layout, "channels": getattr(dataset, "channels", "RGB"),
                              "mean": getattr(dataset, "mean", None), "std": getattr(dataset, "std", None),
                              "dtype": dtype if dtype in ("uint8", "float16") else "float32"}
    if fields["dtype"] == "uint8":
        fields.update(scale="0-255", mean=None, std=None)
    fields.update(declared)
    preprocess = Preprocess(**fields)
    for key, problem in preprocess.problems():
        raise loaded.error_at(("model", "preprocess", key), problem)
    return preprocess


def check_model_source(loaded: LoadedRecipe) -> None:
    """Refuse an ONNX source that cannot be built from as the recipe asks, at the recipe's key: `model.onnx` for
    the file itself, `model.preprocess.<field>` for its pre-processing, `dataset.image_size` for a size mismatch."""
    recipe = loaded.recipe
    if recipe.model.onnx is None:
        return
    path = loaded.resolve(recipe.model.onnx)
    try:
        model = load_source(path)
        graph_input = image_input(model, str(path))
    except ModelSourceError as exc:
        raise loaded.error_at(("model", "onnx"), str(exc)) from None
    preprocess = source_preprocess(loaded)
    try:
        describe_input(graph_input, preprocess, recipe.dataset.image_size, str(path))
    except ModelSourceError as exc:
        raise loaded.error_at(("dataset", "image_size"), str(exc)) from None

