"""Unstructured magnitude pruning with torch.nn.utils.prune: individual weights are zeroed.

Every convolution and linear layer's weight takes part. Scope `global` ranks
all those weights together by |w| (global_unstructured, L1), so layers lose
different fractions; `per_layer` zeroes `ratio` of each layer's own weights
(l1_unstructured). The masks are made permanent (prune.remove) so the model
exports as a plain dense graph: the zeros are in the file, but the file keeps
its size and onnxruntime's dense kernels do the same work.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from orchestrator.builder import STEPS, TorchNode

if TYPE_CHECKING:
    from torch import nn

DENSE_NOTE = ("unstructured sparsity: weights are zeroed in place; the dense ONNX file keeps its size and "
              "MACs, so only a sparse-aware runtime or a compressor would gain from it")


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, "weight") for every convolution and linear layer, in module order."""
    from torch import nn

    return [(module, "weight") for module in model.modules() if isinstance(module, nn.modules.conv._ConvNd | nn.Linear)]


def weight_sparsity(targets: list[tuple[nn.Module, str]]) -> float:
    """Fraction of exactly-zero values over the targets' weights."""
    total = sum(getattr(module, name).numel() for module, name in targets)
    zeros = sum(int((getattr(module, name) == 0).sum()) for module, name in targets)
    return zeros / total if total else 0.0


def sparsify(model: nn.Module, ratio: float, scope: str) -> float:
    """Zero `ratio` of the convolution and linear weights by magnitude, in place; the achieved sparsity."""
    from torch.nn.utils import prune

    targets = prunable_weights(model)
    if scope == "global":
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=ratio)
    else:
        for module, name in targets:
            prune.l1_unstructured(module, name, amount=ratio)
    for module, name in targets:
        prune.remove(module, name)
    return weight_sparsity(targets)


class SparsifyStep:
    """Zero the smallest-magnitude weights (globally or per layer); the dense file does not shrink."""

    name = "sparsify"
    version = "1"
    produces = "torch"
    checkpoint = False  # deterministic and quick from its parent

    def run(self, ctx: Any, parent: TorchNode, params: dict[str, Any]) -> TorchNode:
        model = copy.deepcopy(parent.model).eval()
        achieved = sparsify(model, params["ratio"], params["scope"])
        return TorchNode(model, {"sparsity_target": params["ratio"], "sparsity_scope": params["scope"],
                                 "sparsity_achieved": round(achieved, 6), "note": DENSE_NOTE})


STEPS.register(SparsifyStep.name)(SparsifyStep())
