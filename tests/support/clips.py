"""Video clips for the pipeline tests, written by OpenCV as a user's camera recorder writes them: MJPEG in AVI."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (b, g, r) of the moving boxes: the colours the detection fixtures draw their classes in.
BOX_COLOURS = ((40, 40, 220), (40, 200, 40), (220, 120, 30))


def write_clip(path: Path, frames: int, size: tuple[int, int] = (640, 480), fps: float = 15.0,
               fourcc: str = "MJPG", seed: int = 0) -> Path:
    """A clip of `frames` frames (width, height = size): boxes of the fixture colours gliding over grey."""
    import cv2

    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} to {path}")
    rng = np.random.default_rng(seed)
    starts = rng.uniform(0.1, 0.6, size=(len(BOX_COLOURS), 2)) * (width, height)
    sides = rng.uniform(0.15, 0.3, size=(len(BOX_COLOURS), 2)) * (width, height)
    for index in range(frames):
        frame = np.full((height, width, 3), 128, dtype=np.uint8)
        for colour, start, side in zip(BOX_COLOURS, starts, sides, strict=True):
            x, y = (start + index * np.array([2.0, 1.0])).astype(int)
            frame[y:y + int(side[1]), x:x + int(side[0])] = colour
        writer.write(frame)
    writer.release()
    return path
