"""MMAction2 0.x's ``X3D``: depthwise 3D bottlenecks with squeeze-excitation and Swish, widths and
depths scaled by ``gamma_w`` / ``gamma_b`` / ``gamma_d``."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from featx.errors import UserError
from featx.models.layers import BN3D, CONV3D, RELU, ConvBuilder, ConvModule, Swish, check_layer_cfgs, check_pretrained
from featx.models.residual import ResBlock, check_relu
from featx.registry import MODELS

SE_STYLES = ("all", "half")


def round_width(width: float, multiplier: float, divisor: int = 8) -> int:
    """``width * multiplier`` to the nearest multiple of ``divisor`` (at least ``divisor``), rounded up
    when rounding to nearest loses more than 10%; a multiplier of 0 (or None) keeps ``width``."""
    if not multiplier:
        return int(width)
    width *= multiplier
    rounded = max(divisor, int(width + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * width else rounded)


class SEModule(nn.Module):
    """Squeeze-excitation: ``x * sigmoid(fc2(relu(fc1(mean over T, H, W of x))))``, 1x1x1 convs with bias."""

    def __init__(self, channels: int, reduction: float) -> None:
        super().__init__()
        bottleneck = round_width(channels, reduction)
        self.fc1 = nn.Conv3d(channels, bottleneck, 1)
        self.fc2 = nn.Conv3d(bottleneck, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        scale = F.adaptive_avg_pool3d(x, 1)
        return x * self.fc2(self.fc1(scale).relu_()).sigmoid_()


class BlockX3D(ResBlock):
    """``conv1`` (1x1x1) -> depthwise ``conv2`` (3x3x3) -> ``se_module`` (optional) -> Swish ->
    ``conv3`` (1x1x1), plus the shortcut, then ReLU."""

    def __init__(self, convs: Sequence[nn.Module], downsample: nn.Module | None, se_module: SEModule | None) -> None:
        super().__init__(convs, downsample)
        self.se_module = se_module
        self.swish = Swish()

    def inner(self, x: Tensor) -> Tensor:
        x = super().inner(x)
        return self.swish(x if self.se_module is None else self.se_module(x))


@MODELS.register()
class X3D(nn.Module):
    """MMAction2 0.x ``X3D``: input (N, C, T, H, W), output the map of ``conv5`` (432 channels for X3D-S).

    Stem: spatial ``conv1_s`` and depthwise temporal ``conv1_t``; stage ``i`` has
    ``ceil(gamma_d * (1, 2, 5, 3)[i])`` blocks of ``round(24 * gamma_w) * 2**i`` channels, widened by
    ``gamma_b`` inside; ``se_style`` 'half' puts squeeze-excitation in every other block. As in
    MMAction2, the blocks always use Swish (``use_swish`` has no effect).
    """

    def __init__(
        self,
        gamma_w: float = 1.0,
        gamma_b: float = 1.0,
        gamma_d: float = 1.0,
        pretrained: str | None = None,
        in_channels: int = 3,
        num_stages: int = 4,
        spatial_strides: Sequence[int] = (2, 2, 2, 2),
        frozen_stages: int = -1,
        se_style: str = "half",
        se_ratio: float | None = 1 / 16,
        use_swish: bool = True,
        conv_cfg: Mapping[str, Any] | None = CONV3D,
        norm_cfg: Mapping[str, Any] | None = BN3D,
        act_cfg: Mapping[str, Any] | None = RELU,
        norm_eval: bool = False,
        with_cp: bool = False,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        del frozen_stages, use_swish, norm_eval, with_cp, zero_init_residual  # training only, or unused
        check_pretrained("X3D", pretrained)
        if not isinstance(num_stages, int) or not 1 <= num_stages <= 4:
            raise UserError(f"X3D: num_stages={num_stages!r} must be 1, 2, 3 or 4")
        if not isinstance(spatial_strides, Sequence) or len(spatial_strides) != num_stages:
            raise UserError(f"X3D: spatial_strides={spatial_strides!r} must have {num_stages} entries (num_stages)")
        if se_style not in SE_STYLES:
            raise UserError(f"X3D: se_style={se_style!r} is not one of {', '.join(SE_STYLES)}")
        if se_ratio is not None and not se_ratio > 0:
            raise UserError(f"X3D: se_ratio={se_ratio!r} must be positive or None")
        check_layer_cfgs("X3D", conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        check_relu("X3D", act_cfg)
        b = ConvBuilder(3, conv_cfg, norm_cfg, act_cfg)

        base = round_width(24, gamma_w)
        self.conv1_s = ConvModule(in_channels, base, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False,
                                  conv_cfg=conv_cfg, norm_cfg=None, act_cfg=None)
        self.conv1_t = b.conv(base, base, (5, 1, 1), 1, (2, 0, 0), groups=base)
        self.res_layers = []
        layer_inplanes = base
        for i, repeats in enumerate((1, 2, 5, 3)[:num_stages]):
            blocks = math.ceil(gamma_d * repeats) if gamma_d else repeats
            inplanes = base * 2**i
            planes = int(inplanes * gamma_b)
            name = f"layer{i + 1}"
            self.add_module(name, self._stage(b, layer_inplanes, inplanes, planes, blocks, spatial_strides[i],
                                              se_style, se_ratio))
            self.res_layers.append(name)
            layer_inplanes = inplanes
        self.conv5 = b.conv(layer_inplanes, int(layer_inplanes * gamma_b), 1)

    @staticmethod
    def _stage(b: ConvBuilder, layer_inplanes: int, inplanes: int, planes: int, blocks: int, spatial_stride: int,
               se_style: str, se_ratio: float | None) -> nn.Sequential:
        """``blocks`` blocks from ``layer_inplanes`` to ``inplanes`` channels, ``planes`` inside; the first
        one strided, with a 1x1x1 ``downsample`` shortcut when the stride or the channels change."""
        stride = (1, spatial_stride, spatial_stride)
        layers = []
        for i in range(blocks):
            block_in, block_stride = (layer_inplanes, stride) if i == 0 else (inplanes, 1)
            downsample = None
            if i == 0 and (spatial_stride != 1 or layer_inplanes != inplanes):
                downsample = b.conv(layer_inplanes, inplanes, 1, stride, relu=False)
            convs = [
                b.conv(block_in, planes, 1),
                b.conv(planes, planes, 3, block_stride, 1, groups=planes, relu=False),
                b.conv(planes, inplanes, 1, relu=False),
            ]
            use_se = se_ratio is not None and (se_style == "all" or i % 2 == 0)
            layers.append(BlockX3D(convs, downsample, SEModule(planes, se_ratio) if use_se else None))
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1_t(self.conv1_s(x))
        for name in self.res_layers:
            x = getattr(self, name)(x)
        return self.conv5(x)
