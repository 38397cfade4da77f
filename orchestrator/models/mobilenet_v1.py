"""MobileNet-v1 for 32x32 images (CIFAR-10): depthwise-separable convolutions, BatchNorm and ReLU.

The first conv has stride 1 and four of the 13 blocks have stride 2 (the
layout of most CIFAR ports, e.g. kuangliu/pytorch-cifar), so a 32x32 input
reaches the global pool at 2x2 (total downsampling 16, ImageNet's is 32).
At width 1.0 and 32x32 input it costs about 48 M multiply-accumulates and 3.2 M parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from orchestrator.errors import UserError
from orchestrator.models import MODELS

# (output channels, stride) of the 13 depthwise-separable blocks at width 1.0.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
STEM_CHANNELS = 32


def scaled_channels(channels: int, width: float, divisor: int = 8) -> int:
    """`channels * width` rounded to the nearest multiple of `divisor`, at least `divisor`, never 10% below."""
    if width <= 0:
        raise UserError(f"model option width={width}: must be > 0")
    target = channels * width
    rounded = max(divisor, int(target + divisor / 2) // divisor * divisor)
    # Rounding down by more than 10% would shrink the layer noticeably more than asked (torchvision's rule).
    return rounded + divisor if rounded < 0.9 * target else rounded


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class MobileNetV1(nn.Module):
    """MobileNet-v1 classifier for small (32x32) images."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        channels = scaled_channels(STEM_CHANNELS, width)
        layers: list[nn.Module] = [conv_bn_relu(in_channels, channels)]
        for out_channels, stride in BLOCKS:
            out_channels = scaled_channels(out_channels, width)
            layers.append(nn.Sequential(conv_bn_relu(channels, channels, stride=stride, groups=channels),
                                        conv_bn_relu(channels, out_channels, kernel_size=1)))
            channels = out_channels
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def keep_outputs(self) -> list[nn.Module]:
        return [self.classifier]


@MODELS.register("mobilenet_v1")
def create(num_classes: int, in_channels: int, width: float = 1.0) -> MobileNetV1:
    """MobileNet-v1 for 32x32 input; `width` multiplies every layer's channel count."""
    return MobileNetV1(num_classes=num_classes, in_channels=in_channels, width=width)
