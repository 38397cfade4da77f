"""ONNX files shaped like the ones users bring, which the tests make themselves (nothing is downloaded):

- the classic model zoo's format: IR version 3, opset 9, every initializer also listed as a graph input;
- a TensorFlow-style detector input: NHWC uint8 images, the model casting and scaling them itself;
- dynamic batch and spatial dimensions, and two outputs;
- a fixed-size flatten (Reshape to a constant): the graph cannot take another input size.

Each is a small classifier trained here, for a few seconds, on a labelled image folder whose classes differ by
colour, so top-1 on the device means something. The classifiers take NCHW float images scaled to [0, 1].
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper
from PIL import Image

CLASSES = ("blue", "green", "red")  # sorted: the class ids image_folder gives them
SIZE = 32


def colour_image(rng: np.random.Generator, class_id: int, height: int, width: int) -> np.ndarray:
    """HWC uint8 noise with one channel (red, green or blue by the class) clearly brighter."""
    pixels = rng.integers(0, 110, (height, width, 3))
    pixels[:, :, 2 - class_id] += 130  # class 0 blue (channel 2), 1 green, 2 red (channel 0)
    return pixels.astype(np.uint8)


def write_colour_folder(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    """An ImageNet-style folder (root/<class>/<image>.png) of colour-coded images of assorted sizes."""
    rng = np.random.default_rng(seed)
    for class_id, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            height, width = int(rng.integers(28, 60)), int(rng.integers(28, 60))
            Image.fromarray(colour_image(rng, class_id, height, width)).save(folder / f"{index}.png")
    return root


class ColourNet(torch.nn.Module):
    """conv-BN-ReLU, pool, conv-ReLU, then global pooling (`pooled`) or a fixed-size flatten, linear, softmax."""

    def __init__(self, pooled: bool = True):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(4))
        self.pooled = pooled
        self.head = torch.nn.Linear(16 if pooled else 16 * 4 * 4, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        features = features.mean(dim=(2, 3)) if self.pooled else features.reshape(-1, 16 * 4 * 4)
        return torch.softmax(self.head(features), dim=1)


def trained(pooled: bool = True, seed: int = 0) -> ColourNet:
    """A ColourNet trained on generated colour images until it tells the classes apart."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = ColourNet(pooled)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    labels = rng.integers(0, len(CLASSES), 96)
    images = np.stack([colour_image(rng, int(c), SIZE, SIZE) for c in labels]).transpose(0, 3, 1, 2) / 255.0
    x, y = torch.tensor(images, dtype=torch.float32), torch.tensor(labels)
    net.train()
    for _ in range(40):
        for start in range(0, len(x), 32):
            optimizer.zero_grad()
            loss = torch.nn.functional.nll_loss(torch.log(net(x[start:start + 32]) + 1e-9), y[start:start + 32])
            loss.backward()
            optimizer.step()
    return net.eval()


def _export(net: torch.nn.Module, example: torch.Tensor, opset: int, output_names: list[str] | None = None,
            **options: object) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is the one that writes opset 9, as old tools did
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, example, buffer, opset_version=opset, dynamo=False, input_names=["input"],
                          output_names=output_names or ["prob"], **options)  # type: ignore[arg-type]
    return onnx.load_from_string(buffer.getvalue())


def zoo_format(path: Path, net: torch.nn.Module) -> Path:
    """The classic model zoo's format: IR version 3, opset 9, every initializer also a graph input."""
    model = _export(net, torch.zeros(1, 3, SIZE, SIZE), 9)
    model.ir_version = 3
    for init in model.graph.initializer:
        model.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    onnx.save(model, str(path))
    return path


class _Uint8Nhwc(torch.nn.Module):
    """What TensorFlow exports feed on: NHWC uint8 pixels, cast and scaled inside the graph."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels.permute(0, 3, 1, 2).float() / 255.0)


def nhwc_uint8(path: Path, net: torch.nn.Module) -> Path:
    """An NHWC uint8-input model (opset 13)."""
    onnx.save(_export(_Uint8Nhwc(net).eval(), torch.zeros(1, SIZE, SIZE, 3, dtype=torch.uint8), 13), str(path))
    return path


class _TwoOutputs(torch.nn.Module):
    """The class probabilities, and the pooled features they come from: a second output, as detectors have."""

    def __init__(self, net: ColourNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x), self.net.features(x).mean(dim=(2, 3))


def dynamic_dims(path: Path, net: ColourNet) -> Path:
    """A model whose batch, height and width are all symbolic, with two outputs (opset 13)."""
    model = _export(_TwoOutputs(net).eval(), torch.zeros(1, 3, SIZE, SIZE), 13, output_names=["prob", "features"],
                    dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, "prob": {0: "batch"},
                                  "features": {0: "batch"}})
    onnx.save(model, str(path))
    return path


def fixed_flatten(path: Path, net: torch.nn.Module) -> Path:
    """A model that reshapes its features to a constant size: it runs at 32 x 32 pixels only (opset 13)."""
    onnx.save(_export(net, torch.zeros(1, 3, SIZE, SIZE), 13), str(path))
    return path
