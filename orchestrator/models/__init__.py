"""The model zoo: one module per architecture, registered by name.

Contract of a model module: a function registered in MODELS with signature
`(num_classes: int, in_channels: int, **options) -> torch.nn.Module`; the
module it returns has a method `keep_outputs()` listing the layers whose
output channels pruning must never remove (the classifier, a detection head).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.registry import Registry

ModelFactory = Callable[..., Any]

# Model modules import torch, so each is imported when its model is first asked
# for: reading a recipe, or finding a whole build in the cache, never pays for it.
MODELS: Registry[ModelFactory] = Registry("model", modules={
    name: f"orchestrator.models.{name}" for name in ("digits_cnn", "mobilenet_v1", "mobilenet_v2", "tiny_yolov2")})
