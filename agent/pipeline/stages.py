"""The six stages of the detection pipeline, as plain functions: the sequential loop and the pipelined threads
call the same ones, so both modes compute the same detections from the same frames.

  read         the next frame of the source (agent/pipeline/sources.py)
  preprocess   the frame as one model input, and where it landed (agent/preprocess.py Preprocess.array)
  infer        session.run on a batch of one
  postprocess  decode, threshold and per-class NMS (agent/detection/decoders.py decode, as detection/evaluate.py
               runs it), then boxes mapped back to source pixels (Placement.to_original)
  draw         on a copy of the frame: each box in its label's colour, 3 px thick so that a JPEG keeps the colour
               (the middle row of the line always fills a whole 2x2 chroma block), its label and confidence, and
               the running FPS top-left
  encode       JPEG at the spec's quality

OpenCV draws and encodes when present, else Pillow; either way a line is centred on the box's edge.
"""

from __future__ import annotations

import collections
import functools
import io
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from agent.detection.decoders import DetectionSpec, decode
from agent.pipeline.sources import Frame, FrameSource, PipelineError, opencv
from agent.preprocess import Placement, Preprocess

STAGES = ("read", "preprocess", "infer", "postprocess", "draw", "encode")
# One colour per model label, cycled: Sasha Trubetskoy's "20 simple, distinct colors" (the first ten), saturated
# enough to tell apart after JPEG compression.
PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128))
BOX_THICKNESS_PX = 3
FPS_WINDOW_FRAMES = 30
PILLOW_FIX = "pip install pillow, or the distribution's python3-pil"

Colour = Tuple[int, int, int]


def colour(label: int) -> Colour:
    """The (r, g, b) colour boxes of model label `label` are drawn in."""
    return PALETTE[int(label) % len(PALETTE)]


def require_pillow() -> None:
    """Import what the stages need now (so that no frame is timed importing it); PipelineError without Pillow,
    which pre-processing needs on every board (the workstation's resize is Pillow's)."""
    try:
        import PIL.Image  # noqa: F401
        import PIL.ImageDraw  # noqa: F401
    except ImportError as exc:
        raise PipelineError(f"the pipeline needs Pillow on the board to pre-process frames ({PILLOW_FIX})") from exc
    opencv()


def read(source: FrameSource) -> Optional[Frame]:
    """The next (index, RGB pixels) of the source; None at the end of a file source."""
    return source.read()


def preprocess(config: Preprocess, pixels: np.ndarray) -> Tuple[np.ndarray, Placement]:
    """One frame as one model input (no batch axis) and where the frame landed in it."""
    return config.array(pixels)


def infer(session: Any, input_name: str, model_input: np.ndarray) -> List[np.ndarray]:
    """The model's outputs for one input (a batch of one)."""
    return session.run(None, {input_name: model_input[None]})


def postprocess(outputs: Sequence[np.ndarray], output_names: Sequence[str], detection: DetectionSpec,
                input_hw: Tuple[int, int], placement: Placement) -> np.ndarray:
    """The frame's detections, best first: (k, 6) rows x1, y1, x2, y2, score, label in source pixels."""
    boxes, scores, labels = decode(outputs, output_names, detection, input_hw)[0]
    rows = np.empty((len(scores), 6), dtype=np.float64)
    rows[:, :4] = placement.to_original(boxes)
    rows[:, 4] = scores
    rows[:, 5] = labels
    return rows


def draw(pixels: np.ndarray, detections: np.ndarray, labels: Sequence[str], fps: float) -> np.ndarray:
    """A copy of the frame with every detection drawn (the best last, so on top) and the FPS top-left."""
    canvas = np.array(pixels, dtype=np.uint8, copy=True)
    boxes = []
    for x1, y1, x2, y2, score, label in detections[::-1]:
        name = labels[int(label)] if 0 <= int(label) < len(labels) else str(int(label))
        corners = (int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
        boxes.append((corners, colour(int(label)), f"{name} {score:.2f}"))
    cv2 = opencv()
    if cv2 is not None:
        return _draw_opencv(cv2, canvas, boxes, f"FPS {fps:.1f}")
    return _draw_pillow(canvas, boxes, f"FPS {fps:.1f}")


def encode(pixels: np.ndarray, quality: int) -> bytes:
    """RGB pixels as a JPEG file's bytes at `quality` (1 to 100)."""
    cv2 = opencv()
    if cv2 is not None:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("OpenCV could not encode the frame as JPEG")
        return data.tobytes()
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class RateMeter:
    """The running FPS drawn on each frame: frames per second over the last FPS_WINDOW_FRAMES frames."""

    def __init__(self) -> None:
        self._stamps_ns: collections.deque = collections.deque(maxlen=FPS_WINDOW_FRAMES)

    def tick(self, now_ns: int) -> float:
        """Count a frame drawn at `now_ns` (perf_counter_ns); the rate so far (0 before the second frame)."""
        self._stamps_ns.append(now_ns)
        span_ns = self._stamps_ns[-1] - self._stamps_ns[0]
        return (len(self._stamps_ns) - 1) * 1e9 / span_ns if span_ns > 0 else 0.0


Box = Tuple[Tuple[int, int, int, int], Colour, str]


def _ink(background: Colour) -> Colour:
    """Black text on a light background, white on a dark one."""
    red, green, blue = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else (255, 255, 255)


def _draw_opencv(cv2: Any, canvas: np.ndarray, boxes: List[Box], fps_text: str) -> np.ndarray:
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    for (x1, y1, x2, y2), box_colour, text in boxes:
        cv2.rectangle(canvas, (x1, y1), (x2, y2), box_colour, BOX_THICKNESS_PX)
        (width, height), baseline = cv2.getTextSize(text, font, scale, 1)
        top = y1 - height - baseline - 2 if y1 >= height + baseline + 2 else y1
        cv2.rectangle(canvas, (x1, top), (x1 + width + 4, top + height + baseline + 2), box_colour, -1)
        cv2.putText(canvas, text, (x1 + 2, top + height + 1), font, scale, _ink(box_colour), 1, cv2.LINE_AA)
    (width, height), baseline = cv2.getTextSize(fps_text, font, 0.6, 2)
    cv2.rectangle(canvas, (0, 0), (width + 8, height + baseline + 8), (0, 0, 0), -1)
    cv2.putText(canvas, fps_text, (4, height + 4), font, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return canvas


@functools.lru_cache(maxsize=None)
def _font() -> Any:
    from PIL import ImageFont

    return ImageFont.load_default()


def _text_size(drawing: Any, text: str) -> Tuple[int, int]:
    # textbbox came with Pillow 8.0 and textsize went with 10.0: a board may have either.
    if hasattr(drawing, "textbbox"):
        left, top, right, bottom = drawing.textbbox((0, 0), text, font=_font())
        return int(right - left), int(bottom)
    return drawing.textsize(text, font=_font())


def _draw_pillow(canvas: np.ndarray, boxes: List[Box], fps_text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.fromarray(canvas)
    drawing = ImageDraw.Draw(image)
    half = BOX_THICKNESS_PX // 2
    for (x1, y1, x2, y2), box_colour, text in boxes:
        # Pillow draws a wide outline inside the rectangle: widen it by half the width to centre it on the edge.
        drawing.rectangle((x1 - half, y1 - half, x2 + half, y2 + half), outline=box_colour, width=BOX_THICKNESS_PX)
        width, height = _text_size(drawing, text)
        top = y1 - height - 4 if y1 >= height + 4 else y1
        drawing.rectangle((x1, top, x1 + width + 4, top + height + 4), fill=box_colour)
        drawing.text((x1 + 2, top + 2), text, fill=_ink(box_colour), font=_font())
    width, height = _text_size(drawing, fps_text)
    drawing.rectangle((0, 0, width + 8, height + 8), fill=(0, 0, 0))
    drawing.text((4, 4), fps_text, fill=(255, 255, 255), font=_font())
    return np.asarray(image)
