"""MMAction2 0.x's SlowFast: ``ResNet3dPathway`` (a ResNet3d with lateral connections from the fast
pathway), ``ResNet3dSlowOnly`` (a pathway without them) and ``ResNet3dSlowFast`` (both pathways)."""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featx.errors import UserError
from featx.models.backbones.resnet3d import ResNet3d
from featx.models.layers import BN3D, CONV3D, RELU, ConvModule, check_pretrained
from featx.registry import MODELS


@MODELS.register()
class ResNet3dPathway(ResNet3d):
    """A SlowFast pathway: :class:`ResNet3d` whose stages, with ``lateral``, also take the fast
    pathway's features.

    Before stage ``i`` a lateral conv (``conv1_lateral``, then ``layer{i}_lateral``) maps the fast
    pathway's current features (``1/channel_ratio`` of this stage's input channels, ``speed_ratio``
    times the frames) to twice as many channels at this pathway's frame rate, which are
    concatenated to this stage's input. ``lateral_norm`` gives those convs the norm and activation.
    """

    def __init__(
        self,
        depth: int,
        *,
        lateral: bool = False,
        lateral_norm: bool = False,
        speed_ratio: int = 8,
        channel_ratio: int = 8,
        fusion_kernel: int = 5,
        conv_cfg: Mapping[str, Any] | None = CONV3D,
        norm_cfg: Mapping[str, Any] | None = BN3D,
        act_cfg: Mapping[str, Any] | None = RELU,
        **kwargs: Any,
    ) -> None:
        # Read by _lateral_channels while ResNet3d builds the stages.
        self.lateral = lateral
        self.channel_ratio = channel_ratio
        super().__init__(depth, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg, **kwargs)
        self.laterals: list[str] = []  # laterals[i] feeds stage i
        if not lateral:
            return
        for i, inplanes in enumerate(self.stage_inplanes):
            name = "conv1_lateral" if i == 0 else f"layer{i}_lateral"
            self.add_module(name, ConvModule(
                inplanes // channel_ratio, inplanes * 2 // channel_ratio, (fusion_kernel, 1, 1),
                stride=(speed_ratio, 1, 1), padding=((fusion_kernel - 1) // 2, 0, 0), bias=False,
                conv_cfg=conv_cfg, norm_cfg=norm_cfg if lateral_norm else None,
                act_cfg=act_cfg if lateral_norm else None,
            ))
            self.laterals.append(name)

    def _lateral_channels(self, inplanes: int) -> int:
        return inplanes * 2 // self.channel_ratio if self.lateral else 0


@MODELS.register()
class ResNet3dSlowOnly(ResNet3dPathway):
    """MMAction2 0.x ``ResNet3dSlowOnly``: a pathway without lateral connections; only its defaults
    differ (``lateral=True`` is refused, as MMAction2 refuses it)."""

    def __init__(
        self,
        depth: int,
        *,
        lateral: bool = False,
        conv1_kernel: int | Sequence[int] = (1, 7, 7),
        conv1_stride_t: int = 1,
        pool1_stride_t: int = 1,
        inflate: int | Sequence[Any] = (0, 0, 1, 1),
        with_pool2: bool = False,
        **kwargs: Any,
    ) -> None:
        if lateral:
            raise UserError("ResNet3dSlowOnly: lateral=True (SlowFast lateral connections) is not supported")
        super().__init__(
            depth, conv1_kernel=conv1_kernel, conv1_stride_t=conv1_stride_t, pool1_stride_t=pool1_stride_t,
            inflate=inflate, with_pool2=with_pool2, **kwargs,
        )


_SLOW = MappingProxyType(dict(type="resnet3d", depth=50, pretrained=None, lateral=True, conv1_kernel=(1, 7, 7),
                              dilations=(1, 1, 1, 1), conv1_stride_t=1, pool1_stride_t=1, inflate=(0, 0, 1, 1)))
_FAST = MappingProxyType(dict(type="resnet3d", depth=50, pretrained=None, lateral=False, base_channels=8,
                              conv1_kernel=(5, 7, 7), conv1_stride_t=1, pool1_stride_t=1))


@MODELS.register()
class ResNet3dSlowFast(nn.Module):
    """MMAction2 0.x ``ResNet3dSlowFast``: input (N, C, T, H, W), output ``(slow, fast)`` last-stage maps.

    The slow pathway sees every ``resample_rate``-th frame, the fast one every
    ``resample_rate // speed_ratio``-th; both run stage by stage together, the fast one feeding the
    slow one's laterals. As in MMAction2, the pathways' ``out_indices`` and ``with_pool2`` play no
    part (nor does ``lateral`` of the fast pathway).
    """

    def __init__(
        self,
        pretrained: str | None,
        resample_rate: int = 8,
        speed_ratio: int = 8,
        channel_ratio: int = 8,
        slow_pathway: Mapping[str, Any] = _SLOW,
        fast_pathway: Mapping[str, Any] = _FAST,
    ) -> None:
        super().__init__()
        check_pretrained("ResNet3dSlowFast", pretrained)
        for name, cfg in (("slow_pathway", slow_pathway), ("fast_pathway", fast_pathway)):
            if cfg.get("type") != "resnet3d":
                raise UserError(f"ResNet3dSlowFast: {name} type {cfg.get('type')!r} is not supported (only 'resnet3d')")
            if not cfg.get("with_pool1", True):
                raise UserError(f"ResNet3dSlowFast: {name} with_pool1=False is not supported (MMAction2's "
                                "SlowFast max-pools after the stem whatever it says)")
        if not (isinstance(resample_rate, int) and isinstance(speed_ratio, int) and speed_ratio >= 1
                and resample_rate >= speed_ratio and resample_rate % speed_ratio == 0):
            raise UserError(f"ResNet3dSlowFast: resample_rate={resample_rate!r} must be a multiple of "
                            f"speed_ratio={speed_ratio!r} (the fast pathway takes every "
                            "resample_rate // speed_ratio-th frame, speed_ratio times as many as the slow one)")
        self.resample_rate = resample_rate
        self.speed_ratio = speed_ratio
        slow = dict(slow_pathway, type="ResNet3dPathway")
        if slow.get("lateral", False):
            slow.update(speed_ratio=speed_ratio, channel_ratio=channel_ratio)
        self.slow_path: ResNet3dPathway = MODELS.build(slow)
        self.fast_path: ResNet3dPathway = MODELS.build(dict(fast_pathway, type="ResNet3dPathway"))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        slow, fast = self.slow_path, self.fast_path
        # Frames taken by nearest interpolation, exactly as MMAction2 takes them.
        x_slow = slow.stem(F.interpolate(x, mode="nearest", scale_factor=(1.0 / self.resample_rate, 1.0, 1.0)))
        x_fast = fast.stem(F.interpolate(
            x, mode="nearest", scale_factor=(1.0 / (self.resample_rate // self.speed_ratio), 1.0, 1.0)))
        for i, (slow_stage, fast_stage) in enumerate(zip(slow.stages(), fast.stages())):
            if slow.laterals:
                x_slow = torch.cat((x_slow, getattr(slow, slow.laterals[i])(x_fast)), dim=1)
            x_slow, x_fast = slow_stage(x_slow), fast_stage(x_fast)
        return x_slow, x_fast
