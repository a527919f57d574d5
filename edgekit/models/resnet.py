"""ResNet-8 of MLPerf Tiny image classification (three residual stacks of 16, 32, 64 filters).

The reference takes 32x32x3 CIFAR-10 images; ``in_channels`` adapts it to 1-channel 28x28 Fashion-MNIST.
The model returns logits; softmax belongs to whoever reads the output.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a skip (a strided 1x1 conv-BN projection when the shape changes); ResNet-8's
    stacks and the zoo's ResNet-18 are built of it."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet8(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w1, 3, 1, 1, bias=False), nn.BatchNorm2d(w1), nn.ReLU())
        self.stack1 = BasicBlock(w1, w1, 1)
        self.stack2 = BasicBlock(w1, w2, 2)
        self.stack3 = BasicBlock(w2, w3, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stack3(self.stack2(self.stack1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet8(in_channels: int = 3, num_classes: int = 10, widths: list[int] | tuple[int, int, int] = (16, 32, 64)):
    """Factory registered as ``resnet8``."""
    return ResNet8(in_channels, num_classes, tuple(widths))
