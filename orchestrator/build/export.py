"""Export a torch model to ONE self-contained ONNX file in the artifact store."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.build import STEPS, OnnxNode, TorchNode
from orchestrator.build.context import INPUT_NAME, OUTPUT_NAME
from orchestrator.build.evaluate import host_accuracy, size_figures

if TYPE_CHECKING:
    import torch


def export_bytes(model: torch.nn.Module, example_input: torch.Tensor, opset: int = 17) -> bytes:
    """ONNX bytes of `model`, batch dimension dynamic, weights embedded (no .onnx.data file)."""
    import onnx
    import torch

    with tempfile.TemporaryDirectory(prefix="orch-export-") as tmp, warnings.catch_warnings():
        target = Path(tmp) / "model.onnx"
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False): in torch 2.13 the dynamo one is
        # the default, takes ~20x longer on these small nets and needs onnxscript;
        # its graphs are no better for onnxruntime here.
        torch.onnx.export(model.eval(), (example_input,), str(target), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
        data = target.read_bytes()
    onnx.checker.check_model(onnx.load_from_string(data))
    return data


class ExportStep:
    """Export the parent torch model to ONNX and score it on the host."""

    name = "export"
    version = "1"
    produces = "onnx"

    def run(self, ctx: Any, parent: TorchNode, params: dict[str, Any]) -> OnnxNode:
        example = ctx.example_input(params["image_size"])
        sha = ctx.store.put(export_bytes(parent.model, example, params["opset"]), ".onnx")
        meta = size_figures(parent.model, example)
        meta["input"] = {"name": INPUT_NAME, "shape": list(example.shape), "dtype": "float32"}
        meta["host_accuracy"] = host_accuracy(ctx, sha, params["image_size"])
        return OnnxNode(sha, meta)


STEPS.register(ExportStep.name)(ExportStep())
