"""MMAction2 0.x's 2D ``ResNet``, and the residual blocks and stages it shares with ``ResNet3d``.

Both backbones are built from the same parts: a block is a list of ConvModules ``conv1..convN``
plus an optional ``downsample`` shortcut; a 2D block is the 3D one with the temporal axis
dropped (:meth:`ConvBuilder.shape`), and a 3D block only differs by its temporal kernel sizes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

from torch import Tensor, nn

from featx.errors import UserError
from featx.models.conv_module import ConvBuilder, ConvModule
from featx.registry import MODELS

STYLES = ("pytorch", "caffe")


class ResBlock(nn.Module):
    """``relu(convN(...conv1(x)) + shortcut(x))``; the shortcut is ``downsample`` or the identity."""

    def __init__(self, convs: Sequence[ConvModule], downsample: ConvModule | None = None) -> None:
        super().__init__()
        self.num_convs = len(convs)
        for i, conv in enumerate(convs, 1):
            self.add_module(f"conv{i}", conv)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for i in range(1, self.num_convs):
            out = getattr(self, f"conv{i}")(out)
        identity = x if self.downsample is None else self.downsample(x)
        return getattr(self, f"conv{self.num_convs}").add_relu(out, identity)


# A block's convs: (builder, inplanes, planes, stride, dilation, style, (kt1, kt2)) -> ConvModules,
# where kt1, kt2 are the temporal kernel sizes of the first two convs (ignored in 2D).
ConvsFn = Callable[[ConvBuilder, int, int, tuple[int, ...], int, str, tuple[int, int]], list[ConvModule]]


def _basic_convs(
    b: ConvBuilder, inplanes: int, planes: int, stride: tuple[int, ...], dilation: int, style: str,
    temporal: tuple[int, int],
) -> list[ConvModule]:
    """Two 3x3 convs, the stride on the first (whatever the style)."""
    kt1, kt2 = temporal
    return [
        b.conv(inplanes, planes, b.shape(kt1, 3), stride, b.shape(kt1 // 2, dilation), b.shape(1, dilation)),
        b.conv(planes, planes, b.shape(kt2, 3), 1, b.shape(kt2 // 2, 1), relu=False),
    ]


def _bottleneck_convs(
    b: ConvBuilder, inplanes: int, planes: int, stride: tuple[int, ...], dilation: int, style: str,
    temporal: tuple[int, int],
) -> list[ConvModule]:
    """1x1 -> 3x3 -> 1x1 (x4 channels); the stride is on the 3x3 ('pytorch') or the first 1x1 ('caffe')."""
    kt1, kt2 = temporal
    ones = (1,) * len(stride)
    stride1, stride2 = (ones, stride) if style == "pytorch" else (stride, ones)
    return [
        b.conv(inplanes, planes, b.shape(kt1, 1), stride1, b.shape(kt1 // 2, 0)),
        b.conv(planes, planes, b.shape(kt2, 3), stride2, b.shape(kt2 // 2, dilation), b.shape(1, dilation)),
        b.conv(planes, planes * 4, 1, relu=False),
    ]


@dataclass(frozen=True)
class BlockKind:
    """A residual block type: its output channels per ``planes`` and how its convs are made."""

    expansion: int
    convs: ConvsFn


BASIC = BlockKind(1, _basic_convs)
BOTTLENECK = BlockKind(4, _bottleneck_convs)

ARCH_SETTINGS: dict[int, tuple[BlockKind, tuple[int, ...]]] = {
    18: (BASIC, (2, 2, 2, 2)),
    34: (BASIC, (3, 4, 6, 3)),
    50: (BOTTLENECK, (3, 4, 6, 3)),
    101: (BOTTLENECK, (3, 4, 23, 3)),
    152: (BOTTLENECK, (3, 8, 36, 3)),
}


def make_res_layer(
    b: ConvBuilder,
    kind: BlockKind,
    inplanes: int,
    planes: int,
    stride: tuple[int, ...],
    dilation: int,
    style: str,
    temporal: Sequence[tuple[int, int]],
) -> nn.Sequential:
    """One stage: ``len(temporal)`` blocks, the first one strided and with the ``downsample`` shortcut.

    As in MMAction2, the shortcut exists when the spatial stride is not 1 or the channels change
    (a temporal stride alone does not add one).
    """
    out_planes = planes * kind.expansion
    downsample = None
    if stride[-1] != 1 or inplanes != out_planes:
        downsample = b.conv(inplanes, out_planes, 1, stride, relu=False)
    ones = (1,) * len(stride)
    blocks = [
        ResBlock(
            kind.convs(b, inplanes if i == 0 else out_planes, planes, stride if i == 0 else ones,
                       dilation, style, kt),
            downsample if i == 0 else None,
        )
        for i, kt in enumerate(temporal)
    ]
    return nn.Sequential(*blocks)


class ResNetBase(nn.Module):
    """Stem ``conv1`` -> ``maxpool`` -> ``layer1`` (-> ``pool2``) -> ``layer2`` ... ``layerN``.

    Returns the output of the stages in ``out_indices``: one tensor if there is one, else a tuple.
    """

    def __init__(
        self,
        conv1: ConvModule,
        maxpool: nn.Module,
        stages: Sequence[nn.Module],
        out_indices: Sequence[int],
        pool2: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv1
        self.maxpool = maxpool
        self.pool2 = pool2
        self.res_layers = [f"layer{i}" for i in range(1, len(stages) + 1)]
        for name, stage in zip(self.res_layers, stages):
            self.add_module(name, stage)
        self.out_indices = tuple(out_indices)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        x = self.maxpool(self.conv1(x))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i == 0 and self.pool2 is not None:
                x = self.pool2(x)
            if i in self.out_indices:
                outs.append(x)
        return outs[0] if len(outs) == 1 else tuple(outs)


def check_pretrained(backbone: str, pretrained: Any) -> None:
    """featx never downloads or loads weights at build time."""
    if pretrained is not None:
        raise UserError(
            f"{backbone}: pretrained={pretrained!r} must be None: featx loads weights only from "
            "the CHECKPOINT argument"
        )


def check_arch(backbone: str, depth: int, style: str) -> tuple[BlockKind, tuple[int, ...]]:
    """The block kind and blocks per stage of ``depth``; ``style`` must be pytorch or caffe."""
    if depth not in ARCH_SETTINGS:
        raise UserError(f"{backbone}: depth={depth!r} is not one of {sorted(ARCH_SETTINGS)}")
    if style not in STYLES:
        raise UserError(f"{backbone}: style={style!r} is not one of {', '.join(STYLES)}")
    return ARCH_SETTINGS[depth]


def check_stages(
    backbone: str, num_stages: int, out_indices: Sequence[int], **per_stage: Sequence[Any]
) -> None:
    """``1 <= num_stages <= 4``, ``out_indices`` within it, one value per stage in each ``per_stage``."""
    if not isinstance(num_stages, int) or not 1 <= num_stages <= 4:
        raise UserError(f"{backbone}: num_stages={num_stages!r} must be 1, 2, 3 or 4")
    if (
        not isinstance(out_indices, Sequence)
        or not out_indices
        or not all(isinstance(i, int) and 0 <= i < num_stages for i in out_indices)
    ):
        raise UserError(
            f"{backbone}: out_indices={out_indices!r} must be stage indices in 0..{num_stages - 1}"
        )
    for name, values in per_stage.items():
        if not isinstance(values, Sequence) or len(values) != num_stages:
            raise UserError(f"{backbone}: {name}={values!r} must have {num_stages} entries (num_stages)")


_CONV2D = MappingProxyType({"type": "Conv"})
_BN2D = MappingProxyType({"type": "BN2d", "requires_grad": True})
RELU = MappingProxyType({"type": "ReLU", "inplace": True})


@MODELS.register()
class ResNet(ResNetBase):
    """MMAction2 0.x ``ResNet`` (2D): input (N, C, H, W), output the ``out_indices`` stage maps."""

    def __init__(
        self,
        depth: int,
        pretrained: str | None = None,
        torchvision_pretrain: bool = True,
        in_channels: int = 3,
        num_stages: int = 4,
        out_indices: Sequence[int] = (3,),
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        style: str = "pytorch",
        frozen_stages: int = -1,
        conv_cfg: Mapping[str, Any] | None = _CONV2D,
        norm_cfg: Mapping[str, Any] | None = _BN2D,
        act_cfg: Mapping[str, Any] | None = RELU,
        norm_eval: bool = False,
        partial_bn: bool = False,
        with_cp: bool = False,
    ) -> None:
        # Training-only switches: no effect on a model in eval mode.
        del torchvision_pretrain, frozen_stages, norm_eval, partial_bn, with_cp
        check_pretrained("ResNet", pretrained)
        kind, stage_blocks = check_arch("ResNet", depth, style)
        check_stages("ResNet", num_stages, out_indices, strides=strides, dilations=dilations)
        b = ConvBuilder.from_configs(2, conv_cfg, norm_cfg, act_cfg)
        stages = []
        inplanes = 64
        for i, num_blocks in enumerate(stage_blocks[:num_stages]):
            planes = 64 * 2**i
            stages.append(
                make_res_layer(b, kind, inplanes, planes, (strides[i],) * 2, dilations[i], style,
                               [(1, 1)] * num_blocks)
            )
            inplanes = planes * kind.expansion
        super().__init__(
            conv1=b.conv(in_channels, 64, 7, stride=2, padding=3),
            maxpool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            stages=stages,
            out_indices=out_indices,
        )


_TORCHVISION_RULES = [
    (re.compile(r"conv1\.weight"), "conv1.conv.weight"),
    (re.compile(r"bn1\.(\w+)"), r"conv1.bn.\1"),
    (re.compile(r"(layer\d+\.\d+)\.conv(\d)\.weight"), r"\1.conv\2.conv.weight"),
    (re.compile(r"(layer\d+\.\d+)\.bn(\d)\.(\w+)"), r"\1.conv\2.bn.\3"),
    (re.compile(r"(layer\d+\.\d+)\.downsample\.0\.(\w+)"), r"\1.downsample.conv.\2"),
    (re.compile(r"(layer\d+\.\d+)\.downsample\.1\.(\w+)"), r"\1.downsample.bn.\2"),
]


def torchvision_resnet_to_mmaction(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a torchvision ResNet state dict to :class:`ResNet`'s keys, as MMAction2 does for
    ``torchvision://resnetXX``; ``fc.*`` is dropped. Raises UserError on any other key."""
    mapped = {}
    for key, value in state_dict.items():
        if key.startswith("fc."):
            continue
        for pattern, replacement in _TORCHVISION_RULES:
            match = pattern.fullmatch(key)
            if match:
                mapped[match.expand(replacement)] = value
                break
        else:
            raise UserError(f"{key!r} is not a torchvision ResNet state dict key")
    return mapped
