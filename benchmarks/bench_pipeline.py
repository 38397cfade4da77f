"""Detection pipeline: tiny-YOLOv2 at 416 px on a 640x480 MJPEG clip, pipelined (a thread per stage) vs sequential.

onnxruntime on the CPU with one intra-op thread, OpenCV decoding, drawing and encoding, the same source and the same
stage functions in both modes (agent/pipeline/). Two models: tiny-YOLOv2 with random weights (seed 0) and the
same with half of every layer's channels removed by the prune build step (torch-pruning, L1 magnitude, ratio 0.5,
per layer, the head kept). Random weights score every (box, class) pair 0.025 +- 0.001 (about 0.5 x 1/20); the
threshold 0.0259 keeps the top 1 % or so, a few hundred candidates per frame for NMS, so every frame has boxes
to draw. Figures per
model: pipelined and sequential FPS, their ratio (target >= 1.25x on 2 cores), the bound on that ratio (the sum
of the stage means over the largest: what perfect overlap would give with a core per stage), each stage's share
of the sequential frame time, and the pipelined run's CPU use.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks import cpu_session
from tests.support.clips import write_clip

INPUT_SIZE = 416
CLIP_SIZE = (640, 480)
CLIP_FRAMES = 150
CONF_THRESHOLD = 0.0259
PRUNE = {"method": "l1", "ratio": 0.5, "scope": "per_layer"}


def detectors() -> Iterator[tuple[str, bytes, list[list[float]]]]:
    """(name, ONNX bytes, anchors) of tiny-YOLOv2 as built, then pruned by the prune step's own pruner."""
    import torch

    from orchestrator.builder.export import export_bytes
    from orchestrator.builder.prune import make_pruner, prune_once
    from orchestrator.models import MODELS

    torch.manual_seed(0)
    model = MODELS.get("tiny_yolov2")(num_classes=20, in_channels=3).eval()
    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    anchors = [list(anchor) for anchor in model.anchors]
    yield "tiny-YOLOv2", export_bytes(model, example), anchors
    context = SimpleNamespace(example_input=lambda: example)  # all the pruner asks of a build context
    prune_once(context, make_pruner(context, model, PRUNE), model, PRUNE["method"])
    yield "tiny-YOLOv2 pruned 0.5", export_bytes(model.eval(), example), anchors


def run() -> Iterator[tuple[str, float, str]]:
    from agent.spec import PipelineSpec

    with tempfile.TemporaryDirectory(prefix="orch-bench-pipeline-") as folder:
        clip = write_clip(Path(folder) / "clip.avi", CLIP_FRAMES, size=CLIP_SIZE)
        video = hashlib.sha256(clip.read_bytes()).hexdigest()
        clip.rename(Path(folder) / f"{video}.video")
        for name, data, anchors in detectors():
            spec = PipelineSpec(
                source={"kind": "video", "sha256": video},
                preprocess={"size": [INPUT_SIZE, INPUT_SIZE], "resize": "letterbox"},
                detection={"decoder": "yolov2_region", "anchors": anchors, "conf_threshold": CONF_THRESHOLD,
                           "iou_threshold": 0.45, "max_detections": 100},
                labels=[f"class {index}" for index in range(20)])
            yield from compare(name, cpu_session(data), spec, folder)


def compare(name: str, detector: Any, spec: Any, folder: str) -> Iterator[tuple[str, float, str]]:
    """Both modes of `spec` on the same source and session, after a short run that warms every stage."""
    from agent.pipeline.run import run_pipeline

    run_pipeline(detector, replace(spec, frames=10), folder)
    sequential = run_pipeline(detector, replace(spec, mode="sequential"), folder)
    pipelined = run_pipeline(detector, replace(spec, mode="pipelined"), folder)
    if sequential["detections_digest"] != pipelined["detections_digest"]:
        raise RuntimeError(f"{name}: the two modes found different detections")
    means = [stage["mean_ms"] for stage in sequential["stages"]]
    yield f"{name}: pipelined FPS", pipelined["fps"], "frames/s"
    yield f"{name}: sequential FPS", sequential["fps"], "frames/s"
    yield f"{name}: pipelined / sequential (target >= 1.25 on 2 cores)", pipelined["fps"] / sequential["fps"], "x"
    yield f"{name}: bound, sum / max of the stage means", sum(means) / max(means), "x"
    for stage in sequential["stages"]:
        yield f"{name}: {stage['stage']} share ({stage['mean_ms']:.1f} ms mean)", 100 * stage["share"], "%"
    yield f"{name}: detections per frame", sequential["detections_count"] / sequential["frames"], "count"
    yield f"{name}: CPU sequential", sequential["cpu_percent"], "% of one core"
    yield f"{name}: CPU pipelined", pipelined["cpu_percent"], "% of one core"
