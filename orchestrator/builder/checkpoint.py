"""Weights-only checkpoints of (possibly pruned) torch models.

torch-pruning's own tp.state_dict() stores whole module objects, which only
an unrestricted pickle load can read back. Here a checkpoint is a plain
tensor state_dict (loaded with weights_only=True) plus a JSON map of the
structural attributes that pruning changes; loading re-creates the recipe's
model, resizes its layers from those, then loads the tensors strictly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.artifacts import atomic_write

if TYPE_CHECKING:
    from torch import nn

STRUCTURAL_ATTRIBUTES = ("in_channels", "out_channels", "groups", "num_features", "in_features", "out_features")


def structure(model: nn.Module) -> dict[str, dict[str, int]]:
    """The channel-count attributes of every layer that has them."""
    return {name: {attr: int(getattr(module, attr)) for attr in STRUCTURAL_ATTRIBUTES if hasattr(module, attr)}
            for name, module in model.named_modules()
            if any(hasattr(module, attr) for attr in STRUCTURAL_ATTRIBUTES)}


def save(model: nn.Module, path: Path, meta: dict[str, Any]) -> None:
    """Write tensors to `path`, then structure and `meta` to `path`.json (the latter marks it complete)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".pt.part")
    torch.save(model.state_dict(), partial)
    partial.replace(path)
    atomic_write(path.with_suffix(".json"),
                 json.dumps({"structure": structure(model), "meta": meta}, sort_keys=True).encode())


def write_bytes(path: Path, tensors: bytes, sidecar: bytes) -> None:
    """Write a checkpoint that arrived as bytes (the tensors file and its JSON sidecar), in save()'s order."""
    atomic_write(path, tensors)
    atomic_write(path.with_suffix(".json"), sidecar)


def load(fresh_model: nn.Module, path: Path) -> tuple[nn.Module, dict[str, Any]] | None:
    """Reshape `fresh_model` to the checkpoint and load its tensors; None if there is no complete checkpoint."""
    sidecar = path.with_suffix(".json")
    if not (path.exists() and sidecar.exists()):
        return None
    import torch
    from torch import nn

    described = json.loads(sidecar.read_text())
    tensors = torch.load(path, weights_only=True)
    for name, module in fresh_model.named_modules():
        for attr, value in described["structure"].get(name, {}).items():
            setattr(module, attr, value)
        prefix = f"{name}." if name else ""
        for kind in ("_parameters", "_buffers"):
            slots = getattr(module, kind)
            for slot, current in list(slots.items()):
                saved = tensors.get(prefix + slot)
                if current is None or saved is None:
                    continue
                fresh = torch.empty_like(saved)
                slots[slot] = nn.Parameter(fresh, requires_grad=current.requires_grad) if kind == "_parameters" \
                    else fresh
    fresh_model.load_state_dict(tensors, strict=True)
    return fresh_model.eval(), described["meta"]
