"""Training steps: `train` (the base model) and `finetune` (continue from a parent, optionally only
some layers, optionally distilled from a teacher)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator.build import STEPS, TorchNode
from orchestrator.errors import BuildError

if TYPE_CHECKING:
    import torch
    from torch import nn


def freeze_except(model: nn.Module, trainable: list[str] | None) -> list[nn.Parameter]:
    """Leave only parameters under the given module-name prefixes trainable; return those."""
    if trainable is None:
        return list(model.parameters())
    names = [name for name, _ in model.named_modules()]
    for prefix in trainable:
        if not any(name == prefix or name.startswith(prefix + ".") for name in names):
            raise BuildError(f"trainable: no module named {prefix!r} in {type(model).__name__} "
                             f"(top-level modules: {', '.join(n for n in names if n and '.' not in n)})")
    chosen = []
    for name, parameter in model.named_parameters():
        keep = any(name == p or name.startswith(p + ".") for p in trainable)
        parameter.requires_grad_(keep)
        if keep:
            chosen.append(parameter)
    return chosen


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float, alpha: float) -> torch.Tensor:
    """Hinton et al.: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy."""
    import torch.nn.functional as F
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1), F.softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean") * temperature ** 2
    return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch_size: int, seed: int,
        momentum: float = 0.9, weight_decay: float = 5e-4, trainable: list[str] | None = None,
        teacher: nn.Module | None = None, temperature: float = 4.0, alpha: float = 0.9) -> None:
    """SGD with Nesterov momentum and a cosine schedule; deterministic for a given seed."""
    if epochs == 0:
        return
    import torch
    import torch.nn.functional as F
    torch.manual_seed(seed)
    order_rng = np.random.default_rng(seed)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    parameters = freeze_except(model, trainable)
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay,
                                nesterov=momentum > 0)
    steps_per_epoch = (len(x) + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    if teacher is not None:
        teacher.eval()
    for _ in range(epochs):
        model.train()
        for module in model.modules():  # frozen layers keep their BatchNorm statistics too
            if list(module.parameters(recurse=False)) and not any(p.requires_grad for p in module.parameters()):
                module.eval()
        order = torch.from_numpy(order_rng.permutation(len(x)))
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            logits = model(inputs[index])
            if teacher is None:
                loss = F.cross_entropy(logits, labels[index])
            else:
                with torch.no_grad():
                    teacher_logits = teacher(inputs[index])
                loss = distillation_loss(logits, teacher_logits, labels[index], temperature, alpha)
            loss.backward()
            optimizer.step()
            schedule.step()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    model.eval()


def _require_classification(ctx: Any, what: str) -> None:
    if ctx.splits.task != "classification":
        raise BuildError(f"{what}: training a {ctx.splits.task} model is not supported yet; set the epochs to 0 "
                         "and start from imported weights")


class TrainStep:
    """Build the recipe's model (from imported weights if given) and train it on the training split."""

    name = "train"
    version = "2"
    produces = "torch"

    def run(self, ctx: Any, parent: None, params: dict[str, Any]) -> TorchNode:
        import torch

        settings = params["train"]
        torch.manual_seed(settings["seed"])
        model = ctx.new_model()
        weights = params["model"].get("weights")
        if weights:
            from orchestrator.models.weights import load_weights

            load_weights(model, weights["path"], weights["format"], skip_head=weights["skip_head"])
        if settings["epochs"]:
            _require_classification(ctx, "train")
            fit(model, ctx.splits.train_x, ctx.splits.train_y, epochs=settings["epochs"], lr=settings["lr"],
                batch_size=settings["batch_size"], seed=settings["seed"], momentum=settings["momentum"],
                weight_decay=settings["weight_decay"])
        return TorchNode(model.eval())


class FinetuneStep:
    """Continue training a parent model: all layers or only `trainable` ones, plain or distilled."""

    name = "finetune"
    version = "2"
    produces = "torch"

    def run(self, ctx: Any, parent: TorchNode, params: dict[str, Any]) -> TorchNode:
        _require_classification(ctx, "finetune")
        model = copy.deepcopy(parent.model)
        distill = params.get("distill")
        teacher = ctx.teacher(distill["teacher"]) if distill else None
        fit(model, ctx.splits.train_x, ctx.splits.train_y, epochs=params["epochs"], lr=params["lr"],
            batch_size=params["batch_size"], seed=params["seed"], trainable=params.get("trainable"),
            teacher=teacher, temperature=distill["temperature"] if distill else 4.0,
            alpha=distill["alpha"] if distill else 0.9)
        return TorchNode(model)


STEPS.register(TrainStep.name)(TrainStep())
STEPS.register(FinetuneStep.name)(FinetuneStep())
