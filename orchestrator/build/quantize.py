"""Post-training quantization and fp16 conversion of ONNX artifacts.

onnxruntime.quantization does the quantizing (after its own pre-processing:
shape inference and graph optimization); onnxconverter-common converts to
fp16 with float32 inputs and outputs kept. Every combination onnxruntime
accepts is buildable, including the ones that run slowly on some CPUs: orch
measures, it does not guess.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.build import STEPS, OnnxNode
from orchestrator.build.evaluate import host_accuracy

CALIBRATION_SEED = 0


class ArrayCalibration:
    """Feeds calibration images one at a time, as onnxruntime's calibrators expect (its get_next protocol)."""

    def __init__(self, input_name: str, images: np.ndarray):
        self._batches = iter([{input_name: images[i:i + 1]} for i in range(len(images))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def calibration_images(train_x: np.ndarray, count: int) -> np.ndarray:
    """A fixed-seed sample of `count` training images."""
    pick = np.random.default_rng(CALIBRATION_SEED).permutation(len(train_x))[:count]
    return train_x[np.sort(pick)]


def quantized_bytes(source: Path, params: dict[str, Any], input_name: str, train_x: np.ndarray) -> bytes:
    """The ONNX bytes of `source` quantized (or converted to fp16) as `params` say."""
    # Imported here, not at the top: a build that finds everything cached never needs them.
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    formats = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
    calibrations = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                    "percentile": CalibrationMethod.Percentile}
    mode = params["mode"]
    if mode == "fp16":
        import onnx
        from onnxconverter_common import float16

        converted = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        return converted.SerializeToString()
    with tempfile.TemporaryDirectory(prefix="orch-quant-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
        quant_pre_process(str(source), str(prepared))
        if mode == "dynamic":
            quantize_dynamic(str(prepared), str(quantized), weight_type=types[params["weights"]],
                             per_channel=params["per_channel"])
        elif mode == "static":
            images = calibration_images(train_x, params["samples"])
            quantize_static(str(prepared), str(quantized), ArrayCalibration(input_name, images),
                            quant_format=formats[params["format"]], activation_type=types[params["activations"]],
                            weight_type=types[params["weights"]], per_channel=params["per_channel"],
                            calibrate_method=calibrations[params["calibration"]])
        else:
            raise ValueError(f"quantize mode {mode!r} builds nothing")
        return quantized.read_bytes()


class QuantizeStep:
    """Quantize (dynamic or static, any onnxruntime format and types) or convert to fp16."""

    name = "quantize"
    version = "2"
    produces = "onnx"

    def run(self, ctx: Any, parent: OnnxNode, params: dict[str, Any]) -> OnnxNode:
        source = ctx.store.path(parent.sha256, ".onnx")
        size = parent.meta["input"]["shape"][-1]
        data = quantized_bytes(source, params, parent.meta["input"]["name"], ctx.images("train", size))
        sha = ctx.store.put(data, ".onnx")
        return OnnxNode(sha, {"host_accuracy": host_accuracy(ctx, sha, size)})


STEPS.register(QuantizeStep.name)(QuantizeStep())
