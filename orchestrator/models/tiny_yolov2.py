"""Tiny-YOLOv2 for Pascal VOC, layer for layer as darknet's cfg/tiny-yolo-voc.cfg.

The cfg: nine convolutions. Six 3x3 convs (16, 32, 64, 128, 256, 512 filters,
BatchNorm, leaky ReLU 0.1), each but the last followed by a 2x2 max-pool of
stride 2; then a 2x2 max-pool of stride 1 (darknet pads it right and bottom,
so 13x13 stays 13x13); then two 3x3 convs of 1024 filters with BatchNorm
and leaky ReLU (the later COCO cfg yolov2-tiny.cfg has 1024 then 512); then
a 1x1 conv with bias, no BatchNorm, linear, to 5 * (5 + 20) = 125 channels,
read by a [region] layer with 5 anchors (in grid cells). The cfg writes
`pad=1` on the 1x1 conv; darknet turns that into padding size/2 = 0.

Differences from darknet: BatchNorm divides by sqrt(var + 1e-5), darknet by
sqrt(var) + 1e-6 (negligible unless a variance is tiny). Any input size that
is a multiple of 32 works (416 -> 13x13 grid, 320 -> 10x10). The output is
the raw (N, A*(5+C), H/32, W/32) map; decoding boxes is the caller's job.
At 416x416 and 20 classes it costs about 3.5 G multiply-accumulates and 15.9 M parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from orchestrator.models import MODELS

# (w, h) of the 5 VOC anchors in grid cells, from the cfg's [region] section.
VOC_ANCHORS = ((1.08, 1.19), (3.42, 4.41), (6.63, 11.38), (9.42, 5.11), (16.62, 10.52))
BACKBONE_CHANNELS = (16, 32, 64, 128, 256, 512)
TOP_CHANNELS = 1024


def conv_bn_leaky(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (no bias) -> BatchNorm -> leaky ReLU 0.1, as darknet's batch_normalize=1 activation=leaky."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.1, inplace=True))


class TinyYoloV2(nn.Module):
    """Tiny-YOLOv2 detector; `head` maps 1024 channels to num_anchors * (5 + num_classes)."""

    def __init__(self, num_classes: int = 20, in_channels: int = 3):
        super().__init__()
        self.anchors: tuple[tuple[float, float], ...] = VOC_ANCHORS
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        channels = in_channels
        for index, out_channels in enumerate(BACKBONE_CHANNELS):
            layers.append(conv_bn_leaky(channels, out_channels))
            if index < len(BACKBONE_CHANNELS) - 1:
                layers.append(nn.MaxPool2d(2, 2))
            channels = out_channels
        # Replicating the last row and column equals darknet's skipping of out-of-range cells in a max.
        layers += [nn.ReplicationPad2d((0, 1, 0, 1)), nn.MaxPool2d(2, 1),
                   conv_bn_leaky(channels, TOP_CHANNELS), conv_bn_leaky(TOP_CHANNELS, TOP_CHANNELS)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(TOP_CHANNELS, len(self.anchors) * (5 + num_classes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def keep_outputs(self) -> list[nn.Module]:
        return [self.head]


@MODELS.register("tiny_yolov2")
def create(num_classes: int, in_channels: int) -> TinyYoloV2:
    """Tiny-YOLOv2 (tiny-yolo-voc.cfg) with a head for `num_classes` classes and the 5 VOC anchors."""
    return TinyYoloV2(num_classes=num_classes, in_channels=in_channels)
