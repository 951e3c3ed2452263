"""MMAction2 0.x's ``TPN`` neck (Temporal Pyramid Network) as it runs at test time.

Its auxiliary head is a training loss on ``x[-2]`` and plays no part in the features: it is not built,
so a checkpoint's ``neck.aux_head.*`` keys are unused, as its ``cls_head.*`` keys are.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from featx.errors import UserError
from featx.models.layers import BN3D, CONV3D, RELU, ConvModule, check_layer_cfgs
from featx.registry import MODELS, check_arguments

FLOW_TYPES = ("cascade", "parallel")
POSITIONS = ("before", "after")


def _build(what: str, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``factory(*args, **kwargs)``, with arguments a config gave wrongly reported as the user's error."""
    try:
        check_arguments(factory, args, kwargs)
    except TypeError as exc:
        raise UserError(f"TPN: {what}: {exc}") from None
    return factory(*args, **kwargs)


class DownSample(nn.Module):
    """A ``conv`` (ConvModule) and a max-pool of kernel = stride = ``downsample_scale`` (ceil mode),
    the pool ``downsample_position`` 'before' or 'after' the conv."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = (3, 1, 1),
        stride: int | Sequence[int] = (1, 1, 1),
        padding: int | Sequence[int] = (1, 0, 0),
        groups: int = 1,
        bias: bool | str = False,
        conv_cfg: Mapping[str, Any] | None = CONV3D,
        norm_cfg: Mapping[str, Any] | None = None,
        act_cfg: Mapping[str, Any] | None = None,
        downsample_position: str = "after",
        downsample_scale: int | Sequence[int] = (1, 2, 2),
    ) -> None:
        super().__init__()
        if downsample_position not in POSITIONS:
            raise UserError(f"TPN: downsample_position={downsample_position!r} is not one of {', '.join(POSITIONS)}")
        check_layer_cfgs("TPN", conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv = ConvModule(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias,
                               conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.pool = nn.MaxPool3d(downsample_scale, downsample_scale, 0, ceil_mode=True)
        self.pool_first = downsample_position == "before"

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pool(x)) if self.pool_first else self.pool(self.conv(x))


class LevelFusion(nn.Module):
    """Each level through a grouped 1x1x1 conv (after a max-pool of ``downsample_scales[i]``), the
    levels concatenated and fused by a 1x1x1 ``fusion_conv``."""

    def __init__(
        self,
        in_channels: Sequence[int],
        mid_channels: Sequence[int],
        out_channels: int,
        downsample_scales: Sequence[int | Sequence[int]] = ((1, 1, 1), (1, 1, 1)),
    ) -> None:
        super().__init__()
        if not len(in_channels) == len(mid_channels) == len(downsample_scales):
            raise UserError(f"TPN: level_fusion_cfg in_channels={in_channels!r}, mid_channels={mid_channels!r} and "
                            f"downsample_scales={downsample_scales!r} must have one entry per level")
        self.downsamples = nn.ModuleList(
            DownSample(cin, cmid, 1, 1, 0, groups=32, norm_cfg=BN3D, act_cfg=RELU, downsample_position="before",
                       downsample_scale=scale)
            for cin, cmid, scale in zip(in_channels, mid_channels, downsample_scales)
        )
        self.fusion_conv = ConvModule(sum(mid_channels), out_channels, 1, bias=False, conv_cfg=CONV3D,
                                      norm_cfg=BN3D, act_cfg=RELU)

    def forward(self, x: Sequence[Tensor]) -> Tensor:
        return self.fusion_conv(torch.cat([down(f) for down, f in zip(self.downsamples, x, strict=True)], 1))


class SpatialModulation(nn.Module):
    """Brings each level to ``out_channels`` and the top level's size: ``log2(out_channels // c)``
    strided (1, 3, 3) convs, each doubling the channels (none for the top level)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.spatial_modulation = nn.ModuleList()
        for channels in in_channels:
            doublings = max(1, out_channels // channels).bit_length() - 1  # floor(log2(...))
            self.spatial_modulation.append(nn.Sequential(*(
                ConvModule(channels * 2**k, channels * 2 ** (k + 1), (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False,
                           conv_cfg=CONV3D, norm_cfg=BN3D, act_cfg=RELU)
                for k in range(doublings)
            )))

    def forward(self, x: Sequence[Tensor]) -> list[Tensor]:
        return [op(f) for op, f in zip(self.spatial_modulation, x, strict=True)]


@MODELS.register()
class TPN(nn.Module):
    """MMAction2 0.x ``TPN`` neck: backbone stage outputs (``in_channels`` each) -> one map.

    Spatial then temporal modulation of every level; a top-down flow (upsampled higher levels added
    to lower ones) and a bottom-up flow (downsampled lower levels added to higher ones; 'cascade'
    starts it from the top-down sums, 'parallel' from the modulated levels), each level-fused; the
    two fused maps concatenated and fused into 2048 channels. Returns that map, which is what
    MMAction2 pools for features (its second output, the auxiliary loss, is training only).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        spatial_modulation_cfg: Mapping[str, Any] | None = None,
        temporal_modulation_cfg: Mapping[str, Any] | None = None,
        upsample_cfg: Mapping[str, Any] | None = None,
        downsample_cfg: Mapping[str, Any] | None = None,
        level_fusion_cfg: Mapping[str, Any] | None = None,
        aux_head_cfg: Mapping[str, Any] | None = None,
        flow_type: str = "cascade",
    ) -> None:
        super().__init__()
        del aux_head_cfg  # training only (see the module docstring)
        if flow_type not in FLOW_TYPES:
            raise UserError(f"TPN: flow_type={flow_type!r} is not one of {', '.join(FLOW_TYPES)}")
        for name, cfg in (("spatial_modulation_cfg", spatial_modulation_cfg),
                          ("temporal_modulation_cfg", temporal_modulation_cfg), ("level_fusion_cfg", level_fusion_cfg)):
            if not isinstance(cfg, Mapping):
                raise UserError(f"TPN: {name}={cfg!r} must be a dict (MMAction2's TPN needs it)")
        scales = temporal_modulation_cfg.get("downsample_scales", ())
        if len(scales) != len(in_channels):
            raise UserError(f"TPN: temporal_modulation_cfg.downsample_scales={scales!r} must have one entry "
                            f"per level ({len(in_channels)})")
        self.parallel = flow_type == "parallel"
        self.temporal_modulation_ops = nn.ModuleList(
            DownSample(in_channels[-1], out_channels, groups=32, downsample_scale=(scale, 1, 1)) for scale in scales
        )
        between = range(len(in_channels) - 1)
        self.upsample_ops = nn.ModuleList(
            [] if upsample_cfg is None else [_build("upsample_cfg", nn.Upsample, **upsample_cfg) for _ in between]
        )
        self.downsample_ops = nn.ModuleList(
            [] if downsample_cfg is None
            else [_build("downsample_cfg", DownSample, out_channels, out_channels, **downsample_cfg) for _ in between]
        )
        self.level_fusion_1 = _build("level_fusion_cfg", LevelFusion, **level_fusion_cfg)
        self.spatial_modulation = _build("spatial_modulation_cfg", SpatialModulation, **spatial_modulation_cfg)
        self.level_fusion_2 = _build("level_fusion_cfg", LevelFusion, **level_fusion_cfg)
        self.pyramid_fusion = ConvModule(level_fusion_cfg["out_channels"] * 2, 2048, 1, bias=False,
                                         conv_cfg=CONV3D, norm_cfg=BN3D)

    def forward(self, x: Sequence[Tensor]) -> Tensor:
        if isinstance(x, Tensor):
            raise ValueError("TPN needs the outputs of several backbone stages (out_indices)")
        spatial = self.spatial_modulation(x)
        levels = [op(f) for op, f in zip(self.temporal_modulation_ops, spatial)]
        outs = list(levels)
        if len(self.upsample_ops):
            for i in range(len(outs) - 1, 0, -1):
                outs[i - 1] = outs[i - 1] + self.upsample_ops[i - 1](outs[i])
        top_down = self.level_fusion_1(outs)
        if self.parallel:
            outs = list(levels)
        if len(self.downsample_ops):
            for i in range(len(outs) - 1):
                outs[i + 1] = outs[i + 1] + self.downsample_ops[i](outs[i])
        bottom_up = self.level_fusion_2(outs)
        return self.pyramid_fusion(torch.cat([top_down, bottom_up], 1))
