"""MMAction2 0.x's ``ResNet3d``: the inflated 3D ResNet that the other 3D ResNet families build on."""
from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

from torch import nn

from featx.errors import UserError
from featx.models.layers import BN3D, CONV3D, RELU, ConvBuilder, check_layer_cfgs, check_pretrained
from featx.models.non_local import NonLocal3d
from featx.models.residual import (
    BASIC,
    BlockKind,
    ResNetBase,
    check_arch,
    check_relu,
    check_stages,
    make_res_layer,
)
from featx.registry import MODELS

INFLATE_STYLES = ("3x1x1", "3x3x3")


def _triple(value: int | Sequence[int]) -> tuple[int, int, int]:
    return (value,) * 3 if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def _expand(value: Any, n: int, what: str, exact: bool = True) -> tuple[Any, ...]:
    """An int means ``n`` times that int; a sequence needs ``n`` entries (or more, if not ``exact``:
    MMAction2 checks per-block values but only indexes per-stage ones)."""
    if isinstance(value, int):
        return (value,) * n
    if not isinstance(value, Sequence) or len(value) < n or (exact and len(value) != n):
        raise UserError(f"ResNet3d: {what}={value!r} must be an int or have {n} entries")
    return tuple(value)


def _temporal_kernels(kind: BlockKind, inflated: bool, inflate_style: str) -> tuple[int, int]:
    """Temporal kernel sizes of a block's first two convs (BasicBlock3d ignores the style)."""
    if not inflated:
        return (1, 1)
    if kind is BASIC:
        return (3, 3)
    return (3, 1) if inflate_style == "3x1x1" else (1, 3)


@MODELS.register()
class ResNet3d(ResNetBase):
    """MMAction2 0.x ``ResNet3d``: input (N, C, T, H, W), output the ``out_indices`` stage maps.

    ``inflate`` (per stage: an int for all its blocks or one value per block; 1 means inflated)
    chooses the temporal kernels, ``inflate_style`` how: '3x1x1' puts the 3 on conv1 of a
    bottleneck, '3x3x3' on conv2.

    A family changes it through two hooks, called while the stages are built (before
    ``nn.Module.__init__``, so they may read only plain attributes the family set first):
    :meth:`_block_kind` and :meth:`_lateral_channels`. Once built, ``stage_inplanes`` holds each
    stage's input channels (without laterals).
    """

    def __init__(
        self,
        depth: int,
        pretrained: str | None = None,
        stage_blocks: Sequence[int] | None = None,
        pretrained2d: bool = True,
        in_channels: int = 3,
        num_stages: int = 4,
        base_channels: int = 64,
        out_indices: Sequence[int] = (3,),
        spatial_strides: Sequence[int] = (1, 2, 2, 2),
        temporal_strides: Sequence[int] = (1, 1, 1, 1),
        dilations: Sequence[int] = (1, 1, 1, 1),
        conv1_kernel: int | Sequence[int] = (3, 7, 7),
        conv1_stride_s: int = 2,
        conv1_stride_t: int = 1,
        pool1_stride_s: int = 2,
        pool1_stride_t: int = 1,
        with_pool1: bool = True,
        with_pool2: bool = True,
        style: str = "pytorch",
        frozen_stages: int = -1,
        inflate: int | Sequence[Any] = (1, 1, 1, 1),
        inflate_style: str = "3x1x1",
        conv_cfg: Mapping[str, Any] | None = CONV3D,
        norm_cfg: Mapping[str, Any] | None = BN3D,
        act_cfg: Mapping[str, Any] | None = RELU,
        norm_eval: bool = False,
        with_cp: bool = False,
        non_local: int | Sequence[Any] = (0, 0, 0, 0),
        non_local_cfg: Mapping[str, Any] | None = None,
        zero_init_residual: bool = True,
    ) -> None:
        # Weight-init and training-only switches: no effect once a checkpoint is loaded in eval mode.
        del pretrained2d, frozen_stages, norm_eval, with_cp, zero_init_residual
        check_pretrained("ResNet3d", pretrained)
        kind, default_blocks = check_arch("ResNet3d", depth, style)
        kind = self._block_kind(kind)
        if inflate_style not in INFLATE_STYLES:
            raise UserError(
                f"ResNet3d: inflate_style={inflate_style!r} is not one of {', '.join(INFLATE_STYLES)}"
            )
        blocks = default_blocks[:num_stages] if stage_blocks is None else stage_blocks
        check_stages(
            "ResNet3d", num_stages, out_indices, stage_blocks=blocks, spatial_strides=spatial_strides,
            temporal_strides=temporal_strides, dilations=dilations,
        )
        stage_inflate = _expand(inflate, num_stages, "inflate", exact=False)
        stage_non_local = _expand(non_local, num_stages, "non_local", exact=False)
        check_layer_cfgs("ResNet3d", conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        check_relu("ResNet3d", act_cfg)
        b = ConvBuilder(3, conv_cfg, norm_cfg, act_cfg)

        stages = []
        stage_inplanes = []
        inplanes = base_channels
        for i, num_blocks in enumerate(blocks):
            non_local_blocks = [
                functools.partial(NonLocal3d, **(non_local_cfg or {})) if flag else None
                for flag in _expand(stage_non_local[i], num_blocks, f"non_local[{i}]")
            ]
            planes = base_channels * 2**i
            temporal = [
                _temporal_kernels(kind, flag == 1, inflate_style)
                for flag in _expand(stage_inflate[i], num_blocks, f"inflate[{i}]")
            ]
            stride = (temporal_strides[i], spatial_strides[i], spatial_strides[i])
            stage_inplanes.append(inplanes)
            stages.append(make_res_layer(b, kind, inplanes + self._lateral_channels(inplanes), planes, stride,
                                         dilations[i], style, temporal, non_local_blocks))
            inplanes = planes * kind.expansion

        kernel = _triple(conv1_kernel)
        super().__init__(
            conv1=b.conv(
                in_channels, base_channels, kernel, stride=(conv1_stride_t, conv1_stride_s, conv1_stride_s),
                padding=tuple((k - 1) // 2 for k in kernel),
            ),
            maxpool=(
                nn.MaxPool3d(
                    (1, 3, 3), stride=(pool1_stride_t, pool1_stride_s, pool1_stride_s), padding=(0, 1, 1)
                )
                if with_pool1
                else nn.Identity()
            ),
            stages=stages,
            out_indices=out_indices,
            pool2=nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1)) if with_pool2 else None,
        )
        self.stage_inplanes = tuple(stage_inplanes)

    def _block_kind(self, kind: BlockKind) -> BlockKind:
        """The blocks of the stages, given those of ``depth``: a family with its own convs (CSN) changes them."""
        return kind

    def _lateral_channels(self, inplanes: int) -> int:
        """Channels a lateral connection adds to the input of a stage whose own input has ``inplanes``
        (SlowFast's slow pathway); none here."""
        return 0

