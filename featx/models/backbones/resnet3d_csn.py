"""MMAction2 0.x's channel-separated networks: ``ResNet3dCSN`` (ir-CSN and ip-CSN)."""
from __future__ import annotations

import functools
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from torch import nn

from featx.errors import UserError
from featx.models.backbones.resnet3d import ResNet3d
from featx.models.layers import ConvBuilder
from featx.models.residual import BOTTLENECK, BlockKind, bottleneck_convs
from featx.registry import MODELS

BOTTLENECK_MODES = ("ir", "ip")
DEPTHS = (50, 101, 152)
_BN3D_EPS = MappingProxyType({"type": "BN3d", "requires_grad": True, "eps": 1e-3})


def csn_convs(mode: str, b: ConvBuilder, inplanes: int, planes: int, stride: tuple[int, ...], dilation: int,
              style: str, temporal: tuple[int, int]) -> list[nn.Module]:
    """A bottleneck whose 3x3x3 ``conv2`` is depthwise, in a ``Sequential``: alone ('ir',
    interaction-reduced) or after a 1x1x1 conv with a norm and no activation ('ip', interaction-preserved)."""
    convs = bottleneck_convs(b, inplanes, planes, stride, dilation, style, temporal, conv2_groups=planes)
    first = [b.conv(planes, planes, 1, relu=False)] if mode == "ip" else []
    convs[1] = nn.Sequential(*first, convs[1])
    return convs


@MODELS.register()
class ResNet3dCSN(ResNet3d):
    """MMAction2 0.x ``ResNet3dCSN``: a bottleneck :class:`ResNet3d` (depth 50, 101 or 152) with
    channel-separated blocks; its defaults are CSN's (3x3x3 inflation, temporal strides, BN eps 1e-3)."""

    def __init__(
        self,
        depth: int,
        pretrained: str | None,
        *,
        temporal_strides: Sequence[int] = (1, 2, 2, 2),
        conv1_kernel: int | Sequence[int] = (3, 7, 7),
        conv1_stride_t: int = 1,
        pool1_stride_t: int = 1,
        norm_cfg: Mapping[str, Any] | None = _BN3D_EPS,
        inflate_style: str = "3x3x3",
        bottleneck_mode: str = "ir",
        bn_frozen: bool = False,
        **kwargs: Any,
    ) -> None:
        del bn_frozen  # training only
        if depth not in DEPTHS:
            raise UserError(f"ResNet3dCSN: depth={depth!r} is not one of {list(DEPTHS)}")
        if bottleneck_mode not in BOTTLENECK_MODES:
            raise UserError(
                f"ResNet3dCSN: bottleneck_mode={bottleneck_mode!r} is not one of {', '.join(BOTTLENECK_MODES)}"
            )
        self.bottleneck_mode = bottleneck_mode  # read by _block_kind while the stages are built
        super().__init__(
            depth, pretrained, temporal_strides=temporal_strides, conv1_kernel=conv1_kernel,
            conv1_stride_t=conv1_stride_t, pool1_stride_t=pool1_stride_t, norm_cfg=norm_cfg,
            inflate_style=inflate_style, **kwargs,
        )

    def _block_kind(self, kind: BlockKind) -> BlockKind:
        return BlockKind(BOTTLENECK.expansion, functools.partial(csn_convs, self.bottleneck_mode))
