"""Host-side scoring of models and artifacts, and size figures (parameters, MACs, sparsity)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import torch
import torch_pruning as tp


def onnx_top1(model_path: str, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of an ONNX classifier over (x, y) on this host's CPU."""
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    correct = 0
    for start in range(0, len(x), batch):
        logits = session.run(None, {input_name: x[start:start + batch]})[0]
        correct += int(np.sum(np.argmax(logits, axis=-1) == y[start:start + batch]))
    return correct / len(x)


def size_figures(model: torch.nn.Module, example_input: torch.Tensor) -> dict[str, Any]:
    """Parameter count, multiply-accumulates per inference, and weight sparsity of a torch model."""
    model = model.eval()
    macs, params = tp.utils.count_ops_and_params(model, example_input)
    weights = [p.detach() for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    return {"params": int(params), "macs": int(macs), "sparsity": zeros / total if total else 0.0}
