"""What a runtime loads (agent/runtime.py asks it), what a model needs of it (orchestrator/runtimes.py), and
artifacts that import only what they use (orchestrator/builder/portable.py)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from agent import runtime as agent_runtime
from orchestrator.builder.portable import portable_bytes, trimmed_imports
from orchestrator.errors import UserError
from orchestrator.fleet.check import judge
from orchestrator.fleet.inventory import BoardSpec
from orchestrator.runtimes import KNOWN_LIMITS, MIN_ONNXRUNTIME, Runtime, oldest, refusal, requirements


def test_the_agents_hand_written_probe_is_a_valid_onnx_model():
    data = agent_runtime.probe_model(7, {"": 13, "ai.onnx.ml": 2})
    model = onnx.load_model_from_string(data)
    onnx.checker.check_model(model)
    assert model.ir_version == 7 and {(o.domain, o.version) for o in model.opset_import} == {("", 13),
                                                                                           ("ai.onnx.ml", 2)}
    assert [n.op_type for n in model.graph.node] == ["Identity"]
    out = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": np.ones(1, np.float32)})
    assert out[0].tolist() == [1.0]


def test_the_limits_found_are_the_last_versions_that_load():
    found = agent_runtime.limits(ort)
    opset, ir_version = found["max_opsets"][""], found["max_ir_version"]
    assert opset >= 21 and ir_version >= 10  # this workstation's runtime is newer than any board's
    assert agent_runtime._loads(ort, agent_runtime.probe_model(agent_runtime.PROBE_IR, {"": opset}))
    assert not agent_runtime._loads(ort, agent_runtime.probe_model(agent_runtime.PROBE_IR, {"": opset + 1}))
    assert not agent_runtime._loads(ort, agent_runtime.probe_model(ir_version + 1, {"": 7}))
    assert "com.microsoft.nchwc" not in found["max_opsets"]  # internal layout domains are never a target


def _model(opsets: dict[str, int], ir_version: int = 10) -> onnx.ModelProto:
    """y = Relu(x) over float[1, 4], importing `opsets`."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                             ir_version=ir_version)


def test_portable_artifacts_import_only_what_their_nodes_use_at_the_version_they_need():
    stamped = _model({"": 21, "ai.onnx.ml": 5, "com.microsoft.nchwc": 1, "org.pytorch.aten": 1})
    trimmed = trimmed_imports(stamped)
    assert trimmed is not None
    assert {(o.domain, o.version) for o in trimmed.opset_import} == {("", 14)}  # Relu last changed at 14
    assert trimmed.ir_version == 7  # what opset 14 needs
    data, facts = portable_bytes(stamped.SerializeToString(), {"name": "x", "shape": [1, 4], "dtype": "float32"})
    assert facts == {"ir_version": 7, "onnx_nodes": 1, "opsets": {"": 14}}
    assert onnx.load_model_from_string(data).opset_import[0].version == 14
    assert trimmed_imports(_model({"": 14}, ir_version=7)) is None  # nothing to change


def test_a_runtime_refuses_what_it_cannot_load_and_says_why():
    old = Runtime("1.16.3", *KNOWN_LIMITS["1.16"])
    needs = requirements(_model({"": 21, "ai.onnx.ml": 5}))
    assert refusal(needs, old, ["CPUExecutionProvider"], "jetson") == (
        "refused before sending: jetson onnxruntime 1.16.3 supports IR <= 9, ai.onnx <= 19, ai.onnx.ml <= 3, "
        "com.microsoft <= 1; this variant needs IR 10, ai.onnx 21, ai.onnx.ml 5")
    assert refusal(requirements(_model({"": 14}, ir_version=7)), old, ["CPUExecutionProvider"], "jetson") is None
    newer = Runtime("1.18.1", *KNOWN_LIMITS["1.18"])
    both = oldest([newer, old])
    assert both is not None and both.version == "1.16.3" and both.max_opsets[""] == 19
    with pytest.raises(UserError, match="orch knows the limits of onnxruntime 1.16"):
        Runtime.from_version("1.9")


def test_devices_check_flags_an_older_runtime_and_says_what_works_there():
    board = BoardSpec(name="nano", host="10.0.0.9")
    info = {"python": "3.8.10", "numpy": "1.19.5", "onnxruntime": "1.14.1", "max_ir_version": 8,
            "max_opsets": {"": 18, "ai.onnx.ml": 3}, "providers_available": ["CPUExecutionProvider"]}
    problems = [problem.what for problem in judge(board, info)]
    assert any(p.startswith(f"onnxruntime 1.14.1 is older than the oldest orch supports ({MIN_ONNXRUNTIME}); "
                            "what works there: variants it loads (onnxruntime 1.14.1 supports IR <= 8, "
                            "ai.onnx <= 18") and "target_runtime: auto" in p for p in problems), problems
    assert any(p.startswith("numpy 1.19.5 is older than the oldest orch supports") for p in problems), problems
    assert not judge(board, dict(info, onnxruntime="1.16.3", numpy="1.26.4"))
