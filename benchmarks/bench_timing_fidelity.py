"""Timing fidelity: the agent's p50 divided by the p50 of a bare `sess.run` loop, same process setup.

Both run in a fresh process with the same session options, input and warm-up; the
bare loop is nothing but perf_counter_ns around sess.run. Rounds alternate the two
so that drift of the machine hits both. Target: a ratio in [0.98, 1.02] for a
~0.1 ms and a ~10 ms model.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agent.runner import run_in_subprocess
from agent.spec import Gate, InputSpec, JobSpec
from orchestrator.artifacts import ArtifactStore

ROUNDS = 5

BARE_LOOP = """
import json, sys, time
import numpy as np, onnxruntime as ort
path, shape, warmup, iterations = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
feed = {"input": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
for _ in range(warmup):
    session.run(None, feed)
samples = []
for _ in range(iterations):
    t0 = time.perf_counter_ns()
    session.run(None, feed)
    samples.append(time.perf_counter_ns() - t0)
samples.sort()
print(samples[max(1, -(-len(samples) // 2)) - 1] / 1e6)
"""


def conv_model(channels: int, size: int, layers: int) -> tuple[bytes, list[int]]:
    """A chain of 3x3 convolutions + ReLU on a (1, channels, size, size) input."""
    rng = np.random.default_rng(0)
    nodes, inits, last = [], [], "input"
    for index in range(layers):
        weight = numpy_helper.from_array(
            (rng.standard_normal((channels, channels, 3, 3)) * 0.05).astype(np.float32), f"w{index}")
        inits.append(weight)
        nodes.append(helper.make_node("Conv", [last, f"w{index}"], [f"c{index}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{index}"], [f"r{index}"]))
        last = f"r{index}"
    shape = [1, channels, size, size]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(last, TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString(), shape


def agent_p50(store: ArtifactStore, sha: str, shape: list[int], iterations: int) -> float:
    spec = JobSpec(artifact_sha256=sha, inputs=[InputSpec("input", shape)], warmup=Gate(iterations // 10, 0.0),
                   measure=Gate(iterations, 0.0, 600.0), max_cv=None)
    result = json.loads(run_in_subprocess(spec.to_json(), str(store.root)))
    return float(result["timing"]["p50_ms"])


def bare_p50(path: Path, shape: list[int], iterations: int) -> float:
    done = subprocess.run([sys.executable, "-c", BARE_LOOP, str(path), json.dumps(shape), str(iterations // 10),
                           str(iterations)], capture_output=True, text=True, check=True)
    return float(done.stdout)


def run() -> Iterator[tuple[str, float, str]]:
    with tempfile.TemporaryDirectory(prefix="orch-fidelity-") as tmp:
        store = ArtifactStore(tmp)
        for label, (channels, size, layers), iterations in (
                ("~0.1 ms model", (32, 16, 2), 3000), ("~10 ms model", (64, 56, 4), 300)):
            data, shape = conv_model(channels, size, layers)
            onnx.checker.check_model(onnx.load_from_string(data))
            sha = store.put(data, ".onnx")
            ratios, agent_ms, bare_ms = [], [], []
            for _ in range(ROUNDS):
                agent_ms.append(agent_p50(store, sha, shape, iterations))
                bare_ms.append(bare_p50(store.path(sha, ".onnx"), shape, iterations))
                ratios.append(agent_ms[-1] / bare_ms[-1])
            yield f"{label}: agent p50", statistics.median(agent_ms), "ms"
            yield f"{label}: bare sess.run loop p50", statistics.median(bare_ms), "ms"
            yield f"{label}: agent / bare p50 (median of {ROUNDS} alternating rounds, target 0.98-1.02)", \
                statistics.median(ratios), "ratio"
