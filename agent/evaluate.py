"""On-device accuracy over a shipped evaluation set: top-1 of a classifier, or a detector's average precision.

The set is <cache>/<sha256>.npz (pickles refused): arrays x and y for top-1, a DetectionSet for detection
(agent/detection/evaluate.py). With measure.inputs synthetic it is read after the timed part of the job and
scored outside every timed and power window; with measure.inputs evaluation_set (top-1 only) agent/bench.py feeds
it to the timed runs and scores their outputs (top1_feeds, top1_of_outputs). Either way it is read after the
job's memory baseline.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from agent.spec import EvaluationSpec, InputSpec


def load_evaluation_set(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Load x, y from an .npz written by the orchestrator (pickles refused)."""
    with np.load(path, allow_pickle=False) as data:
        return data["x"], data["y"]


def top1_feeds(input_name: str, x: np.ndarray, batch: int) -> List[Dict[str, np.ndarray]]:
    """One feed per run over every sample of `x`, in order, `batch` samples each; a short last batch is padded
    with its own first sample (top1_of_outputs leaves the padding uncounted). Views of `x`, no copies but the
    padded batch."""
    feeds = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch - len(chunk), axis=0)])
        feeds.append({input_name: chunk})
    return feeds


def top1_of_outputs(first_outputs: Sequence[np.ndarray], y: np.ndarray, batch: int) -> Dict[str, Any]:
    """Top-1 accuracy from the first output of each run of top1_feeds, in order."""
    correct = 0
    for index, logits in enumerate(first_outputs):
        start = index * batch
        real = min(batch, len(y) - start)
        predicted = np.argmax(np.asarray(logits).reshape(batch, -1), axis=-1)[:real]
        correct += int(np.sum(predicted == y[start:start + real]))
    return {"metric": "top1", "value": correct / len(y) if len(y) else None, "n": int(len(y))}


def top1(session: Any, input_name: str, x: np.ndarray, y: np.ndarray, batch: int) -> Dict[str, Any]:
    """Top-1 accuracy of `session` over every sample of (x, y), `batch` samples per run.

    The batch is the one the model was timed with; a short last batch is padded
    with its own first sample and the padding is not counted.
    """
    outputs = [session.run(None, feed)[0] for feed in top1_feeds(input_name, x, batch)]
    return top1_of_outputs(outputs, y, batch)


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
