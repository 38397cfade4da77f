"""Darknet `.weights` files: read them into, and write them from, models made of Conv2d (+BatchNorm2d) layers.

Written by hand because no maintained pip package reads darknet weights into
an arbitrary torch module: the readers that exist are tied to their own
model classes (ultralytics, torchvision-based ports) or parse the .cfg too.
The format is small: a header, then each conv's floats in forward order.

Header: int32 major, minor, revision; then `seen` (images trained on), int64
when major*10+minor >= 2 (and both < 1000, darknet's marker of transposed
weights), else int32. Per conv, little-endian float32: with BatchNorm its
beta, gamma, running mean, running variance, then the conv weights; without,
the conv bias, then the conv weights. The conv order is the model's
registration order, which is the forward order for the sequential
networks darknet describes; a BatchNorm2d registered right after a conv
belongs to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from orchestrator.artifacts import atomic_write
from orchestrator.errors import WeightsError

FLOAT = np.dtype("<f4")


@dataclass(frozen=True)
class DarknetLayer:
    """One darknet convolutional layer: its name and its tensors in file order."""

    name: str
    tensors: tuple[torch.Tensor, ...]

    def num_floats(self) -> int:
        return sum(tensor.numel() for tensor in self.tensors)


def darknet_layers(model: nn.Module, path: Path | str) -> list[DarknetLayer]:
    """The model's conv layers in file order; WeightsError (naming `path`) if a layer has no darknet form."""
    layers: list[DarknetLayer] = []
    pending: tuple[str, nn.Conv2d] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if pending:
                layers.append(_layer(*pending, None, path))
            pending = (name, module)
        elif isinstance(module, nn.BatchNorm2d) and pending and module.num_features == pending[1].out_channels:
            layers.append(_layer(*pending, module, path))
            pending = None
        elif any(True for _ in module.parameters(recurse=False)):
            raise WeightsError(f"{path}: the model's layer '{name}' ({type(module).__name__}) has no darknet form; "
                               "only Conv2d layers, each optionally followed by BatchNorm2d, do")
    if pending:
        layers.append(_layer(*pending, None, path))
    return layers


def _layer(name: str, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, path: Path | str) -> DarknetLayer:
    if bn is None:
        if conv.bias is None:
            raise WeightsError(f"{path}: conv '{name}' has neither a bias nor a BatchNorm; darknet stores one of them")
        return DarknetLayer(name, (conv.bias, conv.weight))
    if conv.bias is not None:
        raise WeightsError(f"{path}: conv '{name}' has a bias and a BatchNorm; darknet stores only one of them")
    if bn.running_mean is None or bn.running_var is None or not bn.affine:
        raise WeightsError(f"{path}: BatchNorm after conv '{name}' lacks running statistics or affine parameters, "
                           "which darknet stores")
    return DarknetLayer(name, (bn.bias, bn.weight, bn.running_mean, bn.running_var, conv.weight))


def header_bytes(version: tuple[int, int, int], seen: int) -> bytes:
    """The header darknet writes for `version` and `seen` (16 or 20 bytes)."""
    seen_dtype = "<i8" if _seen_is_int64(version[0], version[1]) else "<i4"
    return np.array(version, dtype="<i4").tobytes() + np.array([seen], dtype=seen_dtype).tobytes()


def _seen_is_int64(major: int, minor: int) -> bool:
    return major * 10 + minor >= 2 and major < 1000 and minor < 1000


def save_darknet(model: nn.Module, path: Path | str, version: tuple[int, int, int] = (0, 2, 0),
                 seen: int = 0) -> None:
    """Write the model's conv and BatchNorm tensors to `path` as a darknet .weights file."""
    layers = darknet_layers(model, path)
    body = [tensor.detach().cpu().numpy().astype(FLOAT).ravel() for layer in layers for tensor in layer.tensors]
    atomic_write(Path(path), header_bytes(version, seen) + np.concatenate(body).tobytes())


def read_header(path: Path, data: bytes) -> tuple[tuple[int, int, int], int, int]:
    """(version, seen, header size in bytes) of a .weights file's contents."""
    if len(data) < 12:
        raise WeightsError(f"{path}: header truncated ({len(data)} bytes; a darknet header has 16 or 20)")
    major, minor, revision = (int(value) for value in np.frombuffer(data, dtype="<i4", count=3))
    seen_dtype = np.dtype("<i8" if _seen_is_int64(major, minor) else "<i4")
    size = 12 + seen_dtype.itemsize
    if len(data) < size:
        raise WeightsError(f"{path}: header truncated ({len(data)} bytes; version {major}.{minor}.{revision} "
                           f"needs {size})")
    return (major, minor, revision), int(np.frombuffer(data, dtype=seen_dtype, count=1, offset=12)[0]), size


def load_darknet(model: nn.Module, path: Path | str, skip_last: bool = False) -> None:
    """Copy a darknet .weights file into `model`'s conv and BatchNorm tensors, in place.

    With `skip_last`, the final conv keeps its values and whatever follows
    the other layers in the file (the old head) is ignored: a new head
    (e.g. one class) on pretrained features.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    layers = darknet_layers(model, path)
    if skip_last:
        layers = layers[:-1]
    data = path.read_bytes()
    _, _, header_size = read_header(path, data)
    available = (len(data) - header_size) // FLOAT.itemsize
    needed = sum(layer.num_floats() for layer in layers)
    floats = np.frombuffer(data, dtype=FLOAT, count=min(available, needed), offset=header_size)
    if available < needed:
        short = _layer_that_runs_out(layers, available)
        raise WeightsError(f"{path}: file has {available} floats after its {header_size}-byte header but the model "
                           f"needs {needed}; they run out in conv {short + 1} of {len(layers)}, '{layers[short].name}'")
    left_over = len(data) - header_size - needed * FLOAT.itemsize
    if left_over and not skip_last:
        raise WeightsError(f"{path}: {left_over} bytes left over after the model's {needed} floats "
                           "(weights of a different model?)")
    offset = 0
    with torch.no_grad():
        for layer in layers:
            for tensor in layer.tensors:
                chunk = floats[offset:offset + tensor.numel()]
                tensor.copy_(torch.from_numpy(chunk.astype(np.float32)).reshape(tensor.shape))
                offset += tensor.numel()


def _layer_that_runs_out(layers: list[DarknetLayer], available: int) -> int:
    """Index of the first layer whose floats are not all within the first `available`."""
    end = 0
    for index, layer in enumerate(layers):
        end += layer.num_floats()
        if end > available:
            return index
    return len(layers) - 1
