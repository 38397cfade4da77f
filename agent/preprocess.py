"""Pre-processing: how an image file becomes one model input, declared once and applied the same everywhere.

The workstation uses it to read calibration and evaluation images for a model (orchestrator/datasets/
image_folder.py), and the board uses it for detection and for the pipeline's decoded frames (`array`): the numbers
a board scores are computed on exactly the inputs the workstation calibrated with. numpy and Pillow only (Pillow
is imported when an image is read), Python 3.8: no torchvision on boards, and its transforms differ in rounding
anyway.

Fields of `Preprocess` (recipes: `model.preprocess`):
  size      [height, width] of the model input
  resize    plain (stretched to size) or letterbox (aspect ratio kept, padded with pad_value, centred)
  crop      None, or the central fraction kept: the image is resized to size / crop, then centre-cropped
            to size (ImageNet evaluation: 0.875, i.e. 256 -> 224); plain resize only
  channels  RGB, BGR (Caffe-era models) or L (grey, one channel)
  layout    NCHW or NHWC (TensorFlow exports)
  scale     "0-1": pixel values divided by 255; "0-255": kept as they are
  mean, std per-channel values subtracted, then divided by, after scaling (absent: none)
  dtype     float32, float16 or uint8 (uint8 takes scale 0-255 and no mean/std: the model does the rest)
  pad_value letterbox padding, per channel value 0-255 (114: Ultralytics' grey)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

RESIZES = ("plain", "letterbox")
CHANNELS = ("RGB", "BGR", "L")
LAYOUTS = ("NCHW", "NHWC")
SCALES = ("0-1", "0-255")
DTYPES = ("float32", "float16", "uint8")


@dataclass
class Placement:
    """Where the original image landed in the model input: input = original * scale + pad (per axis), so a box
    in input pixels maps back as (x - pad_x) / scale_x. original_size is (width, height)."""

    original_size: Tuple[int, int]
    scale_x: float
    scale_y: float
    pad_x: float = 0.0
    pad_y: float = 0.0

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """(k, 4) x1 y1 x2 y2 boxes in input pixels as boxes in original image pixels, clipped to the image."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y])
        pad = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y])
        width, height = self.original_size
        return np.clip((boxes - pad) / scale, 0, np.array([width, height, width, height], dtype=np.float64))


@dataclass
class Preprocess:
    """How an image becomes a model input (fields in the module docstring)."""

    size: List[int] = field(default_factory=lambda: [224, 224])
    resize: str = "plain"
    crop: Optional[float] = None
    channels: str = "RGB"
    layout: str = "NCHW"
    scale: str = "0-1"
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    dtype: str = "float32"
    pad_value: int = 114

    def problems(self) -> List[Tuple[str, str]]:
        """(field, what is wrong) for each field that cannot be used as written."""
        found = []
        if len(self.size) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= 8192
                                      for v in self.size):
            found.append(("size", "must be [height, width], each 1 to 8192"))
        for name, value, allowed in (("resize", self.resize, RESIZES), ("channels", self.channels, CHANNELS),
                                     ("layout", self.layout, LAYOUTS), ("scale", self.scale, SCALES),
                                     ("dtype", self.dtype, DTYPES)):
            if value not in allowed:
                found.append((name, f"must be one of {', '.join(allowed)}"))
        if self.crop is not None and not (isinstance(self.crop, (int, float)) and 0 < self.crop <= 1):
            found.append(("crop", "must be a fraction in (0, 1]"))
        if self.crop is not None and self.resize == "letterbox":
            found.append(("crop", "does not go with letterbox resizing"))
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and (len(values) != self.channel_count
                                       or not all(_finite(v) for v in values)):
                found.append((name, f"needs {self.channel_count} finite value(s), one per channel of {self.channels}"))
        if self.std is not None and any(_finite(v) and v <= 0 for v in self.std):
            found.append(("std", "values must be > 0"))
        if self.dtype == "uint8" and (self.scale != "0-255" or self.mean is not None or self.std is not None):
            found.append(("dtype", "uint8 inputs take scale 0-255 and no mean or std"))
        if not isinstance(self.pad_value, int) or not 0 <= self.pad_value <= 255:
            found.append(("pad_value", "must be an integer 0 to 255"))
        return found

    @property
    def channel_count(self) -> int:
        return 1 if self.channels == "L" else 3

    @property
    def shape(self) -> List[int]:
        """The shape of one input, batch of one, in this layout."""
        height, width = self.size
        if self.layout == "NHWC":
            return [1, height, width, self.channel_count]
        return [1, self.channel_count, height, width]

    def image(self, image: Any) -> Tuple[np.ndarray, Placement]:
        """One PIL image as one model input (no batch axis), and where the original landed in it."""
        height, width = self.size
        image = image.convert("L" if self.channels == "L" else "RGB")
        if self.resize == "letterbox":
            pixels, placement = self._letterbox(image)
        else:
            pixels, placement = self._plain(image)
        if self.channels == "BGR":
            pixels = pixels[..., ::-1]
        return self._finish(pixels), placement

    def array(self, pixels: np.ndarray) -> Tuple[np.ndarray, Placement]:
        """Decoded RGB HWC uint8 pixels (a video frame) as one model input: through Pillow and image(), so a frame
        gives exactly the numbers its image file gives on the workstation."""
        from PIL import Image

        return self.image(Image.fromarray(pixels))

    def file(self, path: str) -> Tuple[np.ndarray, Placement]:
        """An image file as one model input, and where the original landed in it."""
        from PIL import Image

        with Image.open(path) as image:
            return self.image(image)

    def batch(self, paths: Sequence[str]) -> np.ndarray:
        """Image files as a batch of model inputs (batch axis first)."""
        if not paths:
            return np.zeros([0] + self.shape[1:], dtype=self.dtype)
        return np.stack([self.file(path)[0] for path in paths])

    # -- internals -------------------------------------------------------------------------------------------
    def _plain(self, image: Any) -> Tuple[np.ndarray, Placement]:
        height, width = self.size
        original = image.size
        if self.crop is None:
            resized = image.resize((width, height), _bilinear())
            return _hwc(resized), Placement(original, width / original[0], height / original[1])
        outer_w, outer_h = int(math.floor(width / self.crop + 0.5)), int(math.floor(height / self.crop + 0.5))
        resized = image.resize((outer_w, outer_h), _bilinear())
        left, top = (outer_w - width) // 2, (outer_h - height) // 2
        cropped = resized.crop((left, top, left + width, top + height))
        return _hwc(cropped), Placement(original, outer_w / original[0], outer_h / original[1], -left, -top)

    def _letterbox(self, image: Any) -> Tuple[np.ndarray, Placement]:
        height, width = self.size
        original = image.size
        ratio = min(width / original[0], height / original[1])
        new_w, new_h = max(1, int(round(original[0] * ratio))), max(1, int(round(original[1] * ratio)))
        resized = _hwc(image.resize((new_w, new_h), _bilinear()))
        canvas = np.full((height, width, resized.shape[2]), self.pad_value, dtype=np.uint8)
        pad_x, pad_y = (width - new_w) // 2, (height - new_h) // 2
        canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = resized
        return canvas, Placement(original, new_w / original[0], new_h / original[1], pad_x, pad_y)

    def _finish(self, hwc: np.ndarray) -> np.ndarray:
        """HWC uint8 pixels -> scaled, normalized, in layout and dtype."""
        values: np.ndarray
        if self.dtype == "uint8":
            values = np.ascontiguousarray(hwc, dtype=np.uint8)
        else:
            scaled: np.ndarray = hwc.astype(np.float32)
            if self.scale == "0-1":
                scaled /= 255.0
            if self.mean is not None:
                scaled -= np.asarray(self.mean, dtype=np.float32)
            if self.std is not None:
                scaled /= np.asarray(self.std, dtype=np.float32)
            values = scaled.astype(self.dtype)
        if self.layout == "NCHW":
            values = values.transpose(2, 0, 1)
        return np.ascontiguousarray(values)


def _hwc(image: Any) -> np.ndarray:
    """A PIL image's pixels as HWC uint8 (a grey image gets a channel axis of one)."""
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _bilinear() -> Any:
    from PIL import Image

    # Pillow 9.1 moved the filters into Image.Resampling; a board may have an older Pillow.
    return Image.Resampling.BILINEAR if hasattr(Image, "Resampling") else Image.BILINEAR  # type: ignore[attr-defined]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
