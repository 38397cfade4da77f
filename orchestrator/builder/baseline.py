"""The `import_weights` step: a baseline's source network (variants.baselines `source`), its weights file loaded
whole, head included, with no training: the network the study starts from, as it was published.

Its head need not score the recipe's classes: a 20-class VOC tiny-YOLOv2 in a person study keeps its 20 classes,
and the evaluation settings of its artifact (builder/detection.py) score its `person` label as the data set's
person class. How many classes it has is whatever the file fits: the data set's own classes, else every class of
the data set's source (VOC's 20, a COCO file's 80).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.builder import STEPS, TorchNode
from orchestrator.errors import WeightsError


def class_counts(ctx: Any) -> list[int]:
    """The head sizes a source network may have, in the order they are tried: the data set's classes, then its
    source's (a detection data set's every category)."""
    counts = [int(ctx.splits.num_classes)]
    truth = ctx.splits.truth
    if truth is not None and truth.source_classes and len(truth.source_classes) not in counts:
        counts.append(len(truth.source_classes))
    return counts


class ImportWeightsStep:
    """Build the recipe's architecture with the head its weights file holds, and load the whole file into it."""

    name = "import_weights"
    version = "1"
    produces = "torch"
    # Reading the file again is cheap, and a checkpoint would be read back into the recipe's own head size.
    checkpoint = False

    def run(self, ctx: Any, parent: None, params: dict[str, Any]) -> TorchNode:
        from orchestrator.models.weights import load_weights

        weights = params["weights"]
        if not Path(weights["path"]).is_file():
            raise WeightsError(f"{weights['path']}: no such weights file")
        problems = []
        for classes in class_counts(ctx):
            model = ctx.new_model(num_classes=classes)
            try:
                load_weights(model, weights["path"], weights["format"])
            except WeightsError as exc:
                problems.append(f"with {classes} classes: {exc}")
                continue
            return TorchNode(model.eval(), {"num_classes": classes})
        raise WeightsError(f"baseline source: the weights file fits the model with none of the head sizes tried "
                           f"({'; '.join(problems)})")


STEPS.register(ImportWeightsStep.name)(ImportWeightsStep())
