"""Host-side scoring of artifacts, and size figures (parameters, MACs, sparsity) of torch models.

Heavy libraries are imported where used: a build that finds everything cached never loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def onnx_top1(model_path: str, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of an ONNX classifier over (x, y) on this host's CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
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


def host_accuracy(ctx: Any, sha256: str, image_size: int) -> float | None:
    """Top-1 on the test split for a labelled classification data set; None when it cannot be scored."""
    splits = ctx.splits
    if splits.task != "classification" or not len(splits.test_x) or int(np.min(splits.test_y)) < 0:
        return None
    return onnx_top1(str(ctx.store.path(sha256, ".onnx")), ctx.images("test", image_size), splits.test_y)


def size_figures(model: torch.nn.Module, example_input: torch.Tensor) -> dict[str, Any]:
    """Parameter count, multiply-accumulates per inference, and weight sparsity of a torch model."""
    import torch_pruning as tp

    model = model.eval()
    macs, params = tp.utils.count_ops_and_params(model, example_input)
    weights = [p.detach() for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    return {"params": int(params), "macs": int(macs), "sparsity": zeros / total if total else 0.0}
