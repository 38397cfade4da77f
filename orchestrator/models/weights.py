"""Pretrained weights from a file into a zoo model: darknet .weights or a torch state_dict."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from orchestrator.errors import WeightsError
from orchestrator.models.darknet import load_darknet

WeightsFormat = Literal["darknet", "state_dict"]
FORMATS: tuple[str, ...] = ("darknet", "state_dict")
CHECKPOINT_KEYS = ("state_dict", "model_state_dict")
SHOWN_KEYS = 5


def load_weights(model: nn.Module, path: Path | str, format: WeightsFormat, skip_head: bool = False) -> None:
    """Load the weights in `path` into `model` in place.

    `skip_head` leaves the layers the model lists in keep_outputs() (its
    classifier or detection head) as initialised, for fine-tuning a new head
    on pretrained features; for darknet files that is the final conv.
    """
    if format == "darknet":
        load_darknet(model, path, skip_last=skip_head)
    elif format == "state_dict":
        load_state_dict_file(model, Path(path), skip_head)
    else:
        raise WeightsError(f"{path}: unknown weights format {format!r}; known: {', '.join(FORMATS)}")


def load_state_dict_file(model: nn.Module, path: Path, skip_head: bool = False) -> None:
    """Load a torch state_dict file (or a checkpoint dict holding one) into `model`, strictly."""
    tensors = _strip_module_prefix(read_state_dict(path))
    expected = model.state_dict()
    if skip_head:
        head = _head_prefixes(model, path)
        tensors = {key: value for key, value in tensors.items() if not key.startswith(head)}
        expected = {key: value for key, value in expected.items() if not key.startswith(head)}
    missing = [key for key in expected if key not in tensors]
    unexpected = [key for key in tensors if key not in expected]
    mismatched = [f"{key} {tuple(tensors[key].shape)} vs model {tuple(value.shape)}"
                  for key, value in expected.items() if key in tensors and tensors[key].shape != value.shape]
    for problem, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", mismatched)):
        if keys:
            more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
            raise WeightsError(f"{path}: state_dict does not fit the model: {problem}: "
                               f"{', '.join(keys[:SHOWN_KEYS])}{more}")
    model.load_state_dict(tensors, strict=not skip_head)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a torch state_dict file, or of the state_dict inside a checkpoint dict."""
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # The weights-only unpickler refuses arbitrary objects; an unrestricted load could run code from the file.
        raise WeightsError(f"{path}: holds more than tensors (a pickled model?); save model.state_dict() "
                           f"instead ({str(error).splitlines()[0]})") from error
    except Exception as error:
        # On a file that is not torch's, torch.load fails with whatever its parsers trip over first
        # (KeyError, IndexError, EOFError, RuntimeError, ...); the cause stays chained.
        raise WeightsError(f"{path}: not a torch weights file ({type(error).__name__}: {error})") from error
    if isinstance(loaded, Mapping):
        for key in CHECKPOINT_KEYS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise WeightsError(f"{path}: not a state_dict (a dict of tensors, or a checkpoint with a "
                           f"{' or '.join(repr(key) for key in CHECKPOINT_KEYS)} key)")
    return dict(loaded)


def _strip_module_prefix(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without the 'module.' prefix that nn.DataParallel and DistributedDataParallel add."""
    return {key.removeprefix("module."): value for key, value in tensors.items()}


def _head_prefixes(model: nn.Module, path: Path) -> tuple[str, ...]:
    """State_dict key prefixes of the layers in the model's keep_outputs()."""
    keep_outputs = getattr(model, "keep_outputs", None)
    if keep_outputs is None:
        raise WeightsError(f"{path}: cannot skip the head: {type(model).__name__} has no keep_outputs() naming it")
    head = {id(module) for module in keep_outputs()}
    return tuple(f"{name}." for name, module in model.named_modules() if id(module) in head)
