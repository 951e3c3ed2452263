"""MMAction2 1.x's ``torchvision.densenet161`` backbone: torchvision's DenseNet-161 with its classifier
removed, under torchvision's parameter names (``features.denseblock1.denselayer1.conv1.weight``), so a
1.x checkpoint loads as it is.

1.x's ``Recognizer2D`` builds ``torchvision.models.densenet161`` and runs ``backbone.features``: the
output of the last BatchNorm (``norm5``), without the ReLU that torchvision's own ``forward`` adds
before its classifier; the recognizer average-pools it.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from featx.errors import UserError
from featx.models.layers import check_pretrained
from featx.registry import MODELS


class _DenseLayer(nn.Module):
    """BN-ReLU-conv 1x1 to ``bn_size * growth_rate`` channels, BN-ReLU-conv 3x3 to ``growth_rate``, on the
    concatenation of every earlier output of its block; the BN after the 1x1 conv folds into it."""

    conv_norm_pairs = (("conv1", "norm2"),)

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, features: list[Tensor]) -> Tensor:
        x = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        return self.conv2(self.relu2(self.norm2(x)))


class _DenseBlock(nn.ModuleDict):
    """``denselayer1`` ... ``denselayerN``; the output is the input and every layer's output, concatenated."""

    def __init__(self, layers: int, in_channels: int, growth_rate: int, bn_size: int) -> None:
        super().__init__({f"denselayer{i + 1}": _DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size)
                          for i in range(layers)})

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Features(nn.Sequential):
    """torchvision's ``features``: the stem (``conv0``, ``norm0``: folds into it), dense blocks with
    transitions (BN-ReLU-conv 1x1 halving the channels, 2x2 average pooling) between them, ``norm5``."""

    conv_norm_pairs = (("conv0", "norm0"),)


@MODELS.register("torchvision.densenet161")
class DenseNet161(nn.Module):
    """DenseNet-161 (growth rate 48, blocks of 6, 12, 36, 24 layers, 96 stem channels): input (N, 3, H, W),
    output ``features`` (N, 2208, H / 32, W / 32).

    Takes what 1.x passes on to torchvision: ``pretrained``/``weights`` (None: featx loads weights from the
    checkpoint only), ``drop_rate`` and ``memory_efficient`` (training only), and 1.x's ``feature_shape``
    (``NCHW``, what DenseNet gives, or None)."""

    growth_rate, blocks, stem_channels, bn_size = 48, (6, 12, 36, 24), 96, 4

    def __init__(self, pretrained: bool | None = None, weights: str | None = None, drop_rate: float = 0.0,
                 memory_efficient: bool = False, feature_shape: str | None = None) -> None:
        super().__init__()
        del drop_rate, memory_efficient  # dropout is off in eval mode; checkpointing saves training memory
        check_pretrained("torchvision.densenet161", pretrained)
        check_pretrained("torchvision.densenet161", weights, key="weights")
        if feature_shape not in (None, "NCHW"):
            raise UserError(f"torchvision.densenet161: feature_shape={feature_shape!r}: DenseNet's features are "
                            "NCHW (give None or 'NCHW')")
        channels = self.stem_channels
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=nn.Conv2d(3, channels, kernel_size=7, stride=2, padding=3, bias=False),
            norm0=nn.BatchNorm2d(channels), relu0=nn.ReLU(inplace=True),
            pool0=nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        for i, num_layers in enumerate(self.blocks):
            layers[f"denseblock{i + 1}"] = _DenseBlock(num_layers, channels, self.growth_rate, self.bn_size)
            channels += num_layers * self.growth_rate
            if i != len(self.blocks) - 1:
                layers[f"transition{i + 1}"] = nn.Sequential(OrderedDict(
                    norm=nn.BatchNorm2d(channels), relu=nn.ReLU(inplace=True),
                    conv=nn.Conv2d(channels, channels // 2, kernel_size=1, bias=False),
                    pool=nn.AvgPool2d(kernel_size=2, stride=2)))
                channels //= 2
        layers["norm5"] = nn.BatchNorm2d(channels)
        self.features = _Features(layers)
        self.out_channels = channels

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)
