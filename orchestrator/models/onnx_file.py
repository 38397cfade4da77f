"""A user's ONNX file as orch reads it: checked before a byte is read, loaded, and its one image input described.

Shared by `orch recipes check` (recipes/sources.py) and the build's import step (builder/onnx_source.py), so a
file is judged the same way at both.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.preprocess import Preprocess
from orchestrator.errors import ModelSourceError, first_line

if TYPE_CHECKING:
    import onnx

# The largest ONNX file orch reads: protobuf's own limit for one message (weights beyond it are external data).
MAX_ONNX_BYTES = 2 * 1024**3


def numpy_dtype(elem_type: int) -> str:
    """The numpy dtype name of an ONNX tensor element type (float32 for anything unusual)."""
    import onnx

    names: dict[int, str] = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
                             onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8",
                             onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32"}
    return names.get(elem_type, "float32")


def check_source_file(path: Path) -> None:
    """Refuse what is not a regular ONNX-sized file before reading a byte of it (a FIFO or a device would block
    or never end)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ModelSourceError(f"{path}: no such ONNX file") from None
    except OSError as exc:
        raise ModelSourceError(f"{path}: cannot read it ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode) else \
            "a device or socket"
        raise ModelSourceError(f"{path}: is {kind}, not a regular file; refusing to read it")
    if info.st_size > MAX_ONNX_BYTES:
        raise ModelSourceError(f"{path}: {info.st_size / 2**30:.1f} GiB is over the {MAX_ONNX_BYTES // 2**30} GiB "
                               "an ONNX file can hold (save large weights as external data)")


def load_source(path: Path) -> onnx.ModelProto:
    """The user's ONNX file, checked, with any external weights inlined."""
    import onnx

    check_source_file(path)
    try:
        model = onnx.load(str(path), load_external_data=True)
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf and onnx raise assorted errors for a bad file
        raise ModelSourceError(f"{path}: not a loadable ONNX model ({first_line(exc)})") from exc
    return model


def image_input(model: onnx.ModelProto, what: str) -> Any:
    """The model's one real input (initializers listed as inputs aside); several or none are refused."""
    initializers = {init.name for init in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in initializers]
    if len(real) != 1:
        names = ", ".join(i.name for i in real) or "none"
        raise ModelSourceError(f"{what}: has {len(real)} inputs ({names}); orch feeds models with one image input")
    return real[0]


def input_dims(graph_input: Any) -> list[int | None]:
    """An input's dimensions, None for each symbolic or unknown one."""
    return [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in graph_input.type.tensor_type.shape.dim]


def inferred_layout(dims: list[int | None]) -> str:
    """NHWC when the last dimension is the one that looks like channels (1 or 3) and the second does not."""
    if len(dims) == 4 and dims[3] in (1, 3) and dims[1] not in (1, 3):
        return "NHWC"
    return "NCHW"


def describe_input(graph_input: Any, preprocess: Preprocess | None, image_size: int, what: str) -> dict[str, Any]:
    """The image input as {name, shape, dtype, layout}: symbolic dims made concrete (batch 1, the image size,
    the channels); a fixed spatial size that differs from the recipe's is refused."""
    dims = input_dims(graph_input)
    layout = preprocess.layout if preprocess else "NCHW"
    if len(dims) != 4:
        raise ModelSourceError(f"{what}: input {graph_input.name!r} has rank {len(dims)}; orch feeds images "
                               "(rank 4: NCHW or NHWC)")
    channels_at, spatial = (3, (1, 2)) if layout == "NHWC" else (1, (2, 3))
    fixed = [dims[axis] for axis in spatial]
    if any(side is not None and side != image_size for side in fixed):
        shown = "x".join("?" if side is None else str(side) for side in fixed)
        raise ModelSourceError(f"{what}: input {graph_input.name!r} is {shown} pixels, but the data set's "
                               f"image_size is {image_size}: set image_size to the model's size (input_size "
                               "resizes the model)")
    shape = [dims[0] or 1, 0, 0, 0]
    shape[channels_at] = dims[channels_at] or (preprocess.channel_count if preprocess else 3)
    for axis in spatial:
        shape[axis] = image_size
    dtype = numpy_dtype(graph_input.type.tensor_type.elem_type)
    return {"name": graph_input.name, "shape": shape, "dtype": dtype, "layout": layout}
