"""What a pipeline run measured, frame by frame (Work, FrameOut), and its summary: a result's `pipeline` part.

Fields of the summary (Figures.summary):
  mode              sequential or pipelined
  frames            frames processed (read to encoded)
  frames_dropped    a live source's frames that found the first queue full (pipelined; file sources never drop)
  source            {kind, width, height (of the first frame), decoder: opencv or pillow}
  fps, wall_s       frames / wall_s; wall_s from the first frame's read start to the last frame's encode end
  latency           {p50_ms, p90_ms, mean_ms, max_ms} of each frame's read start to encode end (nearest rank)
  stages            per stage, in order: {stage, p50_ms, p90_ms, mean_ms, share}; share = its mean / the sum of
                    the stages' means
  queued            {p50_ms, mean_ms} of each frame's time between its stages (in queues, or waiting for a thread)
  cpu_percent       the process's CPU time (user + system) over the run's wall time x 100: 100 is one core busy
  frame_ms          per frame: [read, preprocess, infer, postprocess, draw, encode, queued, latency] in ms; the
                    six stages and queued add up to latency
  detections_count  detections over every frame
  detections_digest sha256 of every frame's rows [frame, label, x1, y1, x2, y2, score] rounded to 3 decimals,
                    as little-endian float64, in frame order: equal digests, equal detections
  detections        those rows (source pixels) when the spec keeps detections, else None
  saved_frames      the first save_frames annotated frames: JPEG files as base64 text
"""

from __future__ import annotations

import base64
import hashlib
from array import array
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from agent.bench import nearest_rank
from agent.pipeline.sources import FrameSource
from agent.pipeline.stages import STAGES
from agent.spec import PipelineSpec

COLUMNS = len(STAGES) + 2  # frame_ms: the stages, queued, latency


@dataclass
class Work:
    """One frame on its way through the stages, with each stage's start and end stamps (perf_counter_ns). Each
    stage fills in its product (None until then; `pixels` stays None when the source has ended)."""

    index: int = -1
    pixels: Any = None  # np.ndarray: RGB HWC uint8 (read)
    model_input: Any = None  # np.ndarray, and placement: Placement (preprocess)
    placement: Any = None
    outputs: Any = None  # List[np.ndarray] (infer)
    detections: Any = None  # np.ndarray (k, 6) (postprocess)
    annotated: Any = None  # np.ndarray RGB HWC uint8 (draw)
    jpeg: bytes = b""
    fps: float = 0.0
    stamps_ns: List[int] = field(default_factory=lambda: [0] * (2 * len(STAGES)))


@dataclass
class FrameOut:
    """A finished frame, as on_frame receives it."""

    index: int  # frame number from the source, 0-based (counted on across a looping source's restarts)
    jpeg: bytes  # the annotated, encoded frame
    detections: np.ndarray  # (k, 6) rows x1, y1, x2, y2, score, label in source pixels, best first
    stages_ms: Dict[str, float]
    latency_ms: float  # source read start -> encode end
    fps: float  # the running FPS drawn on the frame


class Figures:
    """The figures of one run, collected frame by frame (compactly: a live stream may run for hours)."""

    def __init__(self, spec: PipelineSpec):
        self.frames = 0
        self._frame_ms = array("d")
        self._digest = hashlib.sha256()
        self._detections_count = 0
        self._kept: Optional[List[List[float]]] = [] if spec.keep_detections else None
        self._save_frames = spec.save_frames
        self._saved: List[str] = []
        self._first_start_ns: Optional[int] = None
        self._last_end_ns = 0
        self._size: Optional[Tuple[int, int]] = None

    def add(self, work: Work) -> FrameOut:
        """Record a finished frame; what on_frame receives for it."""
        stamps = work.stamps_ns
        stage_ns = [stamps[2 * i + 1] - stamps[2 * i] for i in range(len(STAGES))]
        queued_ns = sum(stamps[2 * i + 2] - stamps[2 * i + 1] for i in range(len(STAGES) - 1))
        latency_ns = stamps[-1] - stamps[0]
        self._frame_ms.extend([value / 1e6 for value in stage_ns + [queued_ns, latency_ns]])
        if self._first_start_ns is None:
            self._first_start_ns = stamps[0]
            self._size = (int(work.pixels.shape[1]), int(work.pixels.shape[0]))
        self._last_end_ns = stamps[-1]
        self.frames += 1

        detections = work.detections
        rows = np.column_stack([np.full(len(detections), work.index), detections[:, 5], detections[:, :4],
                                detections[:, 4]])
        # Rounded to 3 decimals, -0.0 made 0.0 (+ 0.0), hashed as float64 bytes: one numpy call per frame, not a
        # formatted line per detection in the thread that collects the frames.
        rounded = np.ascontiguousarray(np.round(rows, 3) + 0.0, dtype="<f8")
        self._digest.update(rounded.tobytes())
        self._detections_count += len(rows)
        if self._kept is not None:
            self._kept.extend(rows.tolist())
        if len(self._saved) < self._save_frames:
            self._saved.append(base64.b64encode(work.jpeg).decode("ascii"))
        return FrameOut(work.index, work.jpeg, detections, dict(zip(STAGES, (ns / 1e6 for ns in stage_ns))),
                        latency_ns / 1e6, work.fps)

    def summary(self, mode: str, source: FrameSource, dropped: int, cpu_percent: float) -> Dict[str, Any]:
        """The result's `pipeline` figures (fields in the module docstring)."""
        table = np.frombuffer(self._frame_ms, dtype=np.float64).reshape(-1, COLUMNS)
        wall_s = (self._last_end_ns - self._first_start_ns) / 1e9 if self._first_start_ns is not None else 0.0
        spreads = [_spread(table[:, column].tolist()) for column in range(len(STAGES))]
        total_ms = sum(spread["mean_ms"] or 0.0 for spread in spreads)
        stages = [{"stage": stage, "p50_ms": spread["p50_ms"], "p90_ms": spread["p90_ms"], "mean_ms": spread["mean_ms"],
                   "share": (spread["mean_ms"] or 0.0) / total_ms if total_ms else None}
                  for stage, spread in zip(STAGES, spreads)]
        queued = _spread(table[:, -2].tolist())
        return {
            "mode": mode, "frames": self.frames, "frames_dropped": dropped,
            "source": {"kind": source.kind, "width": self._size[0] if self._size else None,
                       "height": self._size[1] if self._size else None, "decoder": source.decoder},
            "fps": self.frames / wall_s if wall_s > 0 else None, "wall_s": wall_s,
            "latency": _spread(table[:, -1].tolist()), "stages": stages,
            "queued": {"p50_ms": queued["p50_ms"], "mean_ms": queued["mean_ms"]},
            "cpu_percent": cpu_percent, "frame_ms": table.tolist(),
            "detections_count": self._detections_count, "detections_digest": self._digest.hexdigest(),
            "detections": self._kept, "saved_frames": self._saved,
        }


def _spread(values_ms: List[float]) -> Dict[str, Optional[float]]:
    """p50, p90 (nearest rank), mean and max of per-frame times; None for each when there is no frame."""
    if not values_ms:
        return {"p50_ms": None, "p90_ms": None, "mean_ms": None, "max_ms": None}
    ordered = sorted(values_ms)
    return {"p50_ms": nearest_rank(ordered, 50), "p90_ms": nearest_rank(ordered, 90),
            "mean_ms": sum(ordered) / len(ordered), "max_ms": ordered[-1]}
