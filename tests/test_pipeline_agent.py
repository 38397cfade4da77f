"""The detection pipeline on the board (agent/pipeline/): real onnxruntime, real OpenCV, real Pillow.

The detector is tests/support/detection_models.py's live YOLOv5-layout model (a strided convolution of the image
with random weights: its boxes change with every frame's pixels); the clip is MJPEG in AVI as OpenCV writes it.
The Pillow path runs in the old-runtime board venv, which has no OpenCV, as `python -m agent bench`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from agent.bench import run_job
from agent.detection.nms import box_iou
from agent.pipeline import mjpeg
from agent.pipeline.run import StageError, run_pipeline
from agent.pipeline.sources import SourceError, open_source, pack_images
from agent.pipeline.stages import PALETTE, STAGES, colour
from agent.runner import PIPELINE_FRAME_S, PIPELINE_UNCOUNTED_S, job_deadline_s
from agent.spec import Gate, InputSpec, JobSpec, PipelineSpec
from tests.support import REPO
from tests.support.clips import write_clip
from tests.support.detection_models import INPUT_HW, INPUT_NAME, live_model

CLIP_FRAMES = 70
CLIP_SIZE = (320, 240)
BOARD_PYTHON = REPO / ".venv-boards" / "onnxruntime-1.18" / "bin" / "python"
LABELS = ["red", "green", "blue"]


class Cache:
    """An agent cache holding the live detector, the clip and an image folder, each under its sha256."""

    def __init__(self, root: Path):
        self.root = root
        model, self.detection = live_model("yolov5")
        self.model_sha256 = self.put(model, ".onnx")
        self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        self.clip = write_clip(root / "clip.avi", CLIP_FRAMES, size=CLIP_SIZE)
        self.video = self.put(self.clip.read_bytes(), ".video")
        folder = root / "images"
        folder.mkdir()
        self.image_paths = []
        for index in range(5):  # sizes differ, and so do formats
            pixels = np.full((100 + 20 * index, 160, 3), 60 * index, dtype=np.uint8)
            pixels[20:60, 30:90] = PALETTE[index]
            path = folder / f"{index}.{'png' if index % 2 else 'jpg'}"
            Image.fromarray(pixels).save(path)
            self.image_paths.append(path)
        buffer = io.BytesIO()
        np.savez(buffer, **pack_images([str(path) for path in self.image_paths]))
        self.images = self.put(buffer.getvalue(), ".npz")

    def put(self, data: bytes, suffix: str) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        (self.root / f"{sha256}{suffix}").write_bytes(data)
        return sha256

    def spec(self, **fields) -> PipelineSpec:
        """A pipeline spec on the clip (by default) for the live detector at its input size."""
        base = PipelineSpec(source={"kind": "video", "sha256": self.video},
                            preprocess={"size": list(INPUT_HW), "resize": "letterbox"},
                            detection=self.detection.to_dict(), labels=LABELS)
        return replace(base, **fields)

    def job(self, pipeline: PipelineSpec) -> JobSpec:
        return JobSpec(artifact_sha256=self.model_sha256, inputs=[InputSpec(INPUT_NAME, [1, 3, *INPUT_HW])],
                       warmup=Gate(2, 0.0), pipeline=pipeline)

    def run(self, **fields) -> dict:
        return run_pipeline(self.session, self.spec(**fields), str(self.root))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Cache:
    return Cache(tmp_path_factory.mktemp("pipeline-cache"))


def board_bench(cache: Cache, job: JobSpec) -> dict:
    """A job run by `python -m agent bench` in the board venv without OpenCV: the Pillow path."""
    done = subprocess.run([str(BOARD_PYTHON), "-m", "agent", "bench", "--cache", str(cache.root)],
                          input=job.to_json(), capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=cache.root)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def pipeline_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("pipeline-")]


def test_both_modes_process_every_frame_and_find_the_same_detections(cache):
    sequential = cache.run(mode="sequential")
    pipelined = cache.run(mode="pipelined", queue_size=2)
    for figures in (sequential, pipelined):
        assert figures["frames"] == CLIP_FRAMES and figures["frames_dropped"] == 0
        assert figures["source"] == {"kind": "video", "width": CLIP_SIZE[0], "height": CLIP_SIZE[1],
                                     "decoder": "opencv"}
        assert [stage["stage"] for stage in figures["stages"]] == list(STAGES)
        assert sum(stage["share"] for stage in figures["stages"]) == pytest.approx(1.0)
        assert figures["fps"] == pytest.approx(figures["frames"] / figures["wall_s"])
        assert figures["detections_count"] > CLIP_FRAMES and figures["detections"] is None
    assert sequential["detections_digest"] == pipelined["detections_digest"]
    assert not pipeline_threads()


def test_an_image_folder_is_every_image_in_the_order_given(cache):
    source = {"kind": "images", "sha256": cache.images}
    sequential = cache.run(source=source, mode="sequential", keep_detections=True)
    pipelined = cache.run(source=source, mode="pipelined", keep_detections=True)
    assert sequential["frames"] == pipelined["frames"] == len(cache.image_paths)
    assert sequential["detections"] == pipelined["detections"]
    assert sequential["source"]["width"] == 160 and sequential["source"]["height"] == 100  # the first image's
    frames = open_source(source, str(cache.root))
    for path in cache.image_paths:
        index, pixels = frames.read()
        np.testing.assert_array_equal(pixels, np.asarray(Image.open(path).convert("RGB")))
    assert frames.read() is None


def test_frames_stops_early_loop_starts_again_and_a_short_file_just_ends(cache):
    assert cache.run(mode="pipelined", frames=10)["frames"] == 10
    looped = cache.run(mode="pipelined", frames=CLIP_FRAMES + 30, loop=True, keep_detections=True)
    assert looped["frames"] == CLIP_FRAMES + 30
    assert sorted({int(row[0]) for row in looped["detections"]})[-1] == CLIP_FRAMES + 29  # indexes run on
    assert cache.run(mode="sequential", frames=CLIP_FRAMES + 30)["frames"] == CLIP_FRAMES


def test_sequential_stage_times_add_up_to_the_frame_latency(cache):
    """In one loop nothing happens between two stages but the loop itself: a few microseconds a frame. Over the run
    the stages make up the latency within 5 % (a busy machine may preempt the loop between two stages: a frame's
    gap can then be milliseconds), and the typical frame's gaps are under 50 us."""
    table = np.array(cache.run(mode="sequential")["frame_ms"])
    stages_ms, queued_ms, latency_ms = table[:, :len(STAGES)].sum(axis=1), table[:, -2], table[:, -1]
    assert stages_ms.sum() == pytest.approx(latency_ms.sum(), rel=0.05)
    assert np.median(queued_ms) < 0.05 and (queued_ms >= 0).all()


def test_pipelined_stage_times_and_queued_time_add_up_to_the_frame_latency(cache):
    figures = cache.run(mode="pipelined", queue_size=2)
    for *stages_ms, queued, latency in figures["frame_ms"]:
        assert sum(stages_ms) + queued == pytest.approx(latency, abs=1e-6)
        assert min(stages_ms) >= 0 and queued >= 0
    assert figures["queued"]["mean_ms"] > 0


def test_saved_frames_are_jpegs_with_each_box_in_its_label_colour(cache):
    figures = cache.run(mode="pipelined", save_frames=8, keep_detections=True, jpeg_quality=80)
    assert len(figures["saved_frames"]) == 8
    rows = np.array(figures["detections"])
    checked = 0
    for index, encoded in enumerate(figures["saved_frames"]):
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")).astype(int)
        assert pixels.shape == (CLIP_SIZE[1], CLIP_SIZE[0], 3)
        best = rows[rows[:, 0] == index][0]  # drawn last: on top of every other box
        label, x1, y1, x2, y2 = int(best[1]), *np.round(best[2:6]).astype(int)
        if not (100 < x2 < CLIP_SIZE[0] - 2 and 30 < y2 < CLIP_SIZE[1] - 2):
            continue  # under the FPS overlay, or cut by the image edge
        for y, x in ((y2, (x1 + x2) // 2), ((y1 + y2) // 2, x2)):  # the bottom and right edges' middles
            found = pixels[y, x]
            nearest = min(PALETTE, key=lambda entry: np.abs(found - entry).sum())
            assert nearest == colour(label) and np.abs(found - colour(label)).max() < 60, (index, y, x, found)
        checked += 1
    assert checked >= 3


def test_stop_ends_a_looping_run_promptly(cache):
    seen: list[int] = []
    stop = threading.Event()
    finished: dict = {}

    def run() -> None:
        finished["figures"] = run_pipeline(cache.session, cache.spec(loop=True), str(cache.root),
                                           on_frame=lambda frame: seen.append(frame.index), stop=stop)

    thread = threading.Thread(target=run)
    thread.start()
    while len(seen) < 2 * CLIP_FRAMES and thread.is_alive():
        time.sleep(0.01)
    stopped = time.perf_counter()
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive() and time.perf_counter() - stopped < 1.0
    assert not pipeline_threads()
    assert finished["figures"]["frames"] == len(seen) >= 2 * CLIP_FRAMES
    assert seen == list(range(len(seen)))


@pytest.mark.parametrize("mode", ["sequential", "pipelined"])
def test_a_failing_stage_is_raised_with_its_name_and_every_thread_ends(cache, mode):
    with pytest.raises(StageError, match=r"^stage infer: ") as raised:
        cache.run(mode=mode, preprocess={"size": [64, 64]})  # not the model's input size
    assert raised.value.stage == "infer" and "\n" not in str(raised.value)
    assert not pipeline_threads()


def test_a_pipeline_job_reports_frame_latency_and_pipeline_fps(cache):
    result = run_job(cache.job(cache.spec(mode="pipelined")), str(cache.root))
    assert result["status"] == "ok", result["reasons"]
    figures, timing = result["pipeline"], result["timing"]
    assert timing["iterations"] == figures["frames"] == len(result["latency_samples_ms"]) == CLIP_FRAMES
    assert timing["throughput_ips"] == figures["fps"]
    assert timing["p50_ms"] == pytest.approx(figures["latency"]["p50_ms"], abs=1e-5)
    assert timing["session_create_ms"] > 0 and timing["warmup_iterations"] == 2


def test_a_missing_camera_is_a_one_line_error_naming_it(cache):
    for device in ("/dev/video99", 9):
        result = run_job(cache.job(cache.spec(source={"kind": "camera", "device": device}, frames=10)),
                         str(cache.root))
        assert result["status"] == "error" and result["error"] == f"camera {device}: not found or not readable"


def test_the_demuxer_finds_every_frame_opencv_finds(cache):
    data = cache.clip.read_bytes()
    assert mjpeg.unreadable(data) is None and mjpeg.avi_codec(data) == ("00", "MJPG")
    spans = list(mjpeg.frames(data))
    capture = cv2.VideoCapture(str(cache.clip))
    for start, end in spans:
        ok, bgr = capture.read()
        assert ok
        # FFmpeg (VideoCapture) and libjpeg (imdecode, Pillow) upsample chroma differently: close, not equal.
        decoded = cv2.imdecode(np.frombuffer(data[start:end], np.uint8), cv2.IMREAD_COLOR)
        assert np.abs(decoded.astype(int) - bgr).mean() < 3
    assert not capture.read()[0] and len(spans) == CLIP_FRAMES


def test_a_raw_mjpeg_stream_is_split_at_each_jpeg_end_not_inside_a_segment():
    jpegs = []
    for shade in (40, 120, 200):
        buffer = io.BytesIO()
        Image.fromarray(np.full((16, 24, 3), shade, dtype=np.uint8)).save(buffer, format="JPEG")
        jpegs.append(buffer.getvalue())
    # A comment segment holding a whole JPEG (as an EXIF thumbnail does): its EOI must not end the outer file.
    inner = jpegs[0]
    commented = jpegs[1][:2] + b"\xff\xfe" + (len(inner) + 2).to_bytes(2, "big") + inner + jpegs[1][2:]
    stream = jpegs[0] + b"--boundary\r\n" + commented + jpegs[2] + jpegs[2][:40]  # the last one cut short
    spans = list(mjpeg.frames(stream))
    assert [stream[start:end] for start, end in spans] == [jpegs[0], commented, jpegs[2]]
    assert mjpeg.unreadable(stream) is None


@pytest.mark.skipif(not BOARD_PYTHON.exists(), reason="the board venvs are built by `make boards`")
def test_the_pillow_path_reads_the_same_frames_and_finds_the_same_boxes(cache):
    # Tolerance: FFmpeg (OpenCV) and libjpeg (Pillow) decode the same JPEG up to 40 levels apart at colour edges,
    # and the random detector's boxes follow pixels closely; at a 0.2 threshold ~95 % of frames match exactly.
    spec = cache.spec(mode="pipelined", keep_detections=True, detection={**cache.detection.to_dict(),
                                                                         "conf_threshold": 0.2})
    opencv = run_pipeline(cache.session, spec, str(cache.root))
    result = board_bench(cache, cache.job(spec))
    assert result["status"] == "ok", result
    pillow = result["pipeline"]
    assert pillow["source"]["decoder"] == "pillow" and pillow["frames"] == opencv["frames"] == CLIP_FRAMES
    assert abs(pillow["detections_count"] - opencv["detections_count"]) <= 0.05 * opencv["detections_count"]
    for ours, theirs in ((opencv["detections"], pillow["detections"]), (pillow["detections"], opencv["detections"])):
        assert _matched(np.array(ours), np.array(theirs)) >= 0.9


def _matched(rows: np.ndarray, others: np.ndarray) -> float:
    """The share of `rows` (frame, label, x1, y1, x2, y2, score) with a box of the same frame and label in `others`
    overlapping it by IoU 0.7 or more."""
    found = 0
    for row in rows:
        same = others[(others[:, 0] == row[0]) & (others[:, 1] == row[1])]
        found += bool(len(same)) and bool((box_iou(row[None, 2:6], same[:, 2:6]) >= 0.7).any())
    return found / len(rows)


@pytest.mark.skipif(not BOARD_PYTHON.exists(), reason="the board venvs are built by `make boards`")
def test_a_video_other_than_mjpeg_without_opencv_is_a_one_line_error(cache, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", 5, size=CLIP_SIZE, fourcc="mp4v")
    sha256 = cache.put(clip.read_bytes(), ".video")
    result = board_bench(cache, cache.job(cache.spec(source={"kind": "video", "sha256": sha256})))
    path = cache.root / f"{sha256}.video"
    assert result["status"] == "error"
    assert result["error"] == (f"{path}: an MP4/QuickTime video needs OpenCV on the board to decode "
                               "(pip install opencv-python-headless, or the distribution's python3-opencv)")


def test_sources_refuse_what_they_cannot_read(cache):
    with pytest.raises(SourceError, match="not in the agent cache"):
        open_source({"kind": "video", "sha256": "0" * 64}, str(cache.root))
    not_a_frameset = cache.put(b"not a zip file", ".npz")
    with pytest.raises(SourceError, match="not a FrameSet of images"):
        open_source({"kind": "images", "sha256": not_a_frameset}, str(cache.root))


def test_a_board_without_pillow_is_told_to_install_it(cache):
    python = REPO / ".venv-boards" / "onnxruntime-1.16" / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", "import PIL"], capture_output=True).returncode == 0:
        pytest.skip("needs the onnxruntime 1.16 board venv, which has no Pillow")
    done = subprocess.run([str(python), "-m", "agent", "bench", "--cache", str(cache.root)],
                          input=cache.job(cache.spec()).to_json(), capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=cache.root)
    assert json.loads(done.stdout)["error"] == ("the pipeline needs Pillow on the board to pre-process frames "
                                                "(pip install pillow, or the distribution's python3-pil)")


def test_a_pipeline_jobs_deadline_allows_for_its_frames_not_the_measurement_gate(cache):
    counted = cache.job(cache.spec(frames=100))
    latency_job = replace(counted, pipeline=None)
    assert job_deadline_s(counted) - job_deadline_s(latency_job) == 100 * PIPELINE_FRAME_S - counted.measure.max_s
    assert job_deadline_s(cache.job(cache.spec())) - job_deadline_s(latency_job) == \
        PIPELINE_UNCOUNTED_S - counted.measure.max_s
