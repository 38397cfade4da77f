"""Training steps: `train` (the base model) and `finetune` (continue from a parent, optionally only
some layers, optionally distilled from a teacher)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator.builder import STEPS, TorchNode
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


MAX_GRAD_NORM = 10.0  # gradient clipping of models trained with their own `loss` (detectors)

# A training objective other than cross-entropy on class labels: (model outputs, sample indices) -> loss.
Loss = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


def fit(model: nn.Module, x: np.ndarray, y: Any, *, epochs: int, lr: float, batch_size: int, seed: int,
        momentum: float = 0.9, weight_decay: float = 5e-4, trainable: list[str] | None = None,
        teacher: nn.Module | None = None, temperature: float = 4.0, alpha: float = 0.9,
        loss: Loss | None = None) -> None:
    """SGD with Nesterov momentum and a cosine schedule; deterministic for a given seed.

    The objective is cross-entropy against the class labels `y` (distilled from `teacher` if given),
    or `loss` when given (e.g. a detector's, which finds its targets by sample index).
    """
    if epochs == 0:
        return
    import torch
    if loss is not None and teacher is not None:
        raise BuildError("distillation needs class labels; this model trains with its own loss")
    torch.manual_seed(seed)
    order_rng = np.random.default_rng(seed)
    inputs = torch.from_numpy(x)
    objective = loss or _label_loss(inputs, torch.from_numpy(y), teacher, temperature, alpha)
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
            objective(model(inputs[index]), index).backward()
            if loss is not None:
                # A detector's summed loss starts with gradient norms in the hundreds; darknet ramps the
                # learning rate up (burn-in), YOLOv5 clips: without either SGD diverges in a few steps.
                torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
            optimizer.step()
            schedule.step()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    model.eval()


def _label_loss(inputs: torch.Tensor, labels: torch.Tensor, teacher: nn.Module | None, temperature: float,
                alpha: float) -> Loss:
    """Cross-entropy against the labels, or Hinton distillation from `teacher` when given."""
    import torch
    import torch.nn.functional as F

    if teacher is None:
        return lambda outputs, index: F.cross_entropy(outputs, labels[index])

    def distilled(outputs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = teacher(inputs[index])
        return distillation_loss(outputs, teacher_logits, labels[index], temperature, alpha)
    return distilled


def task_loss(ctx: Any, what: str) -> Loss | None:
    """The training objective of the recipe's task: None for classification (fit's cross-entropy), the YOLOv2
    region loss for a detector (orchestrator/models/region.py); BuildError when there is none."""
    task = ctx.splits.task
    if task == "classification":
        return None
    head = ctx.detection_head() if task == "detection" else None
    if head is None:
        raise BuildError(f"{what}: orch has no training loss for a {task} model of {ctx.recipe.model.arch}; set the "
                         "epochs to 0 and start from imported weights")
    from orchestrator.models.region import region_loss

    anchors, _ = head
    truths, size = ctx.splits.train_y, ctx.recipe.dataset.image_size
    return lambda outputs, index: region_loss(outputs, [truths[i] for i in index.tolist()], anchors, size)


class TrainStep:
    """Build the recipe's model (from imported weights if given) and train it on the training split."""

    name = "train"
    version = "3"  # 3: VOC boxes as continuous spans in the region loss's targets
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
            fit(model, ctx.splits.train_x, ctx.splits.train_y, epochs=settings["epochs"], lr=settings["lr"],
                batch_size=settings["batch_size"], seed=settings["seed"], momentum=settings["momentum"],
                weight_decay=settings["weight_decay"], loss=task_loss(ctx, "train"))
        return TorchNode(model.eval())


class FinetuneStep:
    """Continue training a parent model: all layers or only `trainable` ones, plain or distilled."""

    name = "finetune"
    version = "3"  # 3: VOC boxes as continuous spans in the region loss's targets
    produces = "torch"

    def run(self, ctx: Any, parent: TorchNode, params: dict[str, Any]) -> TorchNode:
        model = copy.deepcopy(parent.model)
        finetune(ctx, model, params)
        return TorchNode(model)


def finetune(ctx: Any, model: nn.Module, params: dict[str, Any], teacher: nn.Module | None = None,
             seed_offset: int = 0) -> None:
    """Fine-tune `model` in place as a recipe's finetune parameters say {epochs, lr, batch_size, seed,
    trainable, distill}; `teacher` saves re-making the distillation teacher on every call."""
    if params["epochs"] == 0:
        return
    loss = task_loss(ctx, "finetune")
    distill = params.get("distill")
    if distill and loss is not None:
        raise BuildError(f"distill: Hinton distillation needs class labels; this is a {ctx.splits.task} model")
    if distill and teacher is None:
        teacher = ctx.teacher(distill["teacher"])
    fit(model, ctx.splits.train_x, ctx.splits.train_y, epochs=params["epochs"], lr=params["lr"],
        batch_size=params["batch_size"], seed=params["seed"] + seed_offset, trainable=params.get("trainable"),
        teacher=teacher if distill else None, temperature=distill["temperature"] if distill else 4.0,
        alpha=distill["alpha"] if distill else 0.9, loss=loss)


STEPS.register(TrainStep.name)(TrainStep())
STEPS.register(FinetuneStep.name)(FinetuneStep())
