"""Post-training quantization with onnxruntime.quantization (after its pre-processing)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from orchestrator.build import STEPS, OnnxNode
from orchestrator.build.evaluate import onnx_top1

CALIBRATION_SEED = 0


class ArrayCalibration(CalibrationDataReader):
    """Feeds calibration images one at a time, as onnxruntime's calibrators expect."""

    def __init__(self, input_name: str, images: np.ndarray):
        self._batches = iter([{input_name: images[i:i + 1]} for i in range(len(images))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def calibration_images(train_x: np.ndarray, count: int) -> np.ndarray:
    """A fixed-seed sample of `count` training images."""
    pick = np.random.default_rng(CALIBRATION_SEED).permutation(len(train_x))[:count]
    return train_x[np.sort(pick)]


class QuantizeStep:
    """int8_static: QDQ format, int8 weights and activations, MinMax calibration on training images."""

    name = "quantize"
    version = "1"
    produces = "onnx"

    def run(self, ctx: Any, parent: OnnxNode, params: dict[str, Any]) -> OnnxNode:
        if params["mode"] != "int8_static":
            raise ValueError(f"quantize mode {params['mode']!r} is not supported")
        with tempfile.TemporaryDirectory(prefix="orch-quant-") as tmp:
            prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
            quant_pre_process(str(ctx.store.path(parent.sha256, ".onnx")), str(prepared))
            images = calibration_images(ctx.splits.train_x, params["calibration_samples"])
            quantize_static(str(prepared), str(quantized),
                            ArrayCalibration(parent.meta["input"]["name"], images),
                            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
            sha = ctx.store.put(quantized.read_bytes(), ".onnx")
        meta = dict(parent.meta)
        meta["host_accuracy"] = onnx_top1(str(ctx.store.path(sha, ".onnx")), ctx.splits.test_x, ctx.splits.test_y)
        return OnnxNode(sha, meta)


STEPS.register(QuantizeStep.name)(QuantizeStep())
