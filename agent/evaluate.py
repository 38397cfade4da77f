"""On-device accuracy over a shipped evaluation set (arrays x and y in an .npz)."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np


def load_evaluation_set(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Load x, y from an .npz written by the orchestrator (pickles refused)."""
    with np.load(path, allow_pickle=False) as data:
        return data["x"], data["y"]


def top1(session: Any, input_name: str, x: np.ndarray, y: np.ndarray, batch: int) -> Dict[str, Any]:
    """Top-1 accuracy of `session` over every sample of (x, y), `batch` samples per run.

    The batch is the one the model was timed with; a short last batch is padded
    with its own first sample and the padding is not counted.
    """
    correct = 0
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        real = len(chunk)
        if real < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch - real, axis=0)])
        logits = session.run(None, {input_name: chunk})[0]
        predicted = np.argmax(logits.reshape(batch, -1), axis=-1)[:real]
        correct += int(np.sum(predicted == y[start:start + real]))
    return {"metric": "top1", "value": correct / len(x) if len(x) else None, "n": int(len(x))}
