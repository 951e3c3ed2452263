"""mmcv's ``NonLocal3d`` (non-local neural networks): every position attends to every other one of the
clip; keys ``g``, ``theta``, ``phi`` (1x1x1 ConvModules) and ``conv_out``."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from featx.errors import UserError
from featx.models.layers import ConvModule

MODES = ("gaussian", "embedded_gaussian", "dot_product")


class NonLocal3d(nn.Module):
    """``x + conv_out(softmax-or-scaled(theta(x) . phi(x)) . g(x))`` over all T x H x W positions.

    ``mode``: ``embedded_gaussian`` (softmax of theta . phi, scaled by 1/sqrt(channels) when
    ``use_scale``), ``dot_product`` (divided by the number of positions), ``gaussian`` (softmax of
    x . x, no theta/phi convs). ``sub_sample`` max-pools g and phi by 2 in space. ``norm_cfg``
    applies to ``conv_out`` only. Initialisation arguments are accepted and ignored.
    """

    def __init__(self, in_channels: int, sub_sample: bool = False, reduction: int = 2, use_scale: bool = True,
                 conv_cfg: Mapping[str, Any] | None = None, norm_cfg: Mapping[str, Any] | None = None,
                 mode: str = "embedded_gaussian", std: float = 0.01, zeros_init: bool = True) -> None:
        super().__init__()
        del std, zeros_init  # weight initialisation only
        if mode not in MODES:
            raise UserError(f"NonLocal3d: mode={mode!r} is not one of {', '.join(MODES)}")
        conv_cfg = conv_cfg or {"type": "Conv3d"}
        self.mode, self.use_scale, self.in_channels = mode, use_scale, in_channels
        self.inter_channels = max(in_channels // reduction, 1)

        def conv(cin: int, cout: int, norm: Mapping[str, Any] | None = None) -> ConvModule:
            return ConvModule(cin, cout, 1, conv_cfg=conv_cfg, norm_cfg=norm, act_cfg=None)

        self.g: nn.Module = conv(in_channels, self.inter_channels)
        self.conv_out = conv(self.inter_channels, in_channels, norm_cfg)
        self.theta: nn.Module | None = None
        self.phi: nn.Module | None = None
        if mode != "gaussian":
            self.theta = conv(in_channels, self.inter_channels)
            self.phi = conv(in_channels, self.inter_channels)
        if sub_sample:
            pool = nn.MaxPool3d(kernel_size=(1, 2, 2))
            self.g = nn.Sequential(self.g, pool)
            self.phi = pool if self.phi is None else nn.Sequential(self.phi, pool)
        self.sub_sample = sub_sample

    def forward(self, x: Tensor) -> Tensor:
        n = x.size(0)
        g_x = self.g(x).reshape(n, self.inter_channels, -1).permute(0, 2, 1)
        if self.theta is None:  # gaussian
            theta_x = x.reshape(n, self.in_channels, -1).permute(0, 2, 1)
            phi_x = (self.phi(x) if self.phi is not None else x).reshape(n, self.in_channels, -1)
        else:
            theta_x = self.theta(x).reshape(n, self.inter_channels, -1).permute(0, 2, 1)
            phi_x = self.phi(x).reshape(n, self.inter_channels, -1)
        weight = torch.matmul(theta_x, phi_x)
        if self.mode == "dot_product":
            weight = weight / weight.shape[-1]
        else:
            if self.mode == "embedded_gaussian" and self.use_scale:
                weight = weight / theta_x.shape[-1] ** 0.5
            weight = weight.softmax(dim=-1)
        y = torch.matmul(weight, g_x).permute(0, 2, 1).reshape(n, self.inter_channels, *x.shape[2:])
        return x + self.conv_out(y)
