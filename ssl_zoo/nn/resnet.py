"""Image backbones: torchvision ResNets (with the CIFAR stem option) and a small CNN for CPU runs.

Every backbone maps images [B, 3, H, W] to pooled features [B, out_dim]. Both run their convolutions
in channels-last memory layout, which oneDNN (CPU) and cuDNN (GPU) compute faster (bench/image_step.py
compares, docs/benchmarks.md has the figures).
"""

from typing import Annotated

import torch
from torch import nn
from torchvision.models import resnet18, resnet50

from ssl_zoo.settings import Numbers, OneOf, Range


class ResNet(nn.Module):
    """torchvision ResNet-18/50 without its classifier.

    cifar_stem: a 3x3 stride-1 first convolution and no max-pool, as SimCLR does for 32 px images
    (the ImageNet stem would shrink a 32 px image to 8 px before the first block).
    """

    reads = ("image",)  # the modalities this encoder takes (build.check_modalities)

    def __init__(self, depth: Annotated[int, OneOf((18, 50))] = 18, cifar_stem: bool = True):
        super().__init__()
        builders = {18: resnet18, 50: resnet50}
        if depth not in builders:
            raise ValueError(f"ResNet depth must be one of {sorted(builders)}, got {depth}")
        net = builders[depth](weights=None)
        if cifar_stem:
            net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        self.out_dim = net.fc.in_features  # 512 or 2048
        self.memory_format = torch.channels_last  # of the convolutions' input (bench/image_step.py compares)
        net.fc = nn.Identity()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.contiguous(memory_format=self.memory_format))  # (B, out_dim)


class SmallCNN(nn.Module):
    """Stages of conv-BN-ReLU layers, each stage after the first halving the resolution; global
    average pool. At the defaults (four stages of one layer) 0.39M parameters: small enough for the
    CPU budgets of the image methods.
    """

    reads = ("image",)

    def __init__(self, widths: Annotated[tuple[int, ...], Numbers(Range(1, whole=True))] = (32, 64, 128, 256),
                 layers_per_stage: Annotated[int, Range(1, whole=True)] = 1):
        super().__init__()
        layers, in_ch = [], 3
        for i, width in enumerate(widths):
            for j in range(layers_per_stage):
                stride = 2 if i > 0 and j == 0 else 1
                layers += [
                    nn.Conv2d(in_ch, width, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                in_ch = width
        self.features = nn.Sequential(*layers)
        self.out_dim = in_ch
        self.memory_format = torch.channels_last  # of the convolutions' input (bench/image_step.py compares)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.contiguous(memory_format=self.memory_format)
        return self.features(x).mean(dim=(2, 3))  # (B, C, H, W) -> (B, C)
