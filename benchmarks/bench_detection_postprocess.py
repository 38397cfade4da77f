"""Detection post-processing cost: tiny-YOLOv2 at 416 px, numpy decode + NMS on the board side vs NMS in the graph.

onnxruntime on the CPU, one intra-op thread, batch of one. The model has random weights (seed 0): every one of its
13 x 13 x 5 boxes scores about 0.5 x 1/20 in every class, so at darknet's `valid` threshold (0.005) all 16900
(box, class) pairs are NMS candidates, heavily overlapping: the hard case for post-processing (a trained model has
far fewer). Figures: p50 of the session alone, p50 of agent/detection's decode + per-class NMS (iou 0.45, at most 100
boxes) on its raw output, that as a share of inference (target < 5 %), and p50 of the same model with the graph_nms
step's decoding and NonMaxSuppression appended (one session, its outputs final), and of those appended nodes
alone.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from benchmarks import cpu_session

INPUT_SIZE = 416
CONF_THRESHOLD = 0.005  # darknet's `valid` (detector.c validate_detector)
IOU_THRESHOLD = 0.45
INFERENCE_RUNS = 60
DECODE_RUNS = 400


def p50_ms(work: Callable[[], Any], runs: int, warmup: int = 5) -> float:
    """Median wall time of `work` in milliseconds over `runs` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        work()
    samples = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        work()
        samples.append(time.perf_counter_ns() - started)
    return statistics.median(samples) / 1e6


def run() -> Iterator[tuple[str, float, str]]:
    import onnx
    import torch

    from agent.detection.decoders import DECODERS, DetectionSpec, decode
    from orchestrator.builder.export import export_bytes
    from orchestrator.builder.graph_nms import nms_spec, with_nms
    from orchestrator.models import MODELS

    torch.manual_seed(0)
    model = MODELS.get("tiny_yolov2")(num_classes=20, in_channels=3)
    data = export_bytes(model, torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE))
    spec = DetectionSpec("yolov2_region", anchors=[list(a) for a in model.anchors], conf_threshold=CONF_THRESHOLD,
                         iou_threshold=IOU_THRESHOLD, max_detections=100)
    feed = {"input": np.random.default_rng(0).random((1, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)}
    hw = (INPUT_SIZE, INPUT_SIZE)

    plain = cpu_session(data)
    raw = plain.run(None, feed)
    candidates = DECODERS.get("yolov2_region").decode({"output": raw[0]}, spec, hw)[0][1]
    inference_ms = p50_ms(lambda: plain.run(None, feed), INFERENCE_RUNS)
    decode_ms = p50_ms(lambda: decode(raw, ["output"], spec, hw), DECODE_RUNS)
    yield "candidates above conf 0.005 (box, class pairs)", len(candidates), "count"
    yield "inference p50 (raw output, 1 thread)", inference_ms, "ms"
    yield "numpy decode + NMS p50", decode_ms, "ms"
    yield "decode + NMS / inference (target < 5 %)", 100 * decode_ms / inference_ms, "%"

    appended = with_nms(onnx.load_from_string(data), spec, hw, list(raw[0].shape)).SerializeToString()
    in_graph = cpu_session(appended)
    graph_ms = p50_ms(lambda: in_graph.run(None, feed), INFERENCE_RUNS)
    kept = decode(in_graph.run(None, feed), [o.name for o in in_graph.get_outputs()], nms_spec(spec), hw)[0][1]
    alone = cpu_session(with_nms(identity(list(raw[0].shape)), spec, hw, list(raw[0].shape)).SerializeToString())
    alone_ms = p50_ms(lambda: alone.run(None, {"raw": raw[0]}), DECODE_RUNS)
    yield "graph_nms one session p50 (decode + NMS in the graph)", graph_ms, "ms"
    yield "graph_nms appended nodes alone p50 (a session of just them, fed the raw output)", alone_ms, "ms"
    yield "graph_nms detections kept", len(kept), "count"


def identity(shape: list[int]) -> Any:
    """A graph passing its input `raw` through as `output`: with graph_nms appended, the appended part alone."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["raw"], ["output"])], "raw",
                              [helper.make_tensor_value_info("raw", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
