"""Residual blocks, the stage builder and the stem-and-stages skeleton shared by the ResNet families.

A block is a list of conv modules ``conv1..convN`` plus an optional ``downsample`` shortcut and an
optional ``non_local_block`` after it; a :class:`BlockKind` says how a block's convs are made, so a
family injects its own (CSN's channel-separated conv2, R(2+1)D's factorised convs). A 2D block is
the 3D one with the temporal axis dropped (:meth:`ConvBuilder.shape`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from torch import Tensor, nn

from featx.errors import UserError
from featx.models.layers import ConvBuilder, ConvModule

STYLES = ("pytorch", "caffe")


class ResBlock(nn.Module):
    """``relu(convN(...conv1(x)) + shortcut(x))``, then ``non_local_block`` if any; the shortcut is
    ``downsample`` or the identity. The last conv has no activation of its own; the one after the sum
    is ``relu`` (a ReLU unless given: a family may inject another; it has no weights, so no keys)."""

    def __init__(self, convs: Sequence[nn.Module], downsample: nn.Module | None = None,
                 non_local_block: nn.Module | None = None, relu: nn.Module | None = None) -> None:
        super().__init__()
        self.num_convs = len(convs)
        for i, conv in enumerate(convs, 1):
            self.add_module(f"conv{i}", conv)
        self.downsample = downsample
        self.non_local_block = non_local_block
        self.relu = nn.ReLU(inplace=True) if relu is None else relu

    def inner(self, x: Tensor) -> Tensor:
        """Every conv but the last; a block with more between them (X3D's squeeze-excitation) extends it."""
        for i in range(1, self.num_convs):
            x = getattr(self, f"conv{i}")(x)
        return x

    def add_shortcut(self, out: Tensor, identity: Tensor) -> Tensor:
        """``relu(convN(out) + identity)`` (fused into one oneDNN kernel where the last conv can)."""
        last = getattr(self, f"conv{self.num_convs}")
        if isinstance(last, ConvModule):
            return last.add_activate(out, identity, self.relu)
        return self.relu(last(out) + identity)

    def forward(self, x: Tensor) -> Tensor:
        out = self.inner(x)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.add_shortcut(out, identity)
        return out if self.non_local_block is None else self.non_local_block(out)


# A block's convs: (builder, inplanes, planes, stride, dilation, style, (kt1, kt2)) -> modules,
# where kt1, kt2 are the temporal kernel sizes of the first two convs (ignored in 2D).
ConvsFn = Callable[[ConvBuilder, int, int, tuple[int, ...], int, str, tuple[int, int]], list[nn.Module]]


def basic_convs(b: ConvBuilder, inplanes: int, planes: int, stride: tuple[int, ...], dilation: int, style: str,
                temporal: tuple[int, int]) -> list[nn.Module]:
    """Two 3x3 convs, the stride on the first (whatever the style)."""
    kt1, kt2 = temporal
    return [
        b.conv(inplanes, planes, b.shape(kt1, 3), stride, b.shape(kt1 // 2, dilation), b.shape(1, dilation)),
        b.conv(planes, planes, b.shape(kt2, 3), 1, b.shape(kt2 // 2, 1), relu=False),
    ]


def bottleneck_convs(b: ConvBuilder, inplanes: int, planes: int, stride: tuple[int, ...], dilation: int, style: str,
                     temporal: tuple[int, int], conv2_groups: int = 1) -> list[nn.Module]:
    """1x1 -> 3x3 -> 1x1 (x4 channels); the stride is on the 3x3 ('pytorch') or the first 1x1 ('caffe').
    ``conv2_groups`` splits the 3x3 into groups (CSN's depthwise one)."""
    kt1, kt2 = temporal
    ones = (1,) * len(stride)
    stride1, stride2 = (ones, stride) if style == "pytorch" else (stride, ones)
    return [
        b.conv(inplanes, planes, b.shape(kt1, 1), stride1, b.shape(kt1 // 2, 0)),
        b.conv(planes, planes, b.shape(kt2, 3), stride2, b.shape(kt2 // 2, dilation), b.shape(1, dilation),
               conv2_groups),
        b.conv(planes, planes * 4, 1, relu=False),
    ]


@dataclass(frozen=True)
class BlockKind:
    """A residual block type: its output channels per ``planes`` and how its convs are made."""

    expansion: int
    convs: ConvsFn


BASIC = BlockKind(1, basic_convs)
BOTTLENECK = BlockKind(4, bottleneck_convs)

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
    non_local: Sequence[Callable[[int], nn.Module] | None] | None = None,
    relu: Callable[[], nn.Module] | None = None,
) -> nn.Sequential:
    """One stage: ``len(temporal)`` blocks, the first one strided and with the ``downsample`` shortcut.

    As in MMAction2, the shortcut exists when the spatial stride is not 1 or the channels change
    (a temporal stride alone does not add one). ``non_local[i]``, when given, makes block ``i``'s
    ``non_local_block`` from the block's output channels; ``relu``, when given, makes each block's
    activation after the sum (a ReLU otherwise).
    """
    out_planes = planes * kind.expansion
    downsample = None
    if stride[-1] != 1 or inplanes != out_planes:
        downsample = b.conv(inplanes, out_planes, 1, stride, relu=False)
    ones = (1,) * len(stride)
    after = non_local or [None] * len(temporal)
    blocks = [
        ResBlock(
            kind.convs(b, inplanes if i == 0 else out_planes, planes, stride if i == 0 else ones, dilation, style, kt),
            downsample if i == 0 else None,
            None if make_after is None else make_after(out_planes),
            None if relu is None else relu(),
        )
        for i, (kt, make_after) in enumerate(zip(temporal, after))
    ]
    return nn.Sequential(*blocks)


class ResNetBase(nn.Module):
    """Stem ``conv1`` -> ``maxpool`` -> ``layer1`` (-> ``pool2``) -> ``layer2`` ... ``layerN``.

    Returns the output of the stages in ``out_indices``: one tensor if there is one, else a tuple.
    A caller that drives several of them in lockstep (SlowFast) uses :meth:`stem` and :meth:`stages`.
    """

    def __init__(
        self,
        conv1: nn.Module,
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

    def stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.conv1(x))

    def stages(self) -> Iterator[nn.Module]:
        """``layer1``, ``layer2``, ... as they are now (a family may have wrapped or replaced them)."""
        return (getattr(self, name) for name in self.res_layers)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages()):
            x = stage(x)
            if i == 0 and self.pool2 is not None:
                x = self.pool2(x)
            if i in self.out_indices:
                outs.append(x)
        return outs[0] if len(outs) == 1 else tuple(outs)


def check_arch(backbone: str, depth: int, style: str) -> tuple[BlockKind, tuple[int, ...]]:
    """The block kind and blocks per stage of ``depth``; ``style`` must be pytorch or caffe."""
    if depth not in ARCH_SETTINGS:
        raise UserError(f"{backbone}: depth={depth!r} is not one of {sorted(ARCH_SETTINGS)}")
    if style not in STYLES:
        raise UserError(f"{backbone}: style={style!r} is not one of {', '.join(STYLES)}")
    return ARCH_SETTINGS[depth]


def check_relu(backbone: str, act_cfg: Any) -> None:
    """The blocks' activation must be ReLU: :class:`ResBlock` ends in one (as MMAction2's 2D blocks
    always do and its 3D ones do with ``act_cfg=dict(type='ReLU')``)."""
    if not isinstance(act_cfg, Mapping) or act_cfg.get("type") != "ReLU":
        raise UserError(f"{backbone}: act_cfg={act_cfg!r} is not supported (featx's residual blocks end in a ReLU)")


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
