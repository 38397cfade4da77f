"""Post-training quantization and fp16 conversion of ONNX artifacts.

onnxruntime.quantization does the quantizing (after its own pre-processing:
shape inference and graph optimization); onnxconverter-common converts to
fp16 with float32 inputs and outputs kept. Every combination onnxruntime
accepts is buildable, including the ones that run slowly on some CPUs: orch
measures, it does not guess.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.artifacts import sha256_bytes
from orchestrator.builder import STEPS, OnnxNode, first_line
from orchestrator.builder.evaluate import host_accuracy
from orchestrator.errors import BuildError

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


# Recipe name -> onnxruntime.quantization.CalibrationMethod member.
CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
# onnxruntime's quantize_static cannot pass histogram sizes to its calibrators, and with its
# entropy defaults (128 histogram bins, 128 quantized bins) the KL-divergence search has a
# single candidate, the full range: "entropy" then gives exactly MinMax's ranges
# (microsoft/onnxruntime#9597, #10261). orch runs the calibrator itself with 2048 histogram
# bins (the value proposed in #10261, and onnxruntime's own default for percentile) and the
# default 128 quantized bins, and hands the ranges to quantize_static through its calibration
# cache. (255 quantized bins, MXNet's choice, wrecked the quickstart model: 12% top-1.)
CALIBRATOR_OPTIONS: dict[str, dict[str, Any]] = {
    "minmax": {}, "entropy": {"num_bins": 2048, "num_quantized_bins": 128}, "percentile": {}}


def calibrated_ranges(prepared: Path, calibration: str, images: np.ndarray, input_name: str, cache: Path) -> Path:
    """onnxruntime's `calibration` calibrator run over `images`: its tensor ranges as a calibration cache file.

    The ranges depend only on the model, the method and the images, so every static variant of one
    model (QDQ or QOperator, int8 or uint8, per channel or not) reuses them from `cache` once written.
    """
    if cache.is_file():
        return cache
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    with tempfile.TemporaryDirectory(prefix="orch-calibrate-") as tmp:
        calibrator = create_calibrator(prepared, [], augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[calibration]),
                                       extra_options=CALIBRATOR_OPTIONS[calibration])
        # The histogram calibrators print their progress to stdout, which is the CLI's.
        with contextlib.redirect_stdout(io.StringIO()):
            calibrator.collect_data(ArrayCalibration(input_name, images))
            ranges = calibrator.compute_data()
    save_tensors_data(ranges, cache)  # written atomically
    return cache


def ranges_key(source: Path, calibration: str, samples: int) -> str:
    """What calibration ranges depend on: the model's bytes, the method and its options, the images."""
    body = {"model": sha256_bytes(source.read_bytes()), "calibration": calibration, "samples": samples,
            "options": CALIBRATOR_OPTIONS[calibration], "seed": CALIBRATION_SEED}
    return sha256_bytes(json.dumps(body, sort_keys=True).encode())


def quantized_bytes(source: Path, params: dict[str, Any], input_name: str, train_x: np.ndarray,
                    ranges_dir: Path | None = None) -> bytes:
    """The ONNX bytes of `source` quantized (or converted to fp16) as `params` say; static calibration
    ranges are kept in `ranges_dir` for the next static variant of the same model (absent: not kept)."""
    # Imported here, not at the top: a build that finds everything cached never needs them.
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    formats = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
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
            key = ranges_key(source, params["calibration"], params["samples"])
            ranges = calibrated_ranges(prepared, params["calibration"], images, input_name,
                                       (ranges_dir or Path(tmp)) / f"{key}.json")
            quantize_static(str(prepared), str(quantized), None, calibration_cache_path=str(ranges),
                            quant_format=formats[params["format"]], activation_type=types[params["activations"]],
                            weight_type=types[params["weights"]], per_channel=params["per_channel"],
                            calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[params["calibration"]]))
        else:
            raise ValueError(f"quantize mode {mode!r} builds nothing")
        return quantized.read_bytes()


class QuantizeStep:
    """Quantize (dynamic or static, any onnxruntime format and types) or convert to fp16."""

    name = "quantize"
    version = "3"  # 3: entropy calibration searches a 2048-bin histogram (it gave MinMax's ranges)
    produces = "onnx"

    def run(self, ctx: Any, parent: OnnxNode, params: dict[str, Any]) -> OnnxNode:
        source = ctx.store.path(parent.sha256, ".onnx")
        size = parent.meta["input"]["shape"][-1]
        try:
            data = quantized_bytes(source, params, parent.meta["input"]["name"], ctx.images("train", size),
                                   ranges_dir=ctx.store.root / "calibration")
        except Exception as exc:  # onnxruntime.quantization raises assorted types by op and setting; cause kept
            setting = ", ".join(f"{key}={value}" for key, value in params.items())
            raise BuildError(f"quantize ({setting}): {type(exc).__name__}: {first_line(exc)}") from exc
        sha = ctx.store.put(data, ".onnx")
        return OnnxNode(sha, {"host_accuracy": host_accuracy(ctx, sha, size)})


STEPS.register(QuantizeStep.name)(QuantizeStep())
