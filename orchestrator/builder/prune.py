"""Structured channel pruning with torch-pruning: channels are physically removed.

`ratio` is the fraction of each layer's output channels removed (scope
`per_layer`), or of all prunable channels ranked together (scope `global`);
the layers a model lists in keep_outputs() and those named in `keep` keep theirs.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from orchestrator.builder import STEPS, TorchNode
from orchestrator.errors import BuildError

if TYPE_CHECKING:
    from torch import nn


def importance(method: str) -> Any:
    """The torch-pruning channel importance criterion for a recipe's `method`."""
    import torch_pruning as tp  # here, not at the top: a build that finds everything cached never needs it

    return {
        "l1": lambda: tp.importance.MagnitudeImportance(p=1),
        "l2": lambda: tp.importance.MagnitudeImportance(p=2),
        "taylor": lambda: tp.importance.TaylorImportance(),
        "bn_scale": lambda: tp.importance.BNScaleImportance(),
        "random": lambda: tp.importance.RandomImportance(),
    }[method]()
TAYLOR_BATCHES = 4  # batches of training data whose gradients rank channels for `taylor`


def make_pruner(ctx: Any, model: nn.Module, params: dict[str, Any], iterative_steps: int = 1) -> Any:
    """A torch-pruning MetaPruner configured from a recipe's prune parameters."""
    modules = dict(model.named_modules())
    missing = [name for name in params.get("keep", []) if name not in modules]
    if missing:
        raise BuildError(f"prune.keep: no module named {missing[0]!r} in {type(model).__name__}")
    keep_outputs = getattr(model, "keep_outputs")  # noqa: B009 (the model contract, not an nn.Module attribute)
    ignored = list(keep_outputs()) + [modules[name] for name in params.get("keep", [])]
    import torch_pruning as tp

    return tp.pruner.MetaPruner(
        model, ctx.example_input(), importance=importance(params["method"]),
        pruning_ratio=params["ratio"], global_pruning=params["scope"] == "global",
        round_to=params.get("round_to"), ignored_layers=ignored, iterative_steps=iterative_steps)


def accumulate_gradients(ctx: Any, model: nn.Module, batch_size: int = 64) -> None:
    """Gradients of the training loss over a few batches (first-order Taylor importance needs them)."""
    import torch
    import torch.nn.functional as F

    from orchestrator.builder.train import task_loss

    task = task_loss(ctx, "prune.method taylor")
    model.zero_grad()
    x, y = ctx.splits.train_x, ctx.splits.train_y
    for start in range(0, min(len(x), TAYLOR_BATCHES * batch_size), batch_size):
        index = torch.arange(start, min(start + batch_size, len(x)))
        outputs = model(torch.from_numpy(x[start:start + batch_size]))
        loss = task(outputs, index) if task else F.cross_entropy(outputs, torch.from_numpy(y[start:start + batch_size]))
        loss.backward()


def prune_once(ctx: Any, pruner: Any, model: nn.Module, method: str) -> None:
    if method == "taylor":
        accumulate_gradients(ctx, model)
    pruner.step()
    model.zero_grad(set_to_none=True)


class PruneStep:
    """Remove the least important output channels of every prunable layer, in one step."""

    name = "prune"
    version = "3"  # 3: VOC boxes as continuous spans in the region loss's targets
    produces = "torch"

    def run(self, ctx: Any, parent: TorchNode, params: dict[str, Any]) -> TorchNode:
        model = copy.deepcopy(parent.model).eval()
        prune_once(ctx, make_pruner(ctx, model, params), model, params["method"])
        return TorchNode(model.eval())


STEPS.register(PruneStep.name)(PruneStep())
