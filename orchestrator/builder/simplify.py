"""Graph simplification with onnxslim: constant folding, dead and duplicate node removal, fusions that keep the
standard operator set (the thesis's "Simplify" option), for ONNX sources and torch-built variants alike."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from orchestrator.builder import STEPS, OnnxNode
from orchestrator.builder.evaluate import host_accuracy
from orchestrator.builder.onnx_source import check_runs, image_side
from orchestrator.errors import BuildError, first_line


class SimplifyStep:
    """Simplify the graph (onnxslim); the node counts before and after go with the variant."""

    name = "simplify"
    version = "3"  # 3: detectors scored by the boards' code; 2: portable opset imports
    produces = "onnx"

    def run(self, ctx: Any, parent: OnnxNode, params: dict[str, Any]) -> OnnxNode:
        import onnx
        import onnxslim

        model = onnx.load(str(ctx.store.path(parent.sha256, ".onnx")))
        before = len(model.graph.node)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # it reports progress on stdout, which is the CLI's
                simplified = onnxslim.slim(model)
        except Exception as exc:  # onnxslim raises what its passes raise; the cause is kept
            raise BuildError(f"simplify: onnxslim failed: {type(exc).__name__}: {first_line(exc)}") from exc
        data = simplified.SerializeToString()
        check_runs(data, parent.meta["input"], "simplify")
        sha, facts = ctx.put_onnx(data, parent.meta["input"])
        return OnnxNode(sha, {**facts, "nodes_before_simplify": before, "nodes_after_simplify": facts["onnx_nodes"],
                              "host_accuracy": host_accuracy(ctx, sha, image_side(parent.meta["input"]))})


STEPS.register(SimplifyStep.name)(SimplifyStep())
