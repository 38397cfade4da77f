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
import logging
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator.artifacts import sha256_bytes
from orchestrator.builder import STEPS, OnnxNode
from orchestrator.builder.evaluate import host_accuracy
from orchestrator.builder.onnx_source import converted, image_side, opsets
from orchestrator.builder.portable import portable_bytes
from orchestrator.errors import BuildError, first_line
from orchestrator.recipes import QuantizeSpec

if TYPE_CHECKING:
    import onnx

CALIBRATION_SEED = 0
# Images each variant is compared with the model it came from on (its `agreement`).
AGREEMENT_IMAGES = 16
# The lowest ai.onnx opset orch quantizes at: per-channel QDQ (DequantizeLinear with an axis) needs 13.
QUANTIZATION_OPSET = 13
# Op types fp16 conversion may keep in float32 before giving up on a model.
MAX_FP16_FALLBACKS = 16


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


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """onnxruntime.quantization logs advice to the root logger and prints progress, and the fp16 converter warns of
    every weight it rounds: all of it would land on the CLI's terminal, in the middle of its progress bars (the
    result's `agreement` says what the rounding cost)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        root.setLevel(level)


def at_quantization_opset(source: Path, folder: Path) -> Path:
    """`source`, or a copy in `folder` raised to QUANTIZATION_OPSET when it imports an older ai.onnx (a file from
    elsewhere, or a portable artifact, which imports the oldest opset its ops allow)."""
    import onnx

    model = onnx.load(str(source))
    if opsets(model).get("", 1) >= QUANTIZATION_OPSET:
        return source
    raised = folder / "opset.onnx"
    onnx.save(converted(model, QUANTIZATION_OPSET, f"quantization needs opset {QUANTIZATION_OPSET}"), str(raised))
    return raised


def quantized_bytes(source: Path, params: dict[str, Any], input_name: str, train_x: np.ndarray,
                    ranges_dir: Path | None = None, exclude: list[str] | None = None) -> bytes:
    """The ONNX bytes of `source` quantized (or converted to fp16) as `params` say, the nodes named in `exclude`
    left in float; static calibration ranges are kept in `ranges_dir` for the next static variant of the same
    model (absent: not kept)."""
    # Imported here, not at the top: a build that finds everything cached never needs them.
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    formats = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
    mode = params["mode"]
    if mode == "fp16":
        return fp16_bytes(source, input_name, train_x[:1])[0]
    with tempfile.TemporaryDirectory(prefix="orch-quant-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
        quant_pre_process(str(at_quantization_opset(source, Path(tmp))), str(prepared))
        if mode == "dynamic":
            quantize_dynamic(str(prepared), str(quantized), weight_type=types[params["weights"]],
                             per_channel=params["per_channel"], nodes_to_exclude=exclude or [])
        elif mode == "static":
            images = calibration_images(train_x, params["samples"])
            key = ranges_key(source, params["calibration"], params["samples"])
            ranges = calibrated_ranges(prepared, params["calibration"], images, input_name,
                                       (ranges_dir or Path(tmp)) / f"{key}.json")
            quantize_static(str(prepared), str(quantized), None, calibration_cache_path=str(ranges),
                            quant_format=formats[params["format"]], activation_type=types[params["activations"]],
                            weight_type=types[params["weights"]], per_channel=params["per_channel"],
                            calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[params["calibration"]]),
                            nodes_to_exclude=exclude or [])
        else:
            raise ValueError(f"quantize mode {mode!r} builds nothing")
        return quantized.read_bytes()


def fp16_bytes(source: Path, input_name: str, example: np.ndarray) -> tuple[bytes, list[str]]:
    """`source` in float16 with float32 inputs and outputs kept (onnxconverter-common); an op that onnxruntime's
    CPU provider has no float16 kernel for stays float32, found by trying. The bytes, and the ops kept float32."""
    import onnx
    import onnxruntime as ort
    from onnxconverter_common import float16

    original = separate_outputs(onnx.load(str(source)))
    op_types = {node.name: node.op_type for node in original.graph.node if node.name}
    # The converter leaves a Cast's target type as it was (a cast to float32 then feeds float16 ops): kept in
    # float32, it is followed by the converter's own cast to float16.
    kept: list[str] = ["Cast"]
    while len(kept) <= MAX_FP16_FALLBACKS:
        model = float16.convert_float_to_float16(onnx.ModelProto.FromString(original.SerializeToString()),
                                                 keep_io_types=True,
                                                 op_block_list=float16.DEFAULT_OP_BLOCK_LIST + kept)
        del model.graph.value_info[:]  # the converter's guesses of intermediate types can be stale: let them go
        data: bytes = model.SerializeToString()
        try:
            ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {input_name: example})
            return data, kept[1:]
        except Exception as exc:  # onnxruntime's errors come in several types; only an op's own refusal is retried
            culprit = _fp16_culprit(str(exc), op_types)
            if culprit is None or culprit in kept:
                raise
            kept.append(culprit)
    raise BuildError(f"float16 needs more than {MAX_FP16_FALLBACKS} op types kept in float32 ({', '.join(kept)})")


def separate_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph, with every graph output that other nodes also read given its own Identity: the fp16
    converter (keep_io_types) otherwise feeds those nodes its float32 copy, or loops forever on them."""
    from onnx import helper

    outputs = {output.name for output in model.graph.output}
    for name in outputs & {tensor for node in model.graph.node for tensor in node.input}:
        inner = f"{name}__orch_inner"
        for node in model.graph.node:
            node.input[:] = [inner if tensor == name else tensor for tensor in node.input]
            node.output[:] = [inner if tensor == name else tensor for tensor in node.output]
        model.graph.node.append(helper.make_node("Identity", [inner], [name]))
    return model


def _fp16_culprit(message: str, op_types: dict[str, str]) -> str | None:
    """The op type onnxruntime refused in float16: one it has no float16 kernel for, or a node whose float16 form
    the converter got wrong (a Cast that still says float32)."""
    missing = re.search(r"Could not find an implementation for (\w+)\(", message)
    if missing:
        return missing.group(1)
    node = re.search(r"(?:of|in) node \(([^)]*)\)", message)
    return op_types.get(node.group(1)) if node else None


def agreement(source: Path, data: bytes, input_name: str, images: np.ndarray) -> dict[str, Any]:
    """How closely `data` (a variant of `source`) reproduces its outputs on `images`: the mean relative L2 error
    of the outputs the two share in shape, and how often their top-1 classes agree (classifier outputs only).
    A variant that does not run, or answers NaN or infinity, is a BuildError."""
    import onnxruntime as ort

    reference = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    try:
        variant = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        results = [(reference.run(None, {input_name: image[None]}), variant.run(None, {input_name: image[None]}))
                   for image in images]
    except Exception as exc:  # onnxruntime's errors come in several types; the cause is kept
        raise BuildError(f"onnxruntime cannot run the result: {first_line(exc)}") from exc
    errors: list[float] = []
    same: list[bool] = []
    for expected, got in results:
        if not all(np.isfinite(out).all() for out in got if np.issubdtype(out.dtype, np.floating)):
            raise BuildError("the result answers NaN or infinity where the model it came from does not")
        pairs = [(e.astype(np.float64), g.astype(np.float64)) for e, g in zip(expected, got, strict=True)
                 if e.shape == g.shape and np.issubdtype(e.dtype, np.floating)]
        errors.extend(float(np.linalg.norm(e - g)) / max(float(np.linalg.norm(e)), 1e-12) for e, g in pairs)
        if pairs and pairs[0][0].size > 1:
            same.append(int(np.argmax(pairs[0][0])) == int(np.argmax(pairs[0][1])))
    return {"relative_error": float(np.mean(errors)) if errors else None,
            "top1_agreement": float(np.mean(same)) if same else None, "n": len(results)}


class QuantizeStep:
    """Quantize (dynamic or static, any onnxruntime format and types) or convert to fp16."""

    name = "quantize"
    version = "6"  # 6: detectors scored by the boards' code; 5: opset raised, portable, for a target's kernels
    produces = "onnx"

    def run(self, ctx: Any, parent: OnnxNode, params: dict[str, Any]) -> OnnxNode:
        source = ctx.store.path(parent.sha256, ".onnx")
        model_input = parent.meta["input"]
        size = image_side(model_input)
        images = ctx.images("train", size)
        setting = QuantizeSpec(**{**{k: v for k, v in params.items() if k != "target"}, "samples": None}).label
        try:
            data, facts, kept_float = self._for_target(ctx, source, params, model_input, images)
            fidelity = agreement(source, data, model_input["name"], calibration_images(images, AGREEMENT_IMAGES))
        except BuildError as exc:
            raise BuildError(f"quantize ({setting}): {exc}") from exc
        except Exception as exc:  # onnxruntime.quantization raises assorted types by op and setting; cause kept
            raise BuildError(f"quantize ({setting}): {type(exc).__name__}: {first_line(exc)}") from exc
        sha = ctx.store.put(data, ".onnx")
        meta = {**facts, "host_accuracy": host_accuracy(ctx, sha, size), "agreement": fidelity}
        return OnnxNode(sha, {**meta, "kept_float": kept_float} if kept_float else meta)

    @staticmethod
    def _for_target(ctx: Any, source: Path, params: dict[str, Any], model_input: dict[str, Any],
                    images: np.ndarray) -> tuple[bytes, dict[str, Any], list[str]]:
        """The quantized, portable bytes, their facts, and the nodes left in float because the target runtime
        has no kernel for their quantized form (each round leaves out the nodes the last one could not run)."""
        import onnx

        from orchestrator.runtimes import missing_kernels, requirements

        kept_float: list[str] = []
        float_nodes = {node.name for node in onnx.load(str(source)).graph.node}
        while True:
            with quiet():
                data = quantized_bytes(source, params, model_input["name"], images,
                                       ranges_dir=ctx.store.root / "calibration", exclude=kept_float)
            data, facts = portable_bytes(data, model_input)
            if ctx.target is None or ctx.target.kernels is None:
                return data, facts, kept_float
            missing = missing_kernels(requirements(onnx.load_model_from_string(data)), ctx.target,
                                      list(ctx.recipe.benchmark.providers))
            if not missing:
                return data, facts, kept_float
            names = sorted({name for need in missing if (name := _float_node(need.name)) in float_nodes} -
                           set(kept_float))
            if not names:
                raise BuildError(f"onnxruntime {ctx.target.version} has no kernel for "
                                 f"{', '.join(sorted({need.describe() for need in missing}))}")
            kept_float += names


def _float_node(name: str) -> str:
    """The float node a quantized node was made from (onnxruntime names it `<name>_quant`)."""
    return name.removesuffix("_quant")


STEPS.register(QuantizeStep.name)(QuantizeStep())
