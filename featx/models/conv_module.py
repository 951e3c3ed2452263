"""Conv + BatchNorm (+ ReLU) unit named as MMCV's ``ConvModule`` (``.conv``, ``.bn``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from featx.errors import UserError

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}

# The mmcv layer types each backbone dimension can be configured with.
_CONV_TYPES = {2: {"Conv", "Conv2d"}, 3: {"Conv3d"}}
_NORM_TYPES = {2: {"BN", "BN2d", "SyncBN"}, 3: {"BN3d", "SyncBN"}}
_ACT_TYPES = {"ReLU"}

IntOrTuple = int | tuple[int, ...]


class ConvModule(nn.Module):
    """``conv`` (Conv2d/Conv3d) -> ``bn`` (BatchNorm) -> optional ReLU.

    :func:`featx.models.fuse.fuse_conv_bn` may fold ``bn`` into ``conv`` and replace it by
    ``nn.Identity``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        *,
        ndim: int = 2,
        bias: bool = False,
        relu: bool = True,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if ndim not in _CONV:
            raise ValueError(f"ConvModule: ndim must be 2 or 3, got {ndim}")
        self.conv = _CONV[ndim](
            in_channels, out_channels, kernel_size, stride=stride, padding=padding,
            dilation=dilation, bias=bias,
        )
        self.bn: nn.Module = _NORM[ndim](out_channels, eps=eps)
        self.activate = nn.ReLU(inplace=True) if relu else None
        self.onednn = False  # set by featx.models.fuse.use_onednn_fusion once bn is folded

    def forward(self, x: Tensor) -> Tensor:
        if self.onednn:
            return torch.ops.mkldnn._convolution_pointwise(
                x, *self._onednn_args(), "relu" if self.activate is not None else "none", [], "")
        x = self.bn(self.conv(x))
        return x if self.activate is None else self.activate(x)

    def add_relu(self, x: Tensor, other: Tensor) -> Tensor:
        """``relu(self(x) + other)``: a residual block's last conv, its shortcut and the block's ReLU
        (one oneDNN convolution with the sum and ReLU fused in, when enabled)."""
        if self.onednn:
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, other, *self._onednn_args(), "add", None, "relu", [], "")
        return torch.relu_(self(x) + other)

    def _onednn_args(self) -> tuple[Any, ...]:
        conv = self.conv
        return conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups


def _check_cfg(
    name: str, cfg: Mapping[str, Any] | None, types: set[str], keys: set[str]
) -> Mapping[str, Any]:
    if cfg is None or cfg.get("type") not in types or not set(cfg) <= keys:
        raise UserError(
            f"{name}={cfg!r} is not supported: featx builds type {' / '.join(sorted(types))}"
            f" with keys {', '.join(sorted(keys))}"
        )
    return cfg


@dataclass(frozen=True)
class ConvBuilder:
    """Builds a backbone's :class:`ConvModule`\\ s of one dimension (2 or 3) and BN ``eps``."""

    ndim: int
    eps: float = 1e-5

    @classmethod
    def from_configs(
        cls,
        ndim: int,
        conv_cfg: Mapping[str, Any] | None,
        norm_cfg: Mapping[str, Any] | None,
        act_cfg: Mapping[str, Any] | None,
    ) -> ConvBuilder:
        """Check MMAction2's ``conv_cfg``/``norm_cfg``/``act_cfg`` and keep what matters at inference.

        Only plain convolutions, BatchNorm (SyncBN is BatchNorm at inference) and ReLU exist here;
        ``requires_grad``, ``momentum`` and ``inplace`` change nothing for a frozen model.
        """
        if not (ndim == 2 and conv_cfg is None):  # mmcv builds Conv2d for conv_cfg=None
            _check_cfg("conv_cfg", conv_cfg, _CONV_TYPES[ndim], {"type"})
        norm_keys = {"type", "requires_grad", "eps", "momentum"}
        norm = _check_cfg("norm_cfg", norm_cfg, _NORM_TYPES[ndim], norm_keys)
        _check_cfg("act_cfg", act_cfg, _ACT_TYPES, {"type", "inplace"})
        return cls(ndim, float(norm.get("eps", 1e-5)))

    def conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        relu: bool = True,
    ) -> ConvModule:
        """A bias-free :class:`ConvModule` of this builder's dimension."""
        return ConvModule(
            in_channels, out_channels, kernel_size, stride, padding, dilation,
            ndim=self.ndim, relu=relu, eps=self.eps,
        )

    def shape(self, t: int, s: int) -> tuple[int, ...]:
        """A kernel/stride/padding tuple: ``(t, s, s)`` in 3D, ``(s, s)`` in 2D (``t`` unused)."""
        return (t, s, s)[-self.ndim:]
