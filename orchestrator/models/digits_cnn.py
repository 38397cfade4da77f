"""The quickstart CNN: four 3x3 conv-BN-ReLU blocks, two max-pools, global pooling, a linear head.

At 32x32 input and width 16 it costs about 12 M multiply-accumulates, enough
that structured pruning shows up in latency on a CPU.
"""

from __future__ import annotations

from torch import nn

from orchestrator.models import MODELS


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class DigitsCNN(nn.Module):
    """A small VGG-style classifier for 32x32 single-channel images."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            _block(in_channels, width), _block(width, 2 * width), nn.MaxPool2d(2),
            _block(2 * width, 4 * width), nn.MaxPool2d(2),
            _block(4 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))

    def keep_outputs(self) -> list[nn.Module]:
        return [self.classifier]


@MODELS.register("digits_cnn")
def create(num_classes: int, in_channels: int, width: int = 16) -> DigitsCNN:
    """The quickstart CNN; `width` is the channel count of the first block."""
    return DigitsCNN(num_classes=num_classes, in_channels=in_channels, width=width)
