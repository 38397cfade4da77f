"""What every build step of one recipe shares: the recipe, the store, the data, the model factory."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch

from orchestrator.artifacts import ArtifactStore
from orchestrator.datasets import DATASETS, Splits
from orchestrator.models import MODELS
from orchestrator.recipes import Recipe

INPUT_NAME = "input"
OUTPUT_NAME = "output"


class BuildContext:
    """Shared state of one recipe's build; the data set is loaded once, on first use."""

    def __init__(self, recipe: Recipe, store: ArtifactStore):
        self.recipe = recipe
        self.store = store

    @cached_property
    def splits(self) -> Splits:
        return DATASETS.get(self.recipe.dataset.name).load(self.recipe.dataset)

    def new_model(self) -> Any:
        """A freshly initialised model of the recipe's architecture."""
        factory = MODELS.get(self.recipe.model.arch)
        return factory(num_classes=self.splits.num_classes, in_channels=self.splits.in_channels,
                       **self.recipe.model.options)

    def example_input(self, image_size: int | None = None) -> torch.Tensor:
        size = image_size or self.recipe.dataset.image_size
        return torch.zeros(1, self.splits.in_channels, size, size)
