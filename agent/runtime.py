"""What this board's onnxruntime can load: its version, providers, the newest ONNX IR version and opset per
domain it accepts, and its kernels (per provider, with their version ranges and type constraints).

The limits are found by asking the runtime itself: tiny models are written here and loaded, and the newest
version that loads is the limit. A runtime's schema list alone overstates them (it knows opsets it calls
"under development" and refuses to load), and the onnx package that could write those models is usually not on
a board, so they are encoded here directly in protobuf's wire format: a dozen fields of onnx.proto, nothing more
(no maintained library writes ONNX without the onnx package, which orch does not require on boards).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

# Domains the runtime uses internally for its own layout optimizations: never in a model orch sends.
INTERNAL_DOMAINS = ("com.ms.internal.nhwc", "com.microsoft.nchwc")
HIGHEST_PROBED = 64  # no IR version or opset is near this yet
PROBE_OPSET = 7      # an ai.onnx opset every supported runtime loads, for the IR and other-domain probes
PROBE_IR = 3


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: Any) -> bytes:
    """One protobuf field: an int (varint), or bytes/str (length-delimited)."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def probe_model(ir_version: int, opsets: Dict[str, int]) -> bytes:
    """An ONNX ModelProto: y = Identity(x), x and y float[1], with these opset imports (onnx.proto field numbers)."""
    tensor_type = _field(1, _field(1, 1) + _field(2, _field(1, _field(1, 1))))  # float, shape [1]
    value_x = _field(1, "x") + _field(2, tensor_type)
    value_y = _field(1, "y") + _field(2, tensor_type)
    node = _field(1, "x") + _field(2, "y") + _field(4, "Identity")
    graph = _field(1, node) + _field(2, "probe") + _field(11, value_x) + _field(12, value_y)
    imports = b"".join(_field(8, _field(1, domain) + _field(2, version)) for domain, version in opsets.items())
    return _field(1, ir_version) + imports + _field(7, graph)


def _loads(ort: Any, model: bytes) -> bool:
    try:
        ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        return True
    except Exception:  # onnxruntime says "no" with several exception types: any of them is a no
        return False


def _highest(accepts: Any) -> int:
    """The highest version in 1..HIGHEST_PROBED that `accepts` (support is contiguous from 1); 0 if none."""
    low, high = 0, HIGHEST_PROBED
    while low < high:
        middle = (low + high + 1) // 2
        if accepts(middle):
            low = middle
        else:
            high = middle - 1
    return low


def limits(ort: Any) -> Dict[str, Any]:
    """The newest IR version and the newest opset per domain this onnxruntime loads."""
    from onnxruntime.capi import _pybind_state as state

    domains = sorted({schema.domain for schema in state.get_all_operator_schema()} - set(INTERNAL_DOMAINS))
    opsets = {}
    for domain in domains:
        if domain == "":
            opsets[""] = _highest(lambda v: _loads(ort, probe_model(PROBE_IR, {"": v})))
        else:
            opsets[domain] = _highest(lambda v, d=domain: _loads(ort, probe_model(PROBE_IR, {"": PROBE_OPSET, d: v})))
    ir_version = _highest(lambda v: _loads(ort, probe_model(v, {"": PROBE_OPSET})))
    return {"max_ir_version": ir_version, "max_opsets": opsets}


def kernels(ort: Any, providers: Optional[List[str]] = None) -> List[List[Any]]:
    """The kernels of the given providers (default: every available one) as
    [domain, op, first version, last version, provider, {type constraint: [types]}]."""
    from onnxruntime.capi import _pybind_state as state

    wanted = set(providers or ort.get_available_providers())
    found = []
    for kernel in state.get_all_opkernel_def():
        if kernel.provider in wanted:
            low, high = kernel.version_range
            found.append([kernel.domain, kernel.op_name, int(low), int(high), kernel.provider,
                          {name: sorted(types) for name, types in kernel.type_constraints.items()}])
    return found


def describe() -> Dict[str, Any]:
    """This board's runtime: onnxruntime version and providers, its load limits and its kernels."""
    import onnxruntime as ort

    found: Dict[str, Any] = {"onnxruntime": ort.__version__,
                             "providers_available": list(ort.get_available_providers())}
    found.update(limits(ort))
    found["kernels"] = kernels(ort)
    return found
