"""Every ONNX artifact orch writes is made portable before it is stored: it imports only the opset domains its nodes
use, each at the newest version at which one of its used ops last changed, and the lowest IR version those
opsets and its types allow.

Tools stamp what they know rather than what a graph uses: onnxruntime's quantizer saves nine domains
(ai.onnx.ml 5, com.microsoft.nchwc, org.pytorch.aten, ...) no node uses, and an older runtime refuses the file
for them. An op behaves the same at every opset from the one where it last changed, so lowering the imports to
those versions changes nothing a node computes; the outputs of both forms are compared to be sure, and the file
is kept as it was if they differ.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

# Domains whose op schemas the onnx package knows (others keep the version the file gives them).
SCHEMA_DOMAINS = ("", "ai.onnx.ml")
# The IR version a tensor type first appeared in: a file using it cannot go lower.
TYPE_IR_VERSION = {17: 9, 18: 9, 19: 9, 20: 9, 21: 10, 22: 10, 23: 11}
NON_INPUT_INITIALIZERS_IR = 4


def portable_bytes(data: bytes, model_input: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """`data` with its opset imports and IR version lowered as the module docstring says, when that leaves its
    outputs unchanged on a fixed-seed input (else `data` as it was); and its facts (artifact_facts)."""
    import onnx

    model = onnx.load_model_from_string(data)
    trimmed = trimmed_imports(model)
    if trimmed is not None:
        candidate = trimmed.SerializeToString()
        if _same_outputs(data, candidate, model_input):
            return candidate, artifact_facts(trimmed)
    return data, artifact_facts(model)


def artifact_facts(model: onnx.ModelProto) -> dict[str, Any]:
    """What a board's runtime must load of an artifact, and its size in nodes: ir_version, opsets, onnx_nodes."""
    return {"ir_version": int(model.ir_version), "onnx_nodes": len(model.graph.node),
            "opsets": {entry.domain or "": int(entry.version) for entry in model.opset_import}}


def trimmed_imports(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """A copy of `model` importing only what its nodes use at the versions they need; None if nothing changes."""
    import onnx
    from onnx import defs, helper

    current = {entry.domain or "": int(entry.version) for entry in model.opset_import}
    used: dict[str, set[str]] = {}
    for node in [*model.graph.node, *(n for function in model.functions for n in function.node)]:
        used.setdefault(node.domain or "", set()).add(node.op_type)
    needed: dict[str, int] = {}
    for domain, ops in used.items():
        version = current.get(domain, 1)
        if domain in SCHEMA_DOMAINS:
            with contextlib.suppress(defs.SchemaError):  # an op the onnx package does not know: keep the version
                version = max(defs.get_schema(op, version, domain).since_version for op in ops)
        needed[domain] = version
    ir_version = max(helper.find_min_ir_version_for([helper.make_opsetid(d, v) for d, v in needed.items()],
                                                   ignore_unknown=True),
                     NON_INPUT_INITIALIZERS_IR, 8 if len(model.functions) else 0, _types_ir_version(model))
    ir_version = min(ir_version, model.ir_version)
    if needed == current and ir_version == model.ir_version:
        return None
    trimmed = onnx.ModelProto()
    trimmed.CopyFrom(model)
    del trimmed.opset_import[:]
    trimmed.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(needed.items()))
    trimmed.ir_version = ir_version
    return trimmed


def _types_ir_version(model: onnx.ModelProto) -> int:
    """The lowest IR version the tensor types of the model's initializers and values allow."""
    elem_types = {init.data_type for init in model.graph.initializer}
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        elem_types.add(value.type.tensor_type.elem_type)
    return max((TYPE_IR_VERSION.get(elem_type, 0) for elem_type in elem_types), default=0)


def _same_outputs(original: bytes, candidate: bytes, model_input: dict[str, Any]) -> bool:
    """Both forms give the same outputs on one fixed-seed input (onnxruntime on this machine's CPU)."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    dtype = np.dtype(model_input["dtype"])
    shape = model_input["shape"]
    values = rng.integers(0, 256, shape) if dtype.kind in "iu" else rng.standard_normal(shape)
    feed = {model_input["name"]: values.astype(dtype)}
    try:
        before = ort.InferenceSession(original, providers=["CPUExecutionProvider"]).run(None, feed)
        after = ort.InferenceSession(candidate, providers=["CPUExecutionProvider"]).run(None, feed)
    except Exception:  # a form onnxruntime cannot run here is not one to keep
        return False
    return all(a.shape == b.shape and np.array_equal(a, b, equal_nan=True) for a, b in zip(before, after, strict=True))
