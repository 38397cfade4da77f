"""Pipeline jobs: a detector run as a whole pipeline on frames (agent/pipeline/), in a sweep or as a live stream.

A sweep's `benchmark.pipeline` adds, for every detector variant, one job per mode (sequential, pipelined) that
runs the frames of the recipe's source through read, pre-process, infer, post-process, draw and encode on the
board; `orch stream` runs the same pipeline without end and serves it. Both need the source where the board can
read it and the detector's settings, which live on its variants row (`variants.detector`) so a variant is found
by name long after the sweep that built it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agent.spec import DEFAULT_WARMUP, SOURCE_SUFFIXES, Gate, InputSpec, JobSpec, PipelineSpec
from orchestrator.artifacts import ArtifactStore, npz_bytes
from orchestrator.errors import DatasetError, UserError
from orchestrator.recipes.schema import CAMERA_PREFIX
from orchestrator.results.schema import Variant

# A stream or pipeline job warms its session up briefly: the frames themselves are the measurement.
PIPELINE_WARMUP = Gate(min_iters=5, min_s=0.2)
# The score a box needs to be drawn: what a live demo shows (Ultralytics' `predict` default), not the 0.001 that
# scoring average precision keeps. It also sets how much work NMS does per frame.
DEFAULT_CONFIDENCE = 0.25


@dataclass(frozen=True)
class Detector:
    """A detector variant as the results database knows it: its artifact and how to run it (variants.detector:
    input, preprocess, detection, class_map, labels)."""

    sha256: str
    name: str
    recipe_name: str
    settings: dict[str, Any]


def ship_source(store: ArtifactStore, source: str | Path) -> dict[str, Any]:
    """The pipeline source spec for `source`: camera:N or /dev/videoN is a camera on the board; an image folder
    becomes a FrameSet (.npz of the original files' bytes) and a video file is kept as it is, both put in the
    artifact store so they reach boards as artifacts do."""
    text = str(source)
    if text.startswith(CAMERA_PREFIX):
        index = text[len(CAMERA_PREFIX):]
        if not index.isdigit():
            raise UserError(f"{text}: a camera is camera:N (its index) or its /dev/videoN path")
        return {"kind": "camera", "device": int(index)}
    if text.startswith("/dev/"):
        return {"kind": "camera", "device": text}
    path = Path(text)
    if path.is_dir():
        from agent.pipeline.sources import pack_images
        from orchestrator.datasets.image_folder import find_images

        try:
            images = find_images(str(path))[0]
        except DatasetError as exc:
            raise UserError(str(exc)) from None
        if not images:
            raise UserError(f"{path}: no images (.jpg, .jpeg, .png, .bmp) in this folder")
        return {"kind": "images", "sha256": store.put(npz_bytes(**pack_images([str(p) for p in images])), ".npz")}
    if path.is_file():
        return {"kind": "video", "sha256": store.put(path.read_bytes(), SOURCE_SUFFIXES["video"])}
    raise UserError(f"{path}: not an image folder, a video file, camera:N or /dev/videoN")


def source_files(source: dict[str, Any]) -> list[str]:
    """The artifact store files a board needs for this source (none for a camera)."""
    suffix = SOURCE_SUFFIXES.get(str(source.get("kind")))
    return [f"{source['sha256']}{suffix}"] if suffix else []


def find_detector(engine: Engine, variant: str, recipe: str | None = None) -> Detector:
    """The detector variant named `variant` (its name, or a prefix of its sha256 of at least 6 characters) in the
    results database, from recipe `recipe` when given; one-line UserError when there is none, more than one, or it
    is not a detector."""
    query = select(Variant).where(Variant.build_status.is_(None) | (Variant.build_status == "ok"))
    if recipe is not None:
        query = query.where(Variant.recipe_name == recipe)
    with Session(engine) as session:
        by_name = list(session.scalars(query.where(Variant.name == variant)))
        found = by_name or (list(session.scalars(query.where(Variant.sha256.startswith(variant.lower()))))
                            if len(variant) >= 6 else [])
        rows = [(row.sha256, row.name, row.recipe_name, row.detector) for row in found]
    where = f" of recipe {recipe}" if recipe else ""
    if not rows:
        raise UserError(f"variant {variant!r}{where}: not in the results database (its name as `orch results` "
                        "shows it, or the start of its sha256)")
    if len(rows) > 1:
        choices = ", ".join(f"{name} ({recipe_name}, {sha256[:12]})" for sha256, name, recipe_name, _ in rows[:5])
        raise UserError(f"variant {variant!r}{where} is more than one variant: {choices}; give --recipe or a "
                        "sha256 prefix")
    sha256, name, recipe_name, settings = rows[0]
    if not settings:
        raise UserError(f"variant {name} ({recipe_name}) is not a detector: only a detector's variants "
                        "(model.detection, on detection data) run as a pipeline")
    return Detector(sha256, name, recipe_name, dict(settings))


def pipeline_spec(settings: dict[str, Any], source: dict[str, Any], mode: str = "pipelined",
                  frames: int | None = None, queue_size: int = 4, save_frames: int = 0, loop: bool = False,
                  keep_detections: bool = False, confidence: float = DEFAULT_CONFIDENCE) -> PipelineSpec:
    """The agent's pipeline spec for a detector with these settings (variants.detector) on `source`, keeping the
    boxes that score above `confidence`."""
    detection = {**settings["detection"], "conf_threshold": confidence}
    return PipelineSpec(source=source, preprocess=settings["preprocess"], detection=detection,
                        labels=list(settings["labels"]), mode=mode, frames=frames, queue_size=queue_size,
                        save_frames=save_frames, keep_detections=keep_detections, loop=loop)


def pipeline_job_spec(detector: Detector, source: dict[str, Any], mode: str = "pipelined",
                      frames: int | None = None, queue_size: int = 4, save_frames: int = 0, loop: bool = False,
                      threads: int = 1, keep_detections: bool = False,
                      confidence: float = DEFAULT_CONFIDENCE) -> JobSpec:
    """A stand-alone pipeline job spec (`orch stream`): the detector on `source`, CPU, `threads` intra-op threads,
    a short warm-up."""
    model_input = detector.settings["input"]
    return JobSpec(artifact_sha256=detector.sha256,
                   inputs=[InputSpec(model_input["name"], list(model_input["shape"]), model_input["dtype"])],
                   intra_op_threads=threads, warmup=replace(PIPELINE_WARMUP if loop else DEFAULT_WARMUP),
                   pipeline=pipeline_spec(detector.settings, source, mode, frames, queue_size, save_frames, loop,
                                          keep_detections, confidence))


def save_frames(result: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Write the annotated frames a pipeline result carries (base64 JPEG) to `folder` as frame-NNNNNN.jpg, and
    return the result with the frames replaced by the folder's path (`pipeline.frames_dir`)."""
    pipeline = result.get("pipeline")
    if not pipeline or not pipeline.get("saved_frames"):
        return result
    folder.mkdir(parents=True, exist_ok=True)
    for index, encoded in enumerate(pipeline["saved_frames"]):
        (folder / f"frame-{index:06d}.jpg").write_bytes(base64.b64decode(encoded))
    kept = {key: value for key, value in pipeline.items() if key != "saved_frames"}
    return {**result, "pipeline": {**kept, "frames_dir": str(folder.resolve())}}
