"""Export a torch model to ONE self-contained ONNX file in the artifact store."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.builder import STEPS, OnnxNode, TorchNode
from orchestrator.builder.context import INPUT_NAME, OUTPUT_NAME
from orchestrator.builder.evaluate import host_accuracy, host_metric, size_figures
from orchestrator.errors import BuildError, first_line

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
        # TrainingMode.PRESERVE on a model in eval mode exports inference-mode
        # BatchNormalization nodes as they are: the default (EVAL) would fold every
        # BatchNorm into its conv on the quiet, making the fold_bn step unobservable.
        torch.onnx.export(model.eval(), (example_input,), str(target), dynamo=False, opset_version=opset,
                          training=torch.onnx.TrainingMode.PRESERVE,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
        data = target.read_bytes()
    onnx.checker.check_model(onnx.load_from_string(data))
    return data


def check_input_size(model: torch.nn.Module, example_input: torch.Tensor) -> None:
    """Run the model once at the export size; BuildError if it cannot take that input (e.g. a fixed flatten)."""
    import torch

    size = "x".join(str(side) for side in example_input.shape[2:])
    try:
        with torch.no_grad():
            model.eval()(example_input)
    except RuntimeError as exc:  # torch reports shape mismatches as RuntimeError
        raise BuildError(f"input_size {size}: {type(model).__name__} cannot take a {size} input "
                         f"({first_line(exc)}); choose sizes the model accepts") from exc


class ExportStep:
    """Export the parent torch model to ONNX and score it on the host."""

    name = "export"
    version = "4"  # 4: detectors scored by the boards' own code; 3: portable opset imports
    produces = "onnx"

    def run(self, ctx: Any, parent: TorchNode, params: dict[str, Any]) -> OnnxNode:
        example = ctx.example_input(params["image_size"])
        check_input_size(parent.model, example)
        model_input = {"name": INPUT_NAME, "shape": list(example.shape), "dtype": "float32"}
        sha, facts = ctx.put_onnx(export_bytes(parent.model, example, params["opset"]), model_input)
        meta = {**size_figures(parent.model, example), **facts, "input": model_input}
        meta["host_accuracy"] = host_accuracy(ctx, sha, params["image_size"])
        meta["host_metric"] = host_metric(ctx)
        return OnnxNode(sha, meta)


STEPS.register(ExportStep.name)(ExportStep())
