"""MMAction2 0.x's 2D ``ResNet`` (torchvision-style bottlenecks, ``ConvModule`` names), and the mapping
of torchvision's ResNet weights to its names."""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

from torch import Tensor, nn

from featx.errors import UserError
from featx.models.layers import BN2D, CONV2D, RELU, ConvBuilder, check_layer_cfgs, check_pretrained
from featx.models.residual import ResNetBase, check_arch, check_stages, make_res_layer
from featx.registry import MODELS

@MODELS.register()
class ResNet(ResNetBase):
    """MMAction2 0.x ``ResNet`` (2D): input (N, C, H, W), output the ``out_indices`` stage maps."""

    def __init__(
        self,
        depth: int,
        pretrained: str | None = None,
        torchvision_pretrain: bool = True,
        in_channels: int = 3,
        num_stages: int = 4,
        out_indices: Sequence[int] = (3,),
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        style: str = "pytorch",
        frozen_stages: int = -1,
        conv_cfg: Mapping[str, Any] | None = CONV2D,
        norm_cfg: Mapping[str, Any] | None = BN2D,
        act_cfg: Mapping[str, Any] | None = RELU,
        norm_eval: bool = False,
        partial_bn: bool = False,
        with_cp: bool = False,
    ) -> None:
        # Training-only switches: no effect on a model in eval mode.
        del torchvision_pretrain, frozen_stages, norm_eval, partial_bn, with_cp
        check_pretrained("ResNet", pretrained)
        kind, stage_blocks = check_arch("ResNet", depth, style)
        check_stages("ResNet", num_stages, out_indices, strides=strides, dilations=dilations)
        check_layer_cfgs("ResNet", conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        b = ConvBuilder(2, conv_cfg, norm_cfg, act_cfg)
        stages = []
        inplanes = 64
        for i, num_blocks in enumerate(stage_blocks[:num_stages]):
            planes = 64 * 2**i
            stages.append(
                make_res_layer(b, kind, inplanes, planes, (strides[i],) * 2, dilations[i], style,
                               [(1, 1)] * num_blocks)
            )
            inplanes = planes * kind.expansion
        super().__init__(
            conv1=b.conv(in_channels, 64, 7, stride=2, padding=3),
            maxpool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            stages=stages,
            out_indices=out_indices,
        )

    def wrap_blocks(self, wrap: Callable[[int, int, nn.Module], nn.Module]) -> None:
        """Replace block ``i`` of stage ``s`` (0-based) by ``wrap(s, i, block)``: how TSM and TANet put
        their temporal modules around the blocks, as MMAction2 does after building the ResNet."""
        for s, stage in enumerate(self.stages()):
            for i, block in enumerate(stage):
                stage[i] = wrap(s, i, block)


_TORCHVISION_RULES = [
    (re.compile(r"conv1\.weight"), "conv1.conv.weight"),
    (re.compile(r"bn1\.(\w+)"), r"conv1.bn.\1"),
    (re.compile(r"(layer\d+\.\d+)\.conv(\d)\.weight"), r"\1.conv\2.conv.weight"),
    (re.compile(r"(layer\d+\.\d+)\.bn(\d)\.(\w+)"), r"\1.conv\2.bn.\3"),
    (re.compile(r"(layer\d+\.\d+)\.downsample\.0\.(\w+)"), r"\1.downsample.conv.\2"),
    (re.compile(r"(layer\d+\.\d+)\.downsample\.1\.(\w+)"), r"\1.downsample.bn.\2"),
]


def torchvision_resnet_to_mmaction(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a torchvision ResNet state dict to :class:`ResNet`'s keys, as MMAction2 does for
    ``torchvision://resnetXX``; ``fc.*`` is dropped. Raises UserError on any other key."""
    mapped = {}
    for key, value in state_dict.items():
        if key.startswith("fc."):
            continue
        for pattern, replacement in _TORCHVISION_RULES:
            match = pattern.fullmatch(key)
            if match:
                mapped[match.expand(replacement)] = value
                break
        else:
            raise UserError(f"{key!r} is not a torchvision ResNet state dict key")
    return mapped
