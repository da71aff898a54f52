"""Models the benchmarks share (no torchvision: a ResNet-18-shaped network defined here)."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class ResNet18(nn.Module):
    """ResNet-18's layout (BasicBlock ×[2,2,2,2], 64-512 channels, 21 conv/linear sites); the stem is
    torchvision's 7×7/2 + max-pool for large images and a 3×3/1 CIFAR stem for small ones."""

    def __init__(self, num_classes: int = 1000, width: int = 64, small_input: bool = False):
        super().__init__()
        w = width
        if small_input:
            self.stem = nn.Sequential(
                nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, w, 7, 2, 3, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        layers, cin = [], w
        for i, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def resnet18(num_classes: int, image: int, seed: int = 0, width: int = 64) -> ResNet18:
    """Random-init weights with non-trivial BatchNorm statistics (a few train-mode passes on noise)."""
    torch.manual_seed(seed)
    m = ResNet18(num_classes, width, small_input=image < 100)
    m.train()
    with torch.no_grad():
        for _ in range(2):
            m(torch.randn(8, 3, image, image))
    return m.eval()
