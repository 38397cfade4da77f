"""Bring-your-own ONNX on files nobody on the team wrote: the model zoo classifiers that ship in the onnx wheel.

The wheel's `backend/test/data/light/` models are the real zoo graphs (IR version 3, opset 9, every initializer
also a graph input) with constant weights, so top-1 on an image folder means nothing for them: what each line
reports is whether every quantize preset and fp16 builds and measures `ok` on `local`, its p50 latency and
size, and how far its outputs are from the fp32 model's (`output error`, mean relative L2 on calibration images).
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx

from orchestrator.lab import Lab
from tests.support.onnx_models import write_colour_folder

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = ("squeezenet", "resnet50", "densenet121", "shufflenet", "inception_v1")
PRESETS = ("none", "fp16", "dynamic_uint8", "dynamic_int8", "int8_static", "uint8_static", "int8_static_qoperator")
RECIPE = """\
name: zoo-{model}
model: {{onnx: {path}}}
dataset: {{name: image_folder, root: images, image_size: 224}}
variants:
  quantize: [{presets}]
  calibration_samples: 8
benchmark:
  warmup: {{min_iters: 3, min_s: 0.05}}
  measure: {{min_iters: 64, min_s: 0.2, max_s: 30}}
"""


def run() -> Iterator[tuple[str, float, str]]:
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        folder = Path(tmp)
        write_colour_folder(folder / "images", per_class=4)
        for model in MODELS:
            recipe = folder / f"{model}.yaml"
            recipe.write_text(RECIPE.format(model=model, path=LIGHT / f"light_{model}.onnx",
                                            presets=", ".join(PRESETS)))
            lab = Lab(db=str(folder / "results.db"), artifacts=folder / "artifacts")
            report = lab.sweep(recipe, "local")
            with sqlite3.connect(folder / "results.db") as db:
                rows = db.execute(
                    "SELECT v.name, r.status, r.p50_ms, v.file_size_bytes, r.accuracy, v.output_error, r.error "
                    "FROM results r JOIN variants v ON v.sha256 = r.variant_sha256 WHERE r.sweep_id = ? "
                    "ORDER BY r.id", (report.sweep_id,)).fetchall()
            for name, status, p50, size, top1, error, why in rows:
                details = f"{status}, {size / 1024:.0f} KB, top-1 {100 * (top1 or 0):.1f}%, output error " + \
                    ("-" if error is None else f"{error:.3f}") + (f", {why}" if why else "")
                yield f"light_{model} {name} p50 ({details})", p50 or float("nan"), "ms"
