"""The model zoo: one module per architecture, registered by name.

Contract of a model module: a function registered in MODELS with signature
`(num_classes: int, in_channels: int, **options) -> torch.nn.Module`; the
module it returns has a method `keep_outputs()` listing the layers whose
output channels pruning must never remove (the classifier, a detection head).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.registry import Registry

ModelFactory = Callable[..., Any]
MODELS: Registry[ModelFactory] = Registry("model")

# Importing a backend registers it.
from orchestrator.models import digits_cnn, mobilenet_v1, mobilenet_v2, tiny_yolov2  # noqa: E402,F401
