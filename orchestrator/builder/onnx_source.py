"""Steps for a model that starts as a user's ONNX file: import (and normalize) it, change its input size,
convert its opset (or lower it to what a target runtime loads).

Files from elsewhere are rarely shaped like orch's own exports: the classic model zoo's are IR version 3 at
opset 9 with every initializer also listed as a graph input; TensorFlow's detectors take NHWC uint8 images;
many exports have dynamic batch and spatial dimensions. Import normalizes what later steps cannot take
(initializers out of the inputs, an IR version that allows that, shape inference) without changing what the
graph computes, and works out how images become the model's input (agent/preprocess.py) from the model and
the recipe. Steps that need torch (training, pruning, folding) are refused for such a model when its recipe is
loaded (recipes/schema.py: onnx_source_conflicts).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator.builder import STEPS, OnnxNode
from orchestrator.builder.evaluate import host_accuracy, host_metric
from orchestrator.errors import ModelSourceError, first_line
from orchestrator.models.onnx_file import describe_input, image_input, load_source

if TYPE_CHECKING:
    import onnx

def normalized(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph in a form later steps take: no initializer listed as an input (IR version 4 allows it),
    shapes inferred."""
    import onnx

    initializers = {init.name for init in model.graph.initializer}
    kept = [graph_input for graph_input in model.graph.input if graph_input.name not in initializers]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.ir_version = max(model.ir_version, onnx.helper.find_min_ir_version_for(list(model.opset_import)), 4)
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is help, not a requirement: a graph it cannot follow still runs
        return model


def image_side(model_input: dict[str, Any]) -> int:
    """The height of a (square) image input described by describe_input, whatever its layout."""
    return int(model_input["shape"][1 if model_input.get("layout") == "NHWC" else 2])


def opsets(model: onnx.ModelProto) -> dict[str, int]:
    """The model's opset imports, ai.onnx as ""."""
    return {entry.domain or "": int(entry.version) for entry in model.opset_import}


def check_runs(data: bytes, model_input: dict[str, Any], what: str) -> None:
    """Create an onnxruntime session and run it once on zeros: proof the graph is usable as it is."""
    import onnxruntime as ort  # here, not at the top: a build that finds everything cached never needs it

    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        session.run(None, {model_input["name"]: np.zeros(model_input["shape"], dtype=model_input["dtype"])})
    except Exception as exc:  # onnxruntime raises several unrelated exception types; the cause is kept
        raise ModelSourceError(f"{what}: onnxruntime cannot run it: {first_line(exc)}") from exc


def graph_figures(model: onnx.ModelProto) -> dict[str, Any]:
    """Parameters (initializer elements) of a graph."""
    return {"params": int(sum(np.prod(init.dims) for init in model.graph.initializer))}


class ImportOnnxStep:
    """Take the user's ONNX file into the store, normalized (see the module docstring), as one self-contained file."""

    name = "import_onnx"
    version = "4"  # 4: detectors scored by the boards' code; 3: portable opsets; 2: normalized, pre-processing
    produces = "onnx"

    def run(self, ctx: Any, parent: None, params: dict[str, Any]) -> OnnxNode:
        path = Path(params["path"])
        model = normalized(load_source(path))
        preprocess = ctx.preprocess
        model_input = describe_input(image_input(model, str(path)), preprocess, ctx.recipe.dataset.image_size,
                                     str(path))
        data = model.SerializeToString()
        check_runs(data, model_input, str(path))
        sha, facts = ctx.put_onnx(data, model_input)
        return OnnxNode(sha, {"input": model_input, "preprocess": asdict(preprocess) if preprocess else None,
                              **graph_figures(model), **facts, "macs": None, "sparsity": None,
                              "host_accuracy": host_accuracy(ctx, sha, image_side(model_input)),
                              "host_metric": host_metric(ctx)})


class ResizeInputStep:
    """Set the input's height and width, where the graph permits (checked by running it)."""

    name = "resize_input"
    version = "4"  # 4: detectors scored by the boards' code; 3: portable opsets; 2: NHWC inputs
    produces = "onnx"

    def run(self, ctx: Any, parent: OnnxNode, params: dict[str, Any]) -> OnnxNode:
        import onnx

        size = params["image_size"]
        model = onnx.load(str(ctx.store.path(parent.sha256, ".onnx")))
        model_input = dict(parent.meta["input"])
        spatial = (1, 2) if model_input.get("layout") == "NHWC" else (2, 3)
        graph_input = next(i for i in model.graph.input if i.name == model_input["name"])
        dims = graph_input.type.tensor_type.shape.dim
        for axis in spatial:
            dims[axis].Clear()
            dims[axis].dim_value = size
        del model.graph.value_info[:]  # inferred shapes of the old size no longer hold
        for output in model.graph.output:
            for dim in output.type.tensor_type.shape.dim:
                if dim.HasField("dim_value"):
                    dim.Clear()
                    dim.dim_param = "resized"
        shape = list(model_input["shape"])
        for axis in spatial:
            shape[axis] = size
        model_input["shape"] = shape
        data = model.SerializeToString()
        check_runs(data, model_input, f"input_size {size}")
        sha, facts = ctx.put_onnx(data, model_input)
        return OnnxNode(sha, {"input": model_input, **facts, "host_accuracy": host_accuracy(ctx, sha, size)})


def converted(model: onnx.ModelProto, opset: int, what: str) -> onnx.ModelProto:
    """The model at ai.onnx `opset` (onnx's version converter), its IR version raised to what that opset needs."""
    import onnx
    from onnx import version_converter

    try:
        result = version_converter.convert_version(model, opset)
    except Exception as exc:  # the converter raises RuntimeError/ValueError by op
        raise ModelSourceError(f"{what}: onnx's version converter cannot take it to opset {opset}: "
                               f"{first_line(exc)}") from exc
    result.ir_version = max(result.ir_version, onnx.helper.find_min_ir_version_for(list(result.opset_import)))
    return result


class ConvertOpsetStep:
    """Convert the graph to another ONNX opset with onnx's version converter (the recipe's `opset`)."""

    name = "convert_opset"
    version = "4"  # 4: detectors scored by the boards' code; 3: portable opsets; 2: IR version raised
    produces = "onnx"

    def run(self, ctx: Any, parent: OnnxNode, params: dict[str, Any]) -> OnnxNode:
        import onnx

        model = converted(onnx.load(str(ctx.store.path(parent.sha256, ".onnx"))), params["opset"],
                          f"opset {params['opset']}")
        data = model.SerializeToString()
        check_runs(data, parent.meta["input"], f"opset {params['opset']}")
        sha, facts = ctx.put_onnx(data, parent.meta["input"])
        return OnnxNode(sha, {**facts, "host_accuracy": host_accuracy(ctx, sha, image_side(parent.meta["input"]))})


class LimitOpsetStep:
    """Lower ai.onnx to `max_opset` (the target runtime's newest) when the graph needs a newer one; nothing
    otherwise. An op that cannot be converted down fails this variant, saying which."""

    name = "limit_opset"
    version = "2"  # 2: detectors scored by the boards' own code
    produces = "onnx"

    def run(self, ctx: Any, parent: OnnxNode, params: dict[str, Any]) -> OnnxNode:
        import onnx

        model = onnx.load(str(ctx.store.path(parent.sha256, ".onnx")))
        limit = params["max_opset"]
        if opsets(model).get("", 1) <= limit:
            return OnnxNode(parent.sha256, {})
        model = converted(model, limit, f"the target runtime loads opset {limit} at most")
        data = model.SerializeToString()
        check_runs(data, parent.meta["input"], f"opset {limit}")
        sha, facts = ctx.put_onnx(data, parent.meta["input"])
        return OnnxNode(sha, {**facts, "host_accuracy": host_accuracy(ctx, sha, image_side(parent.meta["input"]))})


for _step in (ImportOnnxStep(), ResizeInputStep(), ConvertOpsetStep(), LimitOpsetStep()):
    STEPS.register(_step.name)(_step)
