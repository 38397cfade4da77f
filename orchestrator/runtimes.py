"""Board runtimes: which onnxruntime can load which ONNX file, and what building for a runtime means.

A `Runtime` is what a board's agent reports of its onnxruntime (agent/runtime.py): its version, the newest IR
version and opset per domain it loads, and its kernels. `Requirements` are what a model needs: its IR version,
its opset imports, and for each node the kernel it needs (domain, op, the version its opset gives it, and the
types bound to its type constraints). `refusal` compares the two before anything is sent, so a variant a board
cannot load is never shipped to it; `oldest` is what `target_runtime: auto` builds for.

A runtime named only by its version (`target_runtime: "1.16"`) is known from KNOWN_LIMITS, which were found by
probing each release with agent/runtime.py; its kernels are then unknown and only the pre-flight checks them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.errors import UserError

if TYPE_CHECKING:
    import onnx

# onnxruntime release -> (newest IR version, newest opset per domain) it loads, probed with agent/runtime.py.
KNOWN_LIMITS: dict[str, tuple[int, dict[str, int]]] = {
    "1.16": (9, {"": 19, "ai.onnx.ml": 3, "com.microsoft": 1}),
    "1.17": (9, {"": 20, "ai.onnx.ml": 4, "com.microsoft": 1}),
    "1.18": (10, {"": 21, "ai.onnx.ml": 5, "com.microsoft": 1}),
    "1.20": (10, {"": 21, "ai.onnx.ml": 5, "com.microsoft": 1}),
}
# The oldest runtime orch runs on boards (tested in CI) and the numpy it needs; docs/fleet.md says so too.
MIN_ONNXRUNTIME = "1.16"
MIN_NUMPY = "1.24"
DOMAIN_NAMES = {"": "ai.onnx"}

Kernel = tuple[str, str, int, int, str, dict[str, list[str]]]


def version_tuple(version: str) -> tuple[int, ...]:
    """(1, 16, 3) from "1.16.3" (a suffix such as "+cu118" ignored)."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


@dataclass(frozen=True)
class Runtime:
    """An onnxruntime as a board has it (see the module docstring); kernels None when only its version is known."""

    version: str
    max_ir_version: int
    max_opsets: dict[str, int]
    kernels: tuple[Kernel, ...] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> Runtime | None:
        """The runtime an agent's `info` describes; None when it does not say (an agent older than this orch)."""
        if not info.get("onnxruntime") or "max_opsets" not in info:
            return None
        kernels = tuple((k[0], k[1], int(k[2]), int(k[3]), k[4], k[5]) for k in info.get("kernels") or ())
        return cls(str(info["onnxruntime"]), int(info["max_ir_version"]), dict(info["max_opsets"]), kernels or None)

    @classmethod
    def from_version(cls, version: str) -> Runtime:
        """A runtime known by its release ("1.16" or "1.16.3"); a release orch has not probed is a UserError."""
        release = ".".join(str(part) for part in version_tuple(version)[:2])
        if release not in KNOWN_LIMITS:
            raise UserError(f"onnxruntime {version}: orch knows the limits of onnxruntime {', '.join(KNOWN_LIMITS)}; "
                            "use `auto` to build for the sweep's boards")
        ir_version, opsets = KNOWN_LIMITS[release]
        return cls(version, ir_version, dict(opsets))

    def key(self) -> dict[str, Any]:
        """What a build for this runtime depends on (part of the build-cache key of the steps it shapes)."""
        kernels = None
        if self.kernels is not None:
            listed = sorted(json.dumps(list(kernel), sort_keys=True) for kernel in self.kernels)
            kernels = hashlib.sha256("\n".join(listed).encode()).hexdigest()
        return {"onnxruntime": self.version, "max_ir_version": self.max_ir_version,
                "max_opsets": dict(sorted(self.max_opsets.items())), "kernels": kernels}

    def describe(self) -> str:
        """`onnxruntime 1.16.3 supports IR <= 9, ai.onnx <= 19, ai.onnx.ml <= 3, com.microsoft <= 1`."""
        opsets = ", ".join(f"{DOMAIN_NAMES.get(d, d)} <= {v}" for d, v in sorted(self.max_opsets.items()))
        return f"onnxruntime {self.version} supports IR <= {self.max_ir_version}, {opsets}"


def oldest(runtimes: list[Runtime]) -> Runtime | None:
    """What every one of these runtimes loads: the lowest limits of all, the kernels of the oldest release."""
    if not runtimes:
        return None
    first = min(runtimes, key=lambda r: version_tuple(r.version))
    domains = set.intersection(*(set(r.max_opsets) for r in runtimes))
    return Runtime(first.version, min(r.max_ir_version for r in runtimes),
                   {d: min(r.max_opsets[d] for r in runtimes) for d in domains}, first.kernels)


@dataclass(frozen=True)
class NodeNeed:
    """The kernel one node needs: its op, the version its opset gives it, and its types by constraint."""

    domain: str
    op_type: str
    name: str
    version: int
    types: dict[str, str]

    def describe(self) -> str:
        bound = ", ".join(f"{c}={t.removeprefix('tensor(').removesuffix(')')}" for c, t in sorted(self.types.items()))
        return f"{self.op_type}({self.version})" + (f" with {bound}" if bound else "")


@dataclass(frozen=True)
class Requirements:
    """What a model needs of a runtime (see the module docstring)."""

    ir_version: int
    opsets: dict[str, int]
    nodes: tuple[NodeNeed, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"ir_version": self.ir_version, "opsets": self.opsets}


def requirements(model: onnx.ModelProto) -> Requirements:
    """What `model` needs (types found by onnx's shape inference and onnxruntime's own op schemas)."""
    inferred = _inferred(model)
    types = {v.name: _type_string(v.type) for v in [*inferred.graph.input, *inferred.graph.output,
                                                     *inferred.graph.value_info]}
    types.update({init.name: _elem_string(init.data_type) for init in inferred.graph.initializer})
    opsets = {entry.domain or "": int(entry.version) for entry in model.opset_import}
    schemas = _schemas()
    nodes = []
    for node in inferred.graph.node:
        domain = node.domain or ""
        schema = _schema_at(schemas, domain, node.op_type, opsets.get(domain, 1))
        version = schema.since_version if schema is not None else opsets.get(domain, 1)
        bound: dict[str, str] = {}
        if schema is not None:
            for formals, actual in ((schema.inputs, node.input), (schema.outputs, node.output)):
                for index, name in enumerate(actual):
                    formal = formals[min(index, len(formals) - 1)] if formals else None
                    if formal is not None and name and types.get(name) and formal.typeStr in _constraints(schema):
                        bound.setdefault(formal.typeStr, types[name])
        nodes.append(NodeNeed(domain, node.op_type, node.name, version, bound))
    return Requirements(int(model.ir_version), opsets, tuple(nodes))


def refusal(needs: Requirements, runtime: Runtime, providers: list[str], board: str) -> str | None:
    """Why `runtime` cannot load a model with these needs on `providers` (one line), or None when it can."""
    wants = []
    if needs.ir_version > runtime.max_ir_version:
        wants.append(f"IR {needs.ir_version}")
    for domain, version in sorted(needs.opsets.items()):
        if version > runtime.max_opsets.get(domain, 0):
            wants.append(f"{DOMAIN_NAMES.get(domain, domain)} {version}")
    if not wants:
        wants += [f"{op} (no kernel)" for op in sorted({need.describe()
                                                         for need in missing_kernels(needs, runtime, providers)})]
    if not wants:
        return None
    return f"refused before sending: {board} {runtime.describe()}; this variant needs {', '.join(wants)}"


def missing_kernels(needs: Requirements, runtime: Runtime, providers: list[str]) -> list[NodeNeed]:
    """The nodes `runtime` has no kernel for on `providers` (none when its kernels are unknown)."""
    if runtime.kernels is None:
        return []
    return [need for need in needs.nodes if not _has_kernel(runtime.kernels, need, providers)]


# -- internals ------------------------------------------------------------------------------------------------

def _inferred(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph onnx cannot follow is still described by what it declares
        return model


# onnx.proto TensorProto.DataType -> the name onnxruntime's type constraints use inside tensor(...).
ELEMENT_TYPES = {1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
                 9: "bool", 10: "float16", 11: "double", 12: "uint32", 13: "uint64", 16: "bfloat16",
                 17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4",
                 22: "int4"}


def _elem_string(elem_type: int) -> str:
    return f"tensor({ELEMENT_TYPES[elem_type]})" if elem_type in ELEMENT_TYPES else ""


def _type_string(value_type: Any) -> str:
    return _elem_string(value_type.tensor_type.elem_type) if value_type.HasField("tensor_type") else ""


_SCHEMAS: dict[tuple[str, str], list[Any]] | None = None


def _schemas() -> dict[tuple[str, str], list[Any]]:
    """onnxruntime's op schemas (standard and contrib) by (domain, op), newest version first."""
    global _SCHEMAS
    if _SCHEMAS is None:
        from onnxruntime.capi import _pybind_state as state

        found: dict[tuple[str, str], list[Any]] = {}
        for schema in state.get_all_operator_schema():
            found.setdefault((schema.domain, schema.name), []).append(schema)
        _SCHEMAS = {key: sorted(value, key=lambda s: -s.since_version) for key, value in found.items()}
    return _SCHEMAS


def _schema_at(schemas: dict[tuple[str, str], list[Any]], domain: str, op: str, opset: int) -> Any:
    """The schema an op has at a domain opset: its newest version not after the opset."""
    return next((s for s in schemas.get((domain, op), []) if s.since_version <= opset), None)


def _constraints(schema: Any) -> set[str]:
    return {constraint.type_param_str for constraint in schema.type_constraints}


def _has_kernel(kernels: tuple[Kernel, ...], need: NodeNeed, providers: list[str]) -> bool:
    """A kernel of one of the providers (or the CPU's, where onnxruntime falls back) takes this node."""
    usable = {*providers, "CPUExecutionProvider"}
    candidates = [k for k in kernels if k[0] == need.domain and k[1] == need.op_type and k[4] in usable]
    if not candidates:
        # No kernel at all: onnxruntime may still run it by expanding the op's function body; only a
        # kernel that exists and refuses the types is a certain failure.
        return not any(k[0] == need.domain and k[1] == need.op_type for k in kernels) and need.domain == ""
    return any(low <= need.version <= high and all(_admits(allowed, need.types[c], provider)
                                                   for c, allowed in constraints.items() if c in need.types)
               for _, _, low, high, provider, constraints in candidates)


def _admits(allowed: list[str], bound: str, provider: str) -> bool:
    """A kernel's type constraint takes the bound type; on the CPU, onnxruntime runs a float16 node without a
    float16 kernel in float32 (its InsertCastTransformer), so a float kernel takes float16 there."""
    return bound in allowed or (provider == "CPUExecutionProvider" and bound == "tensor(float16)"
                                and "tensor(float)" in allowed)
