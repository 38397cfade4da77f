"""What every build step of one recipe shares: the recipe, the store, the data, the model factory."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

from agent.preprocess import Preprocess
from orchestrator.artifacts import ArtifactStore
from orchestrator.datasets import DATASETS, Splits
from orchestrator.errors import BuildError
from orchestrator.models import MODELS
from orchestrator.recipes import LoadedRecipe
from orchestrator.recipes.sources import source_preprocess
from orchestrator.runtimes import Runtime

INPUT_NAME = "input"
OUTPUT_NAME = "output"


class BuildContext:
    """Shared state of one recipe's build; the data set is loaded once, on first use."""

    def __init__(self, loaded: LoadedRecipe, store: ArtifactStore, target: Runtime | None = None):
        self.loaded = loaded
        self.recipe = loaded.recipe
        self.store = store
        self.target = target  # the onnxruntime every variant is built for (runtimes.py), if any
        # Set by the Builder: the trained base model of this recipe (the `base` distillation teacher).
        self.base_model: Callable[[], Any] | None = None
        self._resized: dict[tuple[str, int], Any] = {}
        self._head: Any = False  # detection_head(), once known

    @cached_property
    def splits(self) -> Splits:
        """The data set's splits, its images pre-processed for the model (an ONNX source's own pre-processing)."""
        dataset = self.recipe.dataset
        if dataset.root is not None:
            dataset = dataset.model_copy(update={"root": str(self.loaded.resolve(dataset.root))})
        source = DATASETS.get(dataset.name)
        preprocess = self.preprocess
        if preprocess is None:
            return source.load(dataset)
        if not source.takes_preprocess:
            raise self.loaded.error_at(("model", "preprocess"), f"this model needs its own pre-processing "
                                       f"({preprocess.layout} {preprocess.dtype}), which applies to data sets read "
                                       f"from image files (image_folder), not to {dataset.name}")
        return source.load(dataset, preprocess)

    @cached_property
    def preprocess(self) -> Preprocess | None:
        """How images become an ONNX source's input (declared in the recipe, else inferred from the model's input
        and the data set); None for a zoo model, and for an ONNX model that takes the data set's own (NCHW
        float32, no declaration)."""
        if self.recipe.model.onnx is None:
            return None
        return source_preprocess(self.loaded)

    def put_onnx(self, data: bytes, model_input: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Store an ONNX artifact made portable (builder/portable.py: only the opset imports its nodes use, at the
        versions they need); its sha256 and facts (IR version, opsets, node count) for the variant's meta."""
        from orchestrator.builder.portable import portable_bytes

        portable, facts = portable_bytes(data, model_input)
        return self.store.put(portable, ".onnx"), facts

    def images(self, split: str, size: int | None) -> Any:
        """The train or test images at `size` pixels (read again from the files where the data set keeps them,
        else a bilinear resize; cached), for calibration and scoring."""
        images = self.splits.train_x if split == "train" else self.splits.test_x
        if size is None or size == self.recipe.dataset.image_size:
            return images
        key = (split, size)
        if key not in self._resized and self.splits.at_size is not None:
            self._resized[key] = self.splits.at_size(split, size)
        if key not in self._resized:
            import torch
            import torch.nn.functional as F

            resized = F.interpolate(torch.from_numpy(images), size=(size, size), mode="bilinear",
                                    align_corners=False, antialias=True)
            self._resized[key] = resized.numpy()
        return self._resized[key]

    def new_model(self, num_classes: int | None = None) -> Any:
        """A freshly initialised model of the recipe's architecture, scoring the data set's classes (or
        `num_classes`: a source network's own head, variants.baselines)."""
        if self.recipe.model.arch is None:
            raise BuildError(f"{self.loaded.path}: model is an ONNX file; this step needs a torch model")
        problem = self.recipe.model.options_problem()
        if problem:
            raise self.loaded.error_at(("model", "options"), problem)
        factory = MODELS.get(self.recipe.model.arch)
        return factory(num_classes=num_classes or self.splits.num_classes, in_channels=self.splits.in_channels,
                       **self.recipe.model.options)

    def detection_head(self) -> tuple[list[tuple[float, float]], int] | None:
        """(anchors in grid cells, number of classes) of the recipe's zoo model when it is a YOLOv2-style
        detector (it has `anchors`, see orchestrator/models/region.py), which orch can train; None otherwise."""
        if self._head is False:
            self._head = None
            if self.recipe.model.arch is not None:
                model = self.new_model()
                if getattr(model, "anchors", None) is not None:
                    self._head = (list(model.anchors), int(model.num_classes))
        return self._head

    @cached_property
    def detection_set(self) -> Any:
        """The test split as boards score it (agent/detection/evaluate.py DetectionSet); detection data only."""
        from orchestrator.builder.detection import evaluation_set

        if self.splits.truth is None:
            raise BuildError(f"{self.recipe.dataset.name}: this data set has no detection ground truth to score")
        return evaluation_set(self.splits.truth, self.splits.class_names)

    def teacher(self, source: str) -> Any:
        """The distillation teacher: `base` (this recipe's trained model) or a state_dict file."""
        if source == "base":
            if self.base_model is None:
                raise BuildError("distill teacher `base` is not available here")
            return self.base_model()
        from orchestrator.models.weights import load_weights

        model = self.new_model()
        load_weights(model, str(self.loaded.resolve(source)), "state_dict")
        return model.eval()

    def example_input(self, image_size: int | None = None) -> Any:
        """A zero image batch of one, at `image_size` (default: the data set's), as a torch tensor."""
        import torch

        size = image_size or self.recipe.dataset.image_size
        return torch.zeros(1, self.splits.in_channels, size, size)
