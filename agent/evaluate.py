"""On-device accuracy over a shipped evaluation set: top-1 of a classifier, or a detector's average precision.

The set is <cache>/<sha256>.npz (pickles refused): arrays x and y for top-1, a DetectionSet for detection
(agent/detection/evaluate.py). It is read after the timed part of the job, so it never counts in the job's
memory baseline, and scored outside every timed and power window.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from agent.spec import EvaluationSpec, InputSpec


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


def accuracy(session: Any, model_input: InputSpec, evaluation: EvaluationSpec, path: str) -> Dict[str, Any]:
    """The accuracy part of a result: `evaluation.metric` of `session` over the set at `path`."""
    if evaluation.metric == "top1":
        x, y = load_evaluation_set(path)
        return top1(session, model_input.name, x.astype(model_input.dtype, copy=False), y,
                    batch=model_input.shape[0])
    from agent.detection.decoders import DetectionSpec
    from agent.detection.evaluate import DetectionSet, evaluate
    from agent.preprocess import Preprocess

    with np.load(path, allow_pickle=False) as data:
        dataset = DetectionSet.from_arrays({name: data[name] for name in data.files})
    output_names = [output.name for output in session.get_outputs()]

    def run(inputs: np.ndarray) -> Any:
        return session.run(None, {model_input.name: inputs})

    return evaluate(run, output_names, dataset, Preprocess(**(evaluation.preprocess or {})),
                    DetectionSpec.from_dict(evaluation.detection or {}), evaluation.class_map or [],
                    batch=model_input.shape[0], keep_detections=evaluation.keep_detections)
