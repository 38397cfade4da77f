"""Pipeline sources: the frames of an image folder, a video file or a camera, as RGB HWC uint8 arrays, in order.

  images  <cache>/<sha256>.npz, a FrameSet: image_bytes (every image file's bytes concatenated, uint8), offsets
          ((n + 1,) int64: where each file starts, then the end) and names (the files' names, str); written from
          a folder by pack_images on the workstation, loaded here with allow_pickle=False
  video   <cache>/<sha256>.video: the video file's bytes as they were; its container is found from them
  camera  {"device": 0 | "/dev/video0"}: read with OpenCV

Decoding uses OpenCV when this Python has it (cv2.imdecode, cv2.VideoCapture), else Pillow. Without OpenCV a video
must be MJPEG, in AVI or as a raw stream (agent/pipeline/mjpeg.py), and a camera cannot be read. Images are decoded
as stored, with no EXIF rotation, as the workstation's Pillow reads them for calibration and scoring.
"""

from __future__ import annotations

import functools
import io
import mmap
import os
import zipfile
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from agent.pipeline import mjpeg
from agent.spec import SOURCE_SUFFIXES

OPENCV_FIX = "pip install opencv-python-headless, or the distribution's python3-opencv"

Frame = Tuple[int, np.ndarray]  # (index from 0, counted across loops; RGB HWC uint8 pixels)


class PipelineError(RuntimeError):
    """A pipeline job that cannot run or went wrong: one line, naming the file, device or stage."""


class SourceError(PipelineError):
    """A source that cannot be opened or read: one line naming the file or device, and the fix when there is one."""


@functools.lru_cache(maxsize=None)
def opencv() -> Optional[Any]:
    """The cv2 module when this Python has OpenCV, else None (Pillow does its work then)."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def decoder_name() -> str:
    """Which library decodes, draws and encodes frames here: opencv or pillow."""
    return "pillow" if opencv() is None else "opencv"


class FrameSource:
    """Frames in order: read() gives the next (index, pixels), None at the end of a file source.

    kind: images, video or camera; name: the file or device, for messages; live: frames arrive whether or not they
    are taken (a camera), so a pipeline drops what it cannot take rather than waiting; loop: a file source starts
    again at its end."""

    def __init__(self, kind: str, name: str, decoder: str, loop: bool, live: bool = False):
        self.kind = kind
        self.name = name
        self.live = live
        self.decoder = decoder
        self.loop = loop
        self.delivered = 0

    def read(self) -> Optional[Frame]:
        """The next frame; None at the end (a looping source starts again first). SourceError for a source that
        gives no frame at all, or a frame that cannot be decoded."""
        pixels = self._next()
        if pixels is None and self.loop and self.delivered:
            self._restart()
            pixels = self._next()
        if pixels is None:
            if not self.delivered:
                raise SourceError(f"{self.name}: no frame could be read")
            return None
        self.delivered += 1
        return self.delivered - 1, pixels

    def close(self) -> None:
        """Release the file or device."""

    def _next(self) -> Optional[np.ndarray]:
        raise NotImplementedError

    def _restart(self) -> None:
        raise NotImplementedError


class EncodedFrames(FrameSource):
    """Frames stored as encoded image files (a FrameSet's, or an MJPEG video's JPEGs), decoded one at a time.

    payloads: a fresh iterator of (what a frame is called in a message, its encoded bytes) on every call."""

    def __init__(self, kind: str, name: str, payloads: Callable[[], Iterator[Tuple[str, bytes]]], loop: bool,
                 on_close: Optional[Callable[[], None]] = None):
        super().__init__(kind, name, decoder_name(), loop)
        self._payloads = payloads
        self._pending = payloads()
        self._on_close = on_close

    def _next(self) -> Optional[np.ndarray]:
        item = next(self._pending, None)
        if item is None:
            return None
        label, encoded = item
        try:
            return decode_image(encoded)
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow reports damaged files with any of these
            raise SourceError(f"{self.name} {label}: cannot be decoded ({exc})") from exc

    def _restart(self) -> None:
        self._pending = self._payloads()

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()


class CapturedFrames(FrameSource):
    """Frames of a video file or a camera read by cv2.VideoCapture (BGR turned to RGB); cv2: the OpenCV module."""

    def __init__(self, cv2: Any, kind: str, name: str, device: Any, loop: bool):
        super().__init__(kind, name, "opencv", loop, live=kind == "camera")
        self._cv2 = cv2
        self._device = device
        self._capture = self._open()

    def _open(self) -> Any:
        capture = self._cv2.VideoCapture(self._device)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"camera {self.name}: not found or not readable" if self.live
                              else f"{self.name}: OpenCV cannot read this video")
        return capture

    def _next(self) -> Optional[np.ndarray]:
        ok, bgr = self._capture.read()
        if ok:
            return self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)
        if self.live:
            raise SourceError(f"camera {self.name}: not found or not readable" if not self.delivered else
                              f"camera {self.name}: stopped delivering frames after {self.delivered}")
        return None

    def _restart(self) -> None:
        # Seeking back (CAP_PROP_POS_FRAMES) is not exact for every codec and container: open the file again.
        self._capture.release()
        self._capture = self._open()

    def close(self) -> None:
        self._capture.release()


def open_source(source: Dict[str, Any], cache_dir: str, loop: bool = False) -> FrameSource:
    """The frames of a pipeline spec's `source` ({"kind", "sha256"} or {"kind": "camera", "device"}), files read
    from `cache_dir`; SourceError when it cannot be read here."""
    kind = source["kind"]
    if kind == "camera":
        return _camera(source["device"])
    path = os.path.join(cache_dir, source["sha256"] + SOURCE_SUFFIXES[kind])
    if not os.path.isfile(path):
        raise SourceError(f"{path}: not in the agent cache")
    return _images(path, loop) if kind == "images" else _video(path, loop)


def _camera(device: Any) -> FrameSource:
    cv2 = opencv()
    if cv2 is None:
        raise SourceError(f"camera {device}: reading a camera needs OpenCV on the board ({OPENCV_FIX})")
    if isinstance(device, str) and not os.path.exists(device):  # OpenCV would only log a warning, then fail
        raise SourceError(f"camera {device}: not found or not readable")
    return CapturedFrames(cv2, "camera", str(device), device, loop=False)


def _video(path: str, loop: bool) -> FrameSource:
    cv2 = opencv()
    if cv2 is not None:
        return CapturedFrames(cv2, "video", path, path, loop)
    try:
        with open(path, "rb") as handle:
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
        raise SourceError(f"{path}: cannot be read ({exc})") from exc
    problem = mjpeg.unreadable(data)
    if problem is not None:
        data.close()
        raise SourceError(f"{path}: {problem} needs OpenCV on the board to decode ({OPENCV_FIX})")

    def payloads() -> Iterator[Tuple[str, bytes]]:
        for number, (start, end) in enumerate(mjpeg.frames(data)):
            yield f"frame {number}", data[start:end]

    return EncodedFrames("video", path, payloads, loop, on_close=data.close)


def _images(path: str, loop: bool) -> FrameSource:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            image_bytes, offsets, names = arrays["image_bytes"], arrays["offsets"], arrays["names"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise SourceError(f"{path}: not a FrameSet of images ({exc})") from exc
    if len(offsets) != len(names) + 1:
        raise SourceError(f"{path}: not a FrameSet of images ({len(offsets)} offsets for {len(names)} names)")

    def payloads() -> Iterator[Tuple[str, bytes]]:
        for index, name in enumerate(names):
            yield f"image {name}", image_bytes[int(offsets[index]):int(offsets[index + 1])].tobytes()

    return EncodedFrames("images", path, payloads, loop)


def decode_image(encoded: bytes) -> np.ndarray:
    """An encoded image file's pixels as RGB HWC uint8: OpenCV when present, else Pillow. ValueError or OSError
    when they cannot be decoded."""
    cv2 = opencv()
    if cv2 is not None:
        bgr = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if bgr is None:
            raise ValueError("not an image file OpenCV can decode")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as image:
        return np.asarray(image.convert("RGB"))


def pack_images(paths: Sequence[str]) -> Dict[str, np.ndarray]:
    """Image files, in the order given, as the arrays of a FrameSet (np.savez them to ship an image folder)."""
    blobs = []
    for path in paths:
        with open(path, "rb") as handle:
            blobs.append(handle.read())
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(blob) for blob in blobs])
    return {"image_bytes": np.frombuffer(b"".join(blobs), dtype=np.uint8), "offsets": offsets,
            "names": np.array([os.path.basename(path) for path in paths], dtype=str)}
