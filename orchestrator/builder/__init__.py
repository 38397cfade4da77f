"""The builder: turns a recipe into variant artifacts, one module per build step, registered by name in STEPS.

Contract of a step: an object with
  name      the name recipes and lineages use
  version   bumped whenever the step's output for the same parameters changes;
            part of the build-cache key
  produces  "torch" (a model in memory, checkpointed) or "onnx" (an artifact)
  checkpoint (optional, default True) False for a torch step that is cheap and
            deterministic from its parent: the Builder does not checkpoint its
            output and re-runs it from the parent when a child needs it
  run(ctx, parent, params) -> TorchNode | OnnxNode

The meta a step returns is merged over its parent's, and also kept in the
step's own lineage record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.registry import Registry


@dataclass
class TorchNode:
    """A torch model produced by a step, with what is known about it so far."""

    model: Any
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class OnnxNode:
    """An ONNX artifact in the store, with its metadata."""

    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)


class BuildStep(Protocol):
    name: str
    version: str
    produces: str

    # parent is what the previous step produced (None for the first step)
    def run(self, ctx: Any, parent: Any, params: dict[str, Any]) -> TorchNode | OnnxNode: ...


# Each step's module registers it when first asked for (agent/registry.py): importing this package
# imports no step, so a fully cached build never imports torch.
STEPS: Registry[BuildStep] = Registry("build step", modules={
    **{name: f"orchestrator.builder.{name}" for name in ("export", "prune", "quantize", "sparsify")},
    "fold_bn": "orchestrator.builder.fold", "iterative_prune": "orchestrator.builder.iterative",
    "train": "orchestrator.builder.train", "finetune": "orchestrator.builder.train",
    "import_onnx": "orchestrator.builder.onnx_source", "resize_input": "orchestrator.builder.onnx_source",
    "convert_opset": "orchestrator.builder.onnx_source", "limit_opset": "orchestrator.builder.onnx_source",
    "simplify": "orchestrator.builder.simplify", "graph_nms": "orchestrator.builder.graph_nms",
    "import_weights": "orchestrator.builder.baseline"})
