"""MobileNetV1 of the MLPerf Tiny visual wake words benchmark (width multiplier 0.25, 96x96 RGB input).

Thirteen depthwise-separable blocks (a 3x3 depthwise and a 1x1 pointwise convolution, each followed
by BatchNorm and ReLU) after a strided 3x3 stem; global average pooling and one linear layer. Channel
counts are the reference's ``int(filters * alpha)`` (Keras MobileNet), 8 .. 256 at alpha 0.25.
"""

from __future__ import annotations

import torch
from torch import nn

# (output channels at width 1.0, stride) of the 13 depthwise-separable blocks.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1))
STRIDE = 32  # total downsampling: the input size must be a multiple of it


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class MobileNetV1(nn.Module):
    def __init__(self, width: float = 0.25, num_classes: int = 2, in_channels: int = 3, input_size: int = 96):
        super().__init__()
        if input_size % STRIDE:
            raise ValueError(f"input_size {input_size} must be a multiple of {STRIDE}")
        if not 0 < width <= 4:
            raise ValueError(f"width {width} must be in (0, 4]")
        self.input_size = input_size
        c = max(1, int(32 * width))
        layers = [_conv_bn(in_channels, c, 3, 2)]
        for filters, stride in BLOCKS:
            out = max(1, int(filters * width))
            layers += [_conv_bn(c, c, 3, stride, groups=c), _conv_bn(c, out, 1, 1)]
            c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def mobilenet_v1(width: float = 0.25, num_classes: int = 2, in_channels: int = 3, input_size: int = 96):
    """Factory registered as ``mobilenet_v1``: ``width`` is the multiplier alpha, ``input_size`` the square side.

    ``input_size`` fixes no weight (pooling is global); it is checked to be a multiple of 32 and kept on
    the model so a recipe states the resolution it was designed for.
    """
    return MobileNetV1(width, num_classes, in_channels, input_size)
