"""MobileNet-v2: inverted residual blocks (expansion 6, ReLU6, linear bottlenecks).

With `small_input` (CIFAR, 32x32) the stem conv and the first 24-channel stage
have stride 1, so a 32x32 input reaches the last conv at 4x4 (total
downsampling 8); without it the strides are the paper's ImageNet ones (32).
At width 1.0 and 32x32 input it costs about 93 M multiply-accumulates and 2.2 M parameters
(319 M at 224x224 without small_input).
"""

from __future__ import annotations

import torch
from torch import nn

from orchestrator.models import MODELS
from orchestrator.models.mobilenet_v1 import scaled_channels

# (expansion, output channels, repeats, stride of the first repeat) at width 1.0, from the paper's Table 2.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


def conv_bn_relu6(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                  groups: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU6, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, plus the input when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = [conv_bn_relu6(in_channels, hidden, kernel_size=1)] if expansion != 1 else []
        layers += [conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    """MobileNet-v2 classifier, for 32x32 (small_input) or ImageNet-sized input."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, small_input: bool = True):
        super().__init__()
        channels = scaled_channels(STEM_CHANNELS, width)
        layers: list[nn.Module] = [conv_bn_relu6(in_channels, channels, stride=1 if small_input else 2)]
        for index, (expansion, out_channels, repeats, stride) in enumerate(STAGES):
            out_channels = scaled_channels(out_channels, width)
            first_stride = 1 if small_input and index == 1 else stride
            for repeat in range(repeats):
                layers.append(InvertedResidual(channels, out_channels, first_stride if repeat == 0 else 1, expansion))
                channels = out_channels
        # The paper keeps the last conv at 1280 channels for widths below 1.0.
        last_channels = scaled_channels(LAST_CHANNELS, max(1.0, width))
        layers += [conv_bn_relu6(channels, last_channels, kernel_size=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(last_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))

    def keep_outputs(self) -> list[nn.Module]:
        return [self.classifier]


@MODELS.register("mobilenet_v2")
def create(num_classes: int, in_channels: int, width: float = 1.0, small_input: bool = True) -> MobileNetV2:
    """MobileNet-v2; `width` multiplies channel counts, `small_input` selects the 32x32 (CIFAR) strides."""
    return MobileNetV2(num_classes=num_classes, in_channels=in_channels, width=width, small_input=small_input)
