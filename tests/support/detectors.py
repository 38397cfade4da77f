"""A small detector with Ultralytics YOLOv5's output layout, trained on a COCO-format fixture and exported to ONNX
the way a user's YOLOv5 export looks: one output (N, K, 5 + C), rows cx, cy, w, h in input pixels, objectness and
class probabilities after the sigmoid, batch and image size dynamic (`export --dynamic`).

Decoding follows YOLOv5's Detect head (models/yolo.py): xy = (2 sigmoid(t) - 0.5 + cell) * stride,
wh = (2 sigmoid(t))^2 * anchor. Training is a plain one-scale loss (each box assigned to the anchor of closest
shape in the cell of its centre): enough for boxes of a class colour on a grey background.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agent.preprocess import Preprocess

STRIDE = 8
ANCHORS = ((12.0, 12.0), (24.0, 18.0), (18.0, 30.0))


class SmallYolo(nn.Module):
    """Three stride-2 convolutions and a 1x1 head, decoded as YOLOv5's Detect head decodes."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        channels = 3
        for width in (16, 32, 48):
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.SiLU()]
            channels = width
        layers += [nn.Conv2d(channels, 64, 3, padding=1), nn.BatchNorm2d(64), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(64, len(ANCHORS) * (5 + num_classes), 1)
        self.register_buffer("anchor_wh", torch.tensor(ANCHORS).view(1, len(ANCHORS), 1, 1, 2))

    def fields(self, x: torch.Tensor) -> torch.Tensor:
        """(N, A, H, W, 5 + C) after the sigmoid: YOLOv5 applies it to every field."""
        raw = self.head(self.features(x))
        batch, _, height, width = raw.shape
        return raw.view(batch, len(ANCHORS), 5 + self.num_classes, height, width).permute(0, 1, 3, 4, 2).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fields = self.fields(x)
        batch, anchors, height, width, _ = fields.shape
        cell_y, cell_x = torch.meshgrid(torch.arange(height, dtype=x.dtype), torch.arange(width, dtype=x.dtype),
                                        indexing="ij")
        grid = torch.stack([cell_x, cell_y], dim=-1).view(1, 1, height, width, 2)
        xy = (fields[..., 0:2] * 2 - 0.5 + grid) * STRIDE
        wh = (fields[..., 2:4] * 2) ** 2 * self.anchor_wh
        return torch.cat([xy, wh, fields[..., 4:]], dim=-1).view(batch, anchors * height * width, -1)


def _targets(rows: list[np.ndarray], size: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the assigned (anchor, cell_y, cell_x) target boxes [cx, cy, w, h, class] and a positive mask."""
    grid = size // STRIDE
    target = torch.zeros(len(rows), len(ANCHORS), grid, grid, 5)
    positive = torch.zeros(len(rows), len(ANCHORS), grid, grid, dtype=torch.bool)
    anchors = np.array(ANCHORS)
    for image, boxes in enumerate(rows):
        for class_id, x1, y1, x2, y2, _ in boxes:
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            anchor = int(np.argmin(np.abs(np.log(anchors[:, 0] / w)) + np.abs(np.log(anchors[:, 1] / h))))
            cell_x, cell_y = min(int(cx // STRIDE), grid - 1), min(int(cy // STRIDE), grid - 1)
            target[image, anchor, cell_y, cell_x] = torch.tensor([cx, cy, w, h, class_id])
            positive[image, anchor, cell_y, cell_x] = True
    return target, positive


def read_training_set(root: Path, split: str, preprocess: Preprocess, class_ids: dict[int, int]
                      ) -> tuple[np.ndarray, list[np.ndarray]]:
    """A COCO-format split's images pre-processed as `preprocess` says, and their boxes in input pixels."""
    dataset = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
    inputs, rows = [], []
    for image in sorted(dataset["images"], key=lambda item: item["id"]):
        values, placement = preprocess.file(str(root / split / image["file_name"]))
        boxes = []
        for annotation in dataset["annotations"]:
            if annotation["image_id"] != image["id"] or annotation["category_id"] not in class_ids:
                continue
            x, y, w, h = annotation["bbox"]
            boxes.append([class_ids[annotation["category_id"]], x * placement.scale_x + placement.pad_x,
                          y * placement.scale_y + placement.pad_y, (x + w) * placement.scale_x + placement.pad_x,
                          (y + h) * placement.scale_y + placement.pad_y, 0.0])
        inputs.append(values)
        rows.append(np.array(boxes, dtype=np.float32).reshape(-1, 6))
    return np.stack(inputs), rows


def train(model: SmallYolo, inputs: np.ndarray, rows: list[np.ndarray], epochs: int = 60, seed: int = 0) -> SmallYolo:
    """Fit the detector (Adam, full batch): objectness by BCE everywhere, box and class where a box is assigned."""
    torch.manual_seed(seed)
    size = inputs.shape[-1]
    x = torch.from_numpy(inputs)
    target, positive = _targets(rows, size, model.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(epochs):
        fields = model.fields(x)
        decoded = model(x).view(*fields.shape)
        objectness = F.binary_cross_entropy(fields[..., 4], positive.float())
        loss = objectness * 5
        if positive.any():
            chosen, wanted = decoded[positive], target[positive]
            loss = loss + F.l1_loss(chosen[:, 0:4] / size, wanted[:, 0:4] / size) * 10
            classes = F.one_hot(wanted[:, 4].long(), model.num_classes).float()
            loss = loss + F.binary_cross_entropy(chosen[:, 5:], classes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def export_yolov5(model: SmallYolo, path: Path, size: int) -> Path:
    """The model as a YOLOv5-style ONNX file: input `images`, output `output0`, batch and size dynamic."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter, as Ultralytics' export uses, is "legacy"
        _export(model, path, size)
    return path


def _export(model: SmallYolo, path: Path, size: int) -> None:
    torch.onnx.export(model.eval(), (torch.zeros(1, 3, size, size),), str(path), dynamo=False, opset_version=13,
                      input_names=["images"], output_names=["output0"],
                      dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                                    "output0": {0: "batch", 1: "anchors"}})


def trained_yolov5(coco_root: Path, path: Path, size: int = 64, epochs: int = 80) -> tuple[Path, dict[str, Any]]:
    """Train a SmallYolo on the fixture's train2017 split (every category, letterboxed to `size`) and export it;
    the file and the COCO category ids of its labels."""
    dataset = json.loads((coco_root / "annotations" / "instances_train2017.json").read_text())
    category_ids = [int(category["id"]) for category in sorted(dataset["categories"], key=lambda c: c["id"])]
    preprocess = Preprocess(size=[size, size], resize="letterbox")
    inputs, rows = read_training_set(coco_root, "train2017", preprocess,
                                     {category: index for index, category in enumerate(category_ids)})
    model = train(SmallYolo(len(category_ids)), inputs, rows, epochs)
    return export_yolov5(model, path, size), {"category_ids": category_ids}
