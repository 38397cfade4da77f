"""Training steps: `train` (the base model, from scratch) and `finetune` (continue from a parent)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from orchestrator.build import STEPS, TorchNode


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch_size: int,
        seed: int, momentum: float = 0.9, weight_decay: float = 5e-4) -> None:
    """SGD with momentum and a cosine learning-rate schedule; deterministic for a given seed."""
    if epochs == 0:
        return
    torch.manual_seed(seed)
    order_rng = np.random.default_rng(seed)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                                nesterov=momentum > 0)
    steps_per_epoch = (len(x) + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.from_numpy(order_rng.permutation(len(x)))
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs[index]), labels[index])
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()


class TrainStep:
    """Train the recipe's model from scratch on the training split."""

    name = "train"
    version = "1"
    produces = "torch"

    def run(self, ctx: Any, parent: None, params: dict[str, Any]) -> TorchNode:
        settings = params["train"]
        torch.manual_seed(settings["seed"])
        model = ctx.new_model()
        fit(model, ctx.splits.train_x, ctx.splits.train_y, epochs=settings["epochs"], lr=settings["lr"],
            batch_size=settings["batch_size"], seed=settings["seed"], momentum=settings["momentum"],
            weight_decay=settings["weight_decay"])
        return TorchNode(model)


class FinetuneStep:
    """Continue training a (pruned) parent model on the training split."""

    name = "finetune"
    version = "1"
    produces = "torch"

    def run(self, ctx: Any, parent: TorchNode, params: dict[str, Any]) -> TorchNode:
        model = copy.deepcopy(parent.model)
        fit(model, ctx.splits.train_x, ctx.splits.train_y, epochs=params["epochs"], lr=params["lr"],
            batch_size=params["batch_size"], seed=params["seed"])
        return TorchNode(model)


STEPS.register(TrainStep.name)(TrainStep())
STEPS.register(FinetuneStep.name)(FinetuneStep())
