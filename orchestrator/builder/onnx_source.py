"""Steps for a model that starts as a user's ONNX file: import it, change its input size, convert its opset.

Steps that need torch (training, pruning, folding) are refused for such a
model when its recipe is loaded (recipes/schema.py: onnx_source_conflicts).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator.builder import STEPS, OnnxNode
from orchestrator.builder.evaluate import host_accuracy, host_metric
from orchestrator.errors import ModelSourceError

if TYPE_CHECKING:
    import onnx


def numpy_dtype(elem_type: int) -> str:
    """The numpy dtype name of an ONNX tensor element type (float32 for anything unusual)."""
    import onnx

    names: dict[int, str] = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
                             onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8",
                             onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32"}
    return names.get(elem_type, "float32")


def describe_input(model: onnx.ModelProto, image_size: int) -> dict[str, Any]:
    """The first graph input as {name, shape, dtype}, symbolic dims made concrete (batch 1, H = W = image_size)."""
    initializers = {init.name for init in model.graph.initializer}
    graph_input = next(i for i in model.graph.input if i.name not in initializers)
    tensor = graph_input.type.tensor_type
    shape = []
    for index, dim in enumerate(tensor.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(int(dim.dim_value))
        else:
            shape.append(1 if index == 0 else image_size if index >= 2 else 3)
    return {"name": graph_input.name, "shape": shape, "dtype": numpy_dtype(tensor.elem_type)}


def parameter_count(model: onnx.ModelProto) -> int:
    return int(sum(np.prod(init.dims) for init in model.graph.initializer))


def check_runs(data: bytes, model_input: dict[str, Any], what: str) -> None:
    """Create an onnxruntime session and run it once on zeros: proof the graph is usable as it is."""
    import onnxruntime as ort  # here, not at the top: a build that finds everything cached never needs it

    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        session.run(None, {model_input["name"]: np.zeros(model_input["shape"], dtype=model_input["dtype"])})
    except Exception as exc:  # onnxruntime raises several unrelated exception types; the cause is kept
        raise ModelSourceError(f"{what}: onnxruntime cannot run it: {str(exc).splitlines()[0]}") from exc


class ImportOnnxStep:
    """Take the user's ONNX file (external weights inlined) into the store as one self-contained file."""

    name = "import_onnx"
    version = "1"
    produces = "onnx"

    def run(self, ctx: Any, parent: None, params: dict[str, Any]) -> OnnxNode:
        import onnx

        path = Path(params["path"])
        if not path.is_file():
            raise ModelSourceError(f"{path}: no such ONNX file")
        try:
            model = onnx.load(str(path), load_external_data=True)
            onnx.checker.check_model(model)
        except Exception as exc:  # protobuf and onnx raise assorted errors for a bad file
            raise ModelSourceError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from exc
        data = model.SerializeToString()
        model_input = describe_input(model, ctx.recipe.dataset.image_size)
        check_runs(data, model_input, str(path))
        sha = ctx.store.put(data, ".onnx")
        return OnnxNode(sha, {"input": model_input, "params": parameter_count(model), "macs": None,
                              "sparsity": None, "host_accuracy": host_accuracy(ctx, sha, model_input["shape"][-1]),
                              "host_metric": host_metric(ctx)})


class ResizeInputStep:
    """Set the input's height and width, where the graph permits (checked by running it)."""

    name = "resize_input"
    version = "1"
    produces = "onnx"

    def run(self, ctx: Any, parent: OnnxNode, params: dict[str, Any]) -> OnnxNode:
        import onnx

        size = params["image_size"]
        model = onnx.load(str(ctx.store.path(parent.sha256, ".onnx")))
        model_input = dict(parent.meta["input"])
        graph_input = next(i for i in model.graph.input if i.name == model_input["name"])
        dims = graph_input.type.tensor_type.shape.dim
        if len(dims) != 4:
            raise ModelSourceError(f"input_size {size}: input {model_input['name']!r} is not NCHW (rank {len(dims)})")
        for dim in (dims[2], dims[3]):
            dim.Clear()
            dim.dim_value = size
        del model.graph.value_info[:]  # inferred shapes of the old size no longer hold
        for output in model.graph.output:
            for dim in output.type.tensor_type.shape.dim:
                if dim.HasField("dim_value"):
                    dim.Clear()
                    dim.dim_param = "resized"
        model_input["shape"] = [model_input["shape"][0], model_input["shape"][1], size, size]
        data = model.SerializeToString()
        check_runs(data, model_input, f"input_size {size}")
        sha = ctx.store.put(data, ".onnx")
        return OnnxNode(sha, {"input": model_input, "host_accuracy": host_accuracy(ctx, sha, size)})


class ConvertOpsetStep:
    """Convert the graph to another ONNX opset with onnx's version converter."""

    name = "convert_opset"
    version = "1"
    produces = "onnx"

    def run(self, ctx: Any, parent: OnnxNode, params: dict[str, Any]) -> OnnxNode:
        import onnx
        from onnx import version_converter

        model = onnx.load(str(ctx.store.path(parent.sha256, ".onnx")))
        try:
            converted = version_converter.convert_version(model, params["opset"])
        except Exception as exc:  # the converter raises RuntimeError/ValueError by op
            raise ModelSourceError(f"opset {params['opset']}: cannot convert: {str(exc).splitlines()[0]}") from exc
        data = converted.SerializeToString()
        check_runs(data, parent.meta["input"], f"opset {params['opset']}")
        sha = ctx.store.put(data, ".onnx")
        return OnnxNode(sha, {"host_accuracy": host_accuracy(ctx, sha, parent.meta["input"]["shape"][-1])})


for _step in (ImportOnnxStep(), ResizeInputStep(), ConvertOpsetStep()):
    STEPS.register(_step.name)(_step)
