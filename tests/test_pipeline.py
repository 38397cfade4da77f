"""The detection pipeline in a sweep: tiny-YOLOv2 on a generated clip, both modes, on `local` (OpenCV) and on a
real sshd board whose Python has no OpenCV (the Pillow path); every figure filed in the results database."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from orchestrator.artifacts import ArtifactStore
from orchestrator.fleet.devices import resolve_devices
from orchestrator.fleet.inventory import load_inventory
from orchestrator.lab.sweep import SweepObserver, SweepOptions, run_sweep
from orchestrator.recipes import load_recipe
from orchestrator.results.db import open_database
from tests.support import REPO, one_line_error, orch, recipe_refused, run_env
from tests.support.clips import write_clip
from tests.support.datasets import write_person_study_data
from tests.support.fleet import QUICK_RETRY
from tests.support.sshd import Fleet, sshd_available

# numpy, onnxruntime 1.18 and Pillow, no OpenCV (Makefile: make boards)
PILLOW_BOARD_PYTHON = REPO / ".venv-boards" / "onnxruntime-1.18" / "bin" / "python"
STAGES = ["read", "preprocess", "infer", "postprocess", "draw", "encode"]
CLIP_FRAMES = 70  # above the 64 frames a p90 needs (agent/bench.py MIN_ITERS_FOR_P90)

RECIPE = """
name: tinyyolov2-pipeline
model:
  arch: tiny_yolov2
  weights: {path: ../data/weights/tiny-yolo-voc.weights, format: darknet, skip_head: true}
dataset: {name: voc, root: ../data/VOCdevkit, year: 2007, classes: [person], image_size: 64}
train: {epochs: 0}
variants:
  retrain: {epochs: 1, lr: 0.001, trainable: [head]}
benchmark:
  warmup: {min_iters: 2, min_s: 0.01}
  measure: {min_iters: 64, min_s: 0.05, max_s: 10}
  pipeline: {source: ../data/clip.avi, save_frames: 3, confidence: 0.05}
"""


class Results(SweepObserver):
    """Every result a sweep records, with its job."""

    def __init__(self) -> None:
        self.finished: list[tuple[Any, dict[str, Any]]] = []

    def job_finished(self, job: Any, result: dict[str, Any]) -> None:
        self.finished.append((job, result))


def study(tmp_path: Path, recipe: str = RECIPE) -> Path:
    """The reduced tiny-YOLOv2 person study's files: Darknet weights, a VOC2007 fixture, a 640x480 clip."""
    data = write_person_study_data(tmp_path / "data", images=12)
    write_clip(data / "clip.avi", CLIP_FRAMES)
    (tmp_path / "recipes").mkdir()
    path = tmp_path / "recipes" / "pipeline.yaml"
    path.write_text(recipe)
    return path


def rows(db: Path, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(sql, parameters).fetchall()


@pytest.mark.slow
@pytest.mark.skipif(not sshd_available(), reason="needs root and OpenSSH's sshd (.ci/run installs it)")
@pytest.mark.skipif(not PILLOW_BOARD_PYTHON.exists(), reason="needs the test boards' Pythons (make boards)")
def test_tiny_yolov2_runs_as_a_pipeline_in_both_modes_with_opencv_and_with_pillow_alone(tmp_path: Path):
    recipe = study(tmp_path)
    fleet = Fleet(tmp_path / "fleet", ["127.0.0.2"])
    fleet.write_inventory(board1={"python": str(PILLOW_BOARD_PYTHON)})
    observer = Results()
    db = tmp_path / "results.db"
    try:
        report = run_sweep(load_recipe(recipe), resolve_devices("local,board1", load_inventory(fleet.inventory)),
                           open_database(str(db)), ArtifactStore(tmp_path / "artifacts"), observer=observer,
                           options=SweepOptions(ssh=fleet.settings(), retry=QUICK_RETRY))
    finally:
        fleet.stop()
    assert report.statuses == {"ok": 6}, [result.get("error") or result.get("reasons")
                                          for _, result in observer.finished]
    pipelines = {(job.device.name, job.pipeline): result["pipeline"]
                 for job, result in observer.finished if job.pipeline}
    timings = {(job.device.name, job.pipeline): result["timing"] for job, result in observer.finished if job.pipeline}
    assert sorted(pipelines) == [(device, mode) for device in ("board1", "local")
                                 for mode in ("pipelined", "sequential")]
    for (device, mode), figures in pipelines.items():
        assert figures["frames"] == CLIP_FRAMES and figures["frames_dropped"] == 0, (device, mode)
        assert figures["source"]["decoder"] == ("opencv" if device == "local" else "pillow"), device
        assert (figures["source"]["width"], figures["source"]["height"]) == (640, 480)
        assert [stage["stage"] for stage in figures["stages"]] == STAGES
        assert sum(stage["share"] for stage in figures["stages"]) == pytest.approx(1.0)
        assert figures["fps"] > 0 and figures["cpu_percent"] > 0
        assert len(figures["frame_ms"]) == CLIP_FRAMES
        for frame in figures["frame_ms"]:
            # Every nanosecond of a frame's latency is in a stage or in a queue between two stages.
            assert sum(frame[:6]) + frame[6] == pytest.approx(frame[7], abs=0.01), (device, mode, frame)
        if mode == "sequential":
            # One loop: nothing waits, so the stages alone make up the latency: within 2 % over the run (the OS
            # may still pause the loop between two stages of a frame, as it may pause a stage), and the typical
            # gap between stages is a few microseconds.
            stage_total = sum(sum(frame[:6]) for frame in figures["frame_ms"])
            latency_total = sum(frame[7] for frame in figures["frame_ms"])
            assert stage_total == pytest.approx(latency_total, rel=0.02), device
            assert sorted(frame[6] for frame in figures["frame_ms"])[CLIP_FRAMES // 2] < 0.05, device
            # Against a clock the pipeline does not read: the job's own timer around the whole run (source opened
            # and closed too) holds the frames back to back, and little else.
            duration_ms = timings[(device, mode)]["duration_s"] * 1000
            assert 0.7 * duration_ms <= latency_total <= duration_ms, (device, latency_total, duration_ms)
    for device in ("local", "board1"):
        sequential, pipelined = pipelines[(device, "sequential")], pipelines[(device, "pipelined")]
        assert sequential["detections_count"] == pipelined["detections_count"] > 0, device
        assert sequential["detections_digest"] == pipelined["detections_digest"], device

    stored = rows(db, "SELECT d.name, r.pipeline_mode, r.frames, r.frames_dropped, r.fps, r.throughput_ips, "
                      "r.p50_ms, r.cpu_percent, r.frames_dir, r.id FROM results r JOIN devices d ON "
                      "d.id = r.device_id WHERE r.pipeline_mode IS NOT NULL ORDER BY d.name, r.pipeline_mode")
    assert [(row[0], row[1]) for row in stored] == sorted(pipelines)
    for device, mode, frames, dropped, fps, throughput, p50, cpu, frames_dir, result_id in stored:
        figures = pipelines[(device, mode)]
        assert (frames, dropped, fps, throughput) == (CLIP_FRAMES, 0, figures["fps"], figures["fps"])
        assert p50 == figures["latency"]["p50_ms"] and cpu == figures["cpu_percent"]
        saved = sorted(Path(frames_dir).iterdir())
        assert [path.name for path in saved] == [f"frame-{index:06d}.jpg" for index in range(3)]
        assert all(path.read_bytes()[:2] == b"\xff\xd8" for path in saved)  # JPEG files
        assert rows(db, "SELECT stage FROM pipeline_stages WHERE result_id = ? ORDER BY position",
                    result_id) == [(stage,) for stage in STAGES]
    latency_jobs = rows(db, "SELECT count(*) FROM results WHERE pipeline_mode IS NULL AND status = 'ok' "
                            "AND accuracy_metric = 'voc07_ap50'")
    assert latency_jobs == [(2,)]  # the variant's latency and AP are still measured once per device


def test_a_pipeline_source_that_is_not_there_is_a_located_error_before_anything_is_built(tmp_path: Path):
    recipe = tmp_path / "pipeline.yaml"
    recipe.write_text(RECIPE)
    one_line_error(orch("sweep", str(recipe), "--devices", "local", env=run_env(tmp_path)),
                   "pipeline.yaml:13", "benchmark.pipeline.source", "clip.avi")
    assert not (tmp_path / "artifacts").exists()


def test_a_camera_source_needs_a_frame_count(tmp_path: Path):
    recipe = tmp_path / "pipeline.yaml"
    recipe.write_text(RECIPE.replace("source: ../data/clip.avi", "source: camera:0"))
    recipe_refused(orch("recipes", "check", str(recipe), env=run_env(tmp_path)),
                   "pipeline.yaml", "benchmark.pipeline.frames", "camera")


@pytest.mark.slow
def test_a_camera_that_is_not_there_is_an_error_result_and_the_other_jobs_are_kept(tmp_path: Path):
    recipe = study(tmp_path, RECIPE.replace("source: ../data/clip.avi", "source: /dev/video57, frames: 64"))
    done = orch("sweep", str(recipe), "--devices", "local", env=run_env(tmp_path))
    assert done.returncode == 4, done.stdout + done.stderr  # jobs ended in error (orchestrator/errors.py)
    assert "2 error:" in done.stdout and "/dev/video57" in done.stdout  # counted once, said once
    results = rows(tmp_path / "results.db", "SELECT pipeline_mode, status, error FROM results ORDER BY id")
    assert results[0][:2] == (None, "ok")  # the latency job measured
    assert [(mode, status) for mode, status, _ in results[1:]] == [("sequential", "error"), ("pipelined", "error")]
    assert all("/dev/video57" in error and "\n" not in error for _, _, error in results[1:])
