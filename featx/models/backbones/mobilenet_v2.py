"""MMAction2 0.x's ``MobileNetV2`` (inverted residual blocks, ReLU6) and ``MobileNetV2TSM`` (with the
temporal shift in front of each residual block's first conv)."""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Sequence

from torch import Tensor, nn

from featx.errors import UserError
from featx.models.backbones.resnet_tsm import TemporalShift
from featx.models.layers import ConvModule, check_layer_cfgs, check_pretrained, positive_int
from featx.registry import MODELS

_CONV = MappingProxyType({"type": "Conv"})
_BN2D = MappingProxyType({"type": "BN2d", "requires_grad": True})
_RELU6 = MappingProxyType({"type": "ReLU6", "inplace": True})

# Per stage: expand ratio, output channels (before widen_factor), blocks, stride of the first block.
ARCH_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                 (6, 320, 1, 1))
NUM_OUTPUTS = len(ARCH_SETTINGS) + 1  # the stages and the final 1x1 conv2


def make_divisible(value: float, divisor: int, min_value: int | None = None, min_ratio: float = 0.9) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``min_value``, default
    ``divisor``), one multiple more if that lost over ``1 - min_ratio`` of it: MMAction2's channel rule."""
    rounded = max(divisor if min_value is None else min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < min_ratio * value else rounded


class InvertedResidual(nn.Module):
    """``conv``: an optional 1x1 expansion (when ``expand_ratio != 1``), a 3x3 depthwise conv (with the
    stride) and a 1x1 projection without activation; the input is added back when the shapes allow
    (``use_res_connect``)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float,
                 conv_cfg: Mapping[str, Any] | None, norm_cfg: Mapping[str, Any] | None,
                 act_cfg: Mapping[str, Any] | None) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        hidden = int(round(in_channels * expand_ratio))
        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        layers = [ConvModule(in_channels, hidden, 1, act_cfg=act_cfg, **cfgs)] if expand_ratio != 1 else []
        layers += [
            ConvModule(hidden, hidden, 3, stride, 1, groups=hidden, act_cfg=act_cfg, **cfgs),
            ConvModule(hidden, out_channels, 1, act_cfg=None, **cfgs),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


@MODELS.register()
class MobileNetV2(nn.Module):
    """MMAction2 0.x ``MobileNetV2``: ``conv1``, stages ``layer1``..``layer7`` and the 1x1 ``conv2`` (1280
    channels, more when ``widen_factor > 1``); returns the outputs in ``out_indices`` (0..7, 7 is
    ``conv2``)."""

    def __init__(
        self,
        pretrained: str | None = None,
        widen_factor: float = 1.0,
        out_indices: Sequence[int] = (7,),
        frozen_stages: int = -1,
        conv_cfg: Mapping[str, Any] | None = _CONV,
        norm_cfg: Mapping[str, Any] | None = _BN2D,
        act_cfg: Mapping[str, Any] | None = _RELU6,
        norm_eval: bool = False,
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        del norm_eval, with_cp  # training only
        name = type(self).__name__
        check_pretrained(name, pretrained)
        if isinstance(widen_factor, bool) or not isinstance(widen_factor, (int, float)) or widen_factor <= 0:
            raise UserError(f"{name}: widen_factor={widen_factor!r} must be a positive number")
        if not isinstance(out_indices, Sequence) or not out_indices or not all(
                isinstance(i, int) and 0 <= i < NUM_OUTPUTS for i in out_indices):
            raise UserError(f"{name}: out_indices={out_indices!r} must be indices in 0..{NUM_OUTPUTS - 1}")
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= NUM_OUTPUTS:
            raise UserError(f"{name}: frozen_stages={frozen_stages!r} must be in -1..{NUM_OUTPUTS}")
        check_layer_cfgs(name, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.out_indices = tuple(out_indices)
        channels = make_divisible(32 * widen_factor, 8)
        self.conv1 = ConvModule(3, channels, 3, 2, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.layers = []
        for i, (expand_ratio, base_channels, num_blocks, stride) in enumerate(ARCH_SETTINGS, 1):
            out_channels = make_divisible(base_channels * widen_factor, 8)
            blocks = []
            for b in range(num_blocks):
                blocks.append(InvertedResidual(channels, out_channels, stride if b == 0 else 1, expand_ratio,
                                               conv_cfg, norm_cfg, act_cfg))
                channels = out_channels
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            self.layers.append(f"layer{i}")
        self.conv2 = ConvModule(channels, int(1280 * widen_factor) if widen_factor > 1.0 else 1280, 1,
                                conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.layers.append("conv2")

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        x = self.conv1(x)
        outs = []
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return outs[0] if len(outs) == 1 else tuple(outs)


@MODELS.register()
class MobileNetV2TSM(MobileNetV2):
    """MMAction2 0.x ``MobileNetV2TSM``: the temporal shift in front of the expansion conv of every
    inverted residual block that adds its input back; ``view_group = num_segments``."""

    def __init__(self, num_segments: int = 8, is_shift: bool = True, shift_div: int = 8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_segments = positive_int("MobileNetV2TSM", "num_segments", num_segments)
        if is_shift:
            shift_div = positive_int("MobileNetV2TSM", "shift_div", shift_div)
            for module in list(self.modules()):
                if isinstance(module, InvertedResidual) and len(module.conv) == 3 and module.use_res_connect:
                    module.conv[0] = TemporalShift(module.conv[0], num_segments, shift_div)
        self.view_group = num_segments if is_shift else 1
