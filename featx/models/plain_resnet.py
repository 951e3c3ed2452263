"""ResNet bottlenecks under torchvision's attribute names (``conv1..3``, ``bn1..3``, ``downsample.0``/``.1``),
2D or 3D: the layout of mmcls/mmpretrain's ResNet and ResNeXt and of 1.x's OmniResNet, whose checkpoints
load by those names (featx's own ResNets use ``ConvModule``'s, ``conv1.conv``/``conv1.bn``)."""
from __future__ import annotations

from typing import Callable, Sequence

from torch import Tensor, nn

CONVS = {2: nn.Conv2d, 3: nn.Conv3d}
NORMS = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class Downsample(nn.Sequential):
    """The shortcut: a pointwise conv of the block's stride and its BatchNorm (``downsample.0``, ``.1``)."""

    conv_norm_pairs = (("0", "1"),)


class Bottleneck(nn.Module):
    """``conv1`` (pointwise, but for a temporal extent in 3D) to ``width``, ``conv2`` (3x3 spatially, the
    stride, ``groups``), ``conv3`` (pointwise) to ``out_channels``; a BatchNorm after each (folding into it),
    ReLU after the first two and after the sum with the shortcut (the identity or :class:`Downsample`).

    ``conv1_kernel``/``conv2_kernel``/``stride`` give every axis (2 or 3 of them); padding keeps the size."""

    conv_norm_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, in_channels: int, width: int, out_channels: int, *, conv1_kernel: Sequence[int],
                 conv2_kernel: Sequence[int], stride: Sequence[int], groups: int = 1) -> None:
        super().__init__()
        conv, norm = CONVS[len(stride)], NORMS[len(stride)]
        self.conv1 = conv(in_channels, width, tuple(conv1_kernel), padding=tuple(k // 2 for k in conv1_kernel),
                          bias=False)
        self.bn1 = norm(width)
        self.conv2 = conv(width, width, tuple(conv2_kernel), stride=tuple(stride),
                          padding=tuple(k // 2 for k in conv2_kernel), groups=groups, bias=False)
        self.bn2 = norm(width)
        self.conv3 = conv(width, out_channels, 1, bias=False)
        self.bn3 = norm(out_channels)
        self.downsample = None
        if in_channels != out_channels or any(s != 1 for s in stride):
            self.downsample = Downsample(conv(in_channels, out_channels, 1, stride=tuple(stride), bias=False),
                                         norm(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(x)).relu_()
        out = self.bn2(self.conv2(out)).relu_()
        out = self.bn3(self.conv3(out))
        return out.add_(x if self.downsample is None else self.downsample(x)).relu_()


class PlainResNet(nn.Module):
    """What OmniResNet and mmcls's ResNeXt share: a stem ``conv1``/``bn1`` (a subclass adds them and its pooling,
    and runs them), then stages ``layer1..4`` of :meth:`add_stages`, run by :meth:`stages`."""

    conv_norm_pairs = (("conv1", "bn1"),)

    def add_stages(self, layers: Sequence[int], block: Callable[[int, int, int, int], nn.Module]) -> None:
        """Stage ``i`` of ``layers[i]`` blocks ``block(i, in_channels, planes, stride)``: planes ``64 * 2**i``, out
        ``4 * planes``, stride 2 at the first block of every stage after the first (the stem gives 64 channels)."""
        in_channels = 64
        for i, blocks in enumerate(layers):
            planes = 64 * 2**i
            stage = []
            for n in range(blocks):
                stage.append(block(i, in_channels, planes, 2 if i > 0 and n == 0 else 1))
                in_channels = planes * 4
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))

    def stages(self, x: Tensor) -> Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
