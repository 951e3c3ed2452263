"""MMAction2 0.x's R(2+1)D: ``ResNet2Plus1d``, a :class:`ResNet3d` whose convs are ``Conv2plus1d``."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import Tensor, nn
from torch.nn.modules.utils import _triple

from featx.errors import UserError
from featx.models.backbones.resnet3d import ResNet3d
from featx.models.layers import CONV_LAYERS, build_norm_layer
from featx.registry import MODELS


@CONV_LAYERS.register()
class Conv2plus1d(nn.Module):
    """A 3D conv factorised as MMAction2's ``Conv2plus1d``: spatial ``conv_s`` -> ``bn_s`` -> ReLU ->
    temporal ``conv_t``, with the middle width of the R(2+1)D paper (which counts the temporal kernel
    as 3 whatever it is). As MMAction2's, it ignores ``dilation`` and ``groups``.
    """

    conv_norm_pairs = (("conv_s", "bn_s"),)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        norm_cfg: Mapping[str, Any] = {"type": "BN3d"},  # noqa: B006  (never mutated)
    ) -> None:
        super().__init__()
        del dilation, groups
        (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = _triple(kernel_size), _triple(stride), _triple(padding)
        # Float arithmetic in MMAction2's order, so that the truncation gives the same width.
        mid_channels = int(3 * (in_channels * out_channels * kh * kw) / (in_channels * kh * kw + 3 * out_channels))
        self.conv_s = nn.Conv3d(in_channels, mid_channels, (1, kh, kw), (1, sh, sw), (0, ph, pw), bias=bias)
        _, self.bn_s = build_norm_layer(norm_cfg, mid_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv_t = nn.Conv3d(mid_channels, out_channels, (kt, 1, 1), (st, 1, 1), (pt, 0, 0), bias=bias)

    @property
    def output_conv(self) -> nn.Conv3d:
        """The conv that gives the output (``conv_t``): a norm that follows this layer folds into it."""
        return self.conv_t

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_t(self.relu(self.bn_s(self.conv_s(x))))


@MODELS.register()
class ResNet2Plus1d(ResNet3d):
    """MMAction2 0.x ``ResNet2Plus1d``: :class:`ResNet3d` with ``conv_cfg=dict(type='Conv2plus1d')``.

    As MMAction2's, it always max-pools after the stem, never after ``layer1``, and returns the last
    stage: ``with_pool1``, ``with_pool2`` and ``out_indices`` have no effect.
    """

    def __init__(
        self,
        depth: int,
        *,
        conv_cfg: Mapping[str, Any] | None = None,
        num_stages: int = 4,
        out_indices: Sequence[int] = (3,),
        with_pool1: bool = True,
        with_pool2: bool = True,
        **kwargs: Any,
    ) -> None:
        del out_indices, with_pool1, with_pool2
        if not isinstance(conv_cfg, Mapping) or conv_cfg.get("type") != "Conv2plus1d":
            raise UserError(f"ResNet2Plus1d: conv_cfg={conv_cfg!r} must be dict(type='Conv2plus1d')")
        super().__init__(depth, conv_cfg=conv_cfg, num_stages=num_stages, out_indices=(num_stages - 1,),
                         with_pool1=True, with_pool2=False, **kwargs)
