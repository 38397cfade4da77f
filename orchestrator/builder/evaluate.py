"""Host-side scoring of artifacts, and size figures (parameters, MACs, sparsity) of torch models.

Heavy libraries are imported where used: a build that finds everything cached never loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def input_dtype(onnxruntime_type: str) -> Any:
    """The numpy dtype of an onnxruntime input type string such as `tensor(uint8)` (float32 when unusual)."""
    names = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
             "tensor(int8)": np.int8}
    return names.get(onnxruntime_type, np.float32)


def onnx_top1(model_path: str, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of an ONNX classifier over (x, y) on this host's CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    dtype = input_dtype(model_input.type)
    fixed_batch = model_input.shape[0] if isinstance(model_input.shape[0], int) else None
    batch = fixed_batch or batch
    # A fixed batch dimension cannot take a short last batch: those samples go unscored.
    scored = len(x) - len(x) % batch if fixed_batch else len(x)
    correct = 0
    for start in range(0, scored, batch):
        chunk = x[start:min(start + batch, scored)].astype(dtype, copy=False)
        logits = session.run(None, {model_input.name: chunk})[0]
        correct += int(np.sum(np.argmax(logits.reshape(len(chunk), -1), axis=-1) == y[start:start + len(chunk)]))
    return correct / scored if scored else float("nan")


def top1_scorable(splits: Any) -> bool:
    """True when the test split has class labels to score top-1 against (not detection, not unlabelled)."""
    return bool(splits.task == "classification" and len(splits.test_x) and int(np.min(splits.test_y)) >= 0)


def host_metric(ctx: Any) -> str | None:
    """What host_accuracy means for this recipe: `top1`, the detection data set's official headline (voc07_ap50,
    voc_ap50 or coco_ap: agent/detection/metrics.py), or None: not scored, because the recipe says
    `benchmark.accuracy: none` or the data has nothing to score against."""
    if ctx.recipe.benchmark.accuracy == "none":
        return None
    if top1_scorable(ctx.splits):
        return "top1"
    if ctx.splits.task == "detection" and ctx.splits.truth is not None and is_detector(ctx):
        return str(ctx.splits.truth.metric)
    return None


def is_detector(ctx: Any) -> bool:
    """True when the recipe's model turns into boxes (model.detection, or a zoo detector such as tiny-YOLOv2)."""
    from orchestrator.builder.detection import detection_spec

    return detection_spec(ctx) is not None


def host_accuracy(ctx: Any, sha256: str, image_size: int, decoded_by: dict[str, Any] | None = None) -> float | None:
    """The artifact's score on the test split with onnxruntime (see host_metric); None when it cannot be scored.
    decoded_by: a detector artifact's own DetectionSpec when a step changed its outputs (graph_nms)."""
    metric = host_metric(ctx)
    if metric == "top1":
        return onnx_top1(str(ctx.store.path(sha256, ".onnx")), ctx.images("test", image_size), ctx.splits.test_y)
    if metric is not None:
        from orchestrator.builder.detection import onnx_score

        return onnx_score(ctx, str(ctx.store.path(sha256, ".onnx")), image_size, decoded_by)
    return None


def torch_score(ctx: Any, model: torch.nn.Module) -> float | None:
    """host_accuracy of a torch model at the data set's image size, computed with torch."""
    metric = host_metric(ctx)
    if metric == "top1":
        return torch_top1(model, ctx.splits.test_x, ctx.splits.test_y)
    if metric is not None:
        from orchestrator.builder.detection import torch_score as detection_torch_score

        return detection_torch_score(ctx, model)
    return None


def torch_top1(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of a torch classifier over (x, y), in eval mode, on this host's CPU."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch):
            logits = model(torch.from_numpy(x[start:start + batch]))
            correct += int((logits.argmax(dim=1).numpy() == y[start:start + batch]).sum())
    return correct / len(x) if len(x) else float("nan")


def size_figures(model: torch.nn.Module, example_input: torch.Tensor) -> dict[str, Any]:
    """Parameter count, multiply-accumulates per inference, and weight sparsity of a torch model."""
    import torch_pruning as tp

    model = model.eval()
    macs, params = tp.utils.count_ops_and_params(model, example_input)
    weights = [p.detach() for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    return {"params": int(params), "macs": int(macs), "sparsity": zeros / total if total else 0.0}
