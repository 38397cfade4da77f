"""Iterative structured pruning: N rounds of (prune to the next fraction -> fine-tune -> evaluate).

torch-pruning's MetaPruner schedules the fractions itself (iterative_steps,
linear by default: ratio * k / N after round k, each fraction of the layer's
*original* channels), so the same pruner object is kept across the rounds and
fine-tuning updates the model in place between its steps. The figures after
every round (ratio, MACs, parameters, host top-1 with torch on the test
split) are the step's meta `iterations`, round 0 being the parent model:
the "accuracy over iterations" curve of a pruning study.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from orchestrator.builder import STEPS, TorchNode
from orchestrator.builder.evaluate import host_metric, size_figures, torch_score
from orchestrator.builder.prune import make_pruner, prune_once
from orchestrator.builder.train import finetune

if TYPE_CHECKING:
    from torch import nn


def iteration_figures(ctx: Any, model: nn.Module, step: int, ratio: float) -> dict[str, Any]:
    """{step, ratio, macs, params, metric, accuracy} of `model` now (accuracy: host_accuracy's metric, or None)."""
    figures = size_figures(model, ctx.example_input())
    return {"step": step, "ratio": round(ratio, 6), "macs": figures["macs"], "params": figures["params"],
            "metric": host_metric(ctx), "accuracy": torch_score(ctx, model)}


class IterativePruneStep:
    """Reach `ratio` in `steps` rounds of pruning, each followed by fine-tuning and an evaluation."""

    name = "iterative_prune"
    version = "2"  # 2: detectors scored by the boards' own code, the metric named per round
    produces = "torch"

    def run(self, ctx: Any, parent: TorchNode, params: dict[str, Any]) -> TorchNode:
        tuning = params["finetune"]
        distill = tuning.get("distill")
        teacher = ctx.teacher(distill["teacher"]) if distill and tuning["epochs"] else None
        model = copy.deepcopy(parent.model).eval()
        pruner = make_pruner(ctx, model, params, iterative_steps=params["steps"])
        iterations = [iteration_figures(ctx, model, 0, 0.0)]
        for step in range(1, params["steps"] + 1):
            prune_once(ctx, pruner, model, params["method"])
            # A different data order per round; still deterministic for the recipe's seed.
            finetune(ctx, model, tuning, teacher=teacher, seed_offset=step)
            iterations.append(iteration_figures(ctx, model, step, pruner.per_step_pruning_ratio[step]))
        return TorchNode(model.eval(), {"iterations": iterations})


STEPS.register(IterativePruneStep.name)(IterativePruneStep())
