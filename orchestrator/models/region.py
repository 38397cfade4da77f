"""The YOLOv2 [region] layer's training loss (decoding the output map into boxes is the board's job:
agent/detection/decoders.py `yolov2_region`, with the same box parameterisation, checked by the tests).

A detection model's raw output is (N, A * (5 + C), H, W): for each of A
anchors, (tx, ty, tw, th, objectness, C class logits) per grid cell. As in
darknet's region layer (cfg/tiny-yolo-voc.cfg: softmax classes, anchors in
grid cells):

    x = (cell_x + sigmoid(tx)) * stride        w = anchor_w * exp(tw) * stride
    y = (cell_y + sigmoid(ty)) * stride        h = anchor_h * exp(th) * stride
    score(class) = sigmoid(objectness) * softmax(class logits)[class]

The loss follows darknet's region_layer.c with its VOC scales: each ground
truth box is assigned to the anchor of best shape IoU in the cell holding its
centre; that predictor is pulled to the box (squared error on sigmoid(tx),
sigmoid(ty), tw, th, weighted 2 - w*h with w, h relative to the image), its
objectness towards 1 (object_scale 5; darknet's `rescore` target, the IoU,
is simplified to 1) and its classes by cross-entropy; every other predictor's
objectness is pushed to 0 (noobject_scale 1) unless its box already overlaps
some ground truth by more than 0.6. Darknet's warm-up term (pull every
predictor to its anchor for the first 12800 images) is left out.

A detection model exposes `anchors` ((w, h) pairs in grid cells) and `num_classes`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

OBJECT_SCALE = 5.0
NOOBJECT_SCALE = 1.0
COORD_SCALE = 1.0
IGNORE_IOU = 0.6


def _split(output: torch.Tensor, num_anchors: int) -> torch.Tensor:
    """(N, A*(5+C), H, W) -> (N, A, H, W, 5+C)."""
    batch, channels, height, width = output.shape
    return output.view(batch, num_anchors, channels // num_anchors, height, width).permute(0, 1, 3, 4, 2)


def _boxes(fields: torch.Tensor, anchors: torch.Tensor, stride: float) -> torch.Tensor:
    """Predicted boxes (N, A, H, W, 4) as x1, y1, x2, y2 in input pixels."""
    height, width = fields.shape[2:4]
    cell_y, cell_x = torch.meshgrid(torch.arange(height, dtype=fields.dtype), torch.arange(width, dtype=fields.dtype),
                                    indexing="ij")
    centre_x = (cell_x + torch.sigmoid(fields[..., 0])) * stride
    centre_y = (cell_y + torch.sigmoid(fields[..., 1])) * stride
    half_w = anchors[:, 0].view(1, -1, 1, 1) * torch.exp(fields[..., 2].clamp(max=10)) * stride / 2
    half_h = anchors[:, 1].view(1, -1, 1, 1) * torch.exp(fields[..., 3].clamp(max=10)) * stride / 2
    return torch.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of `a` (..., 4) with every box of `b` (K, 4), x1 y1 x2 y2: shape (..., K)."""
    a, b = a.unsqueeze(-2), b
    overlap_w = (torch.minimum(a[..., 2], b[:, 2]) - torch.maximum(a[..., 0], b[:, 0])).clamp(min=0)
    overlap_h = (torch.minimum(a[..., 3], b[:, 3]) - torch.maximum(a[..., 1], b[:, 1])).clamp(min=0)
    overlap = overlap_w * overlap_h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return overlap / (area_a + area_b - overlap).clamp(min=1e-9)


def region_loss(output: torch.Tensor, targets: Sequence[np.ndarray], anchors: Sequence[tuple[float, float]],
                image_size: int) -> torch.Tensor:
    """The region loss of a batch, summed over predictors and averaged over images.

    targets: per image, rows [class_id, x1, y1, x2, y2, difficult] in input pixels (the detection Splits format).
    """
    anchor_tensor = torch.tensor(anchors, dtype=output.dtype)
    fields = _split(output, len(anchors))
    batch, num_anchors, height, width, _ = fields.shape
    stride = image_size / width
    with torch.no_grad():
        predicted = _boxes(fields, anchor_tensor, stride)
    objectness = torch.sigmoid(fields[..., 4])
    noobject = torch.ones_like(objectness)
    loss = output.new_zeros(())
    for image, rows in enumerate(targets):
        if not len(rows):
            continue
        truth = torch.from_numpy(np.asarray(rows[:, 1:5], dtype=np.float32)).to(output.dtype)
        # Predictors already overlapping a ground truth well are not punished for seeing an object.
        noobject[image][box_iou(predicted[image], truth).amax(dim=-1) > IGNORE_IOU] = 0
        for row, box in zip(rows, truth, strict=True):
            centre_x, centre_y = float(box[0] + box[2]) / 2 / stride, float(box[1] + box[3]) / 2 / stride
            box_w, box_h = float(box[2] - box[0]) / stride, float(box[3] - box[1]) / stride
            cell_x, cell_y = min(int(centre_x), width - 1), min(int(centre_y), height - 1)
            anchor = _best_anchor(anchor_tensor, box_w, box_h)
            cell = fields[image, anchor, cell_y, cell_x]
            weight = COORD_SCALE * (2 - box_w * box_h / (width * height))
            target_xy = torch.tensor([centre_x - cell_x, centre_y - cell_y], dtype=output.dtype)
            target_wh = torch.log(torch.tensor([max(box_w, 1e-6), max(box_h, 1e-6)], dtype=output.dtype)
                                  / anchor_tensor[anchor])
            loss = loss + weight * (((torch.sigmoid(cell[:2]) - target_xy) ** 2).sum()
                                    + ((cell[2:4] - target_wh) ** 2).sum())
            loss = loss + OBJECT_SCALE * (torch.sigmoid(cell[4]) - 1) ** 2
            loss = loss + F.cross_entropy(cell[5:].unsqueeze(0), torch.tensor([int(row[0])]))
            noobject[image, anchor, cell_y, cell_x] = 0
    loss = loss + NOOBJECT_SCALE * (noobject * objectness ** 2).sum()
    return loss / batch


def _best_anchor(anchors: torch.Tensor, box_w: float, box_h: float) -> int:
    """The anchor whose shape (both centred at the origin) overlaps the box's most."""
    overlap = torch.minimum(anchors[:, 0], torch.tensor(box_w)) * torch.minimum(anchors[:, 1], torch.tensor(box_h))
    union = anchors[:, 0] * anchors[:, 1] + box_w * box_h - overlap
    return int(torch.argmax(overlap / union))
