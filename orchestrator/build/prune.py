"""Structured channel pruning with torch-pruning: channels are physically removed.

`ratio` is the fraction of each layer's output channels removed (per layer,
not global); the layers a model lists in keep_outputs() keep theirs.
"""

from __future__ import annotations

import copy
from typing import Any

import torch_pruning as tp

from orchestrator.build import STEPS, TorchNode

IMPORTANCE = {"l1": lambda: tp.importance.MagnitudeImportance(p=1)}


class PruneStep:
    """Remove the least important output channels of every prunable layer."""

    name = "prune"
    version = "1"
    produces = "torch"

    def run(self, ctx: Any, parent: TorchNode, params: dict[str, Any]) -> TorchNode:
        model = copy.deepcopy(parent.model).eval()
        pruner = tp.pruner.MetaPruner(
            model, ctx.example_input(), importance=IMPORTANCE[params["method"]](),
            pruning_ratio=params["ratio"], ignored_layers=model.keep_outputs())
        pruner.step()
        return TorchNode(model)


STEPS.register(PruneStep.name)(PruneStep())
