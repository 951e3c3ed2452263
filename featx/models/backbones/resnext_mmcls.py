"""MMAction2 1.x's ``mmcls.ResNeXt`` backbone: mmcls's (mmpretrain's) 2D ResNeXt under its parameter names,
which are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv2.weight``, ``layer1.0.downsample.0.weight``), so
a 1.x checkpoint loads as it is. 1.x's ``Recognizer2D`` takes its one output (``out_indices=(3,)``) and
pools it, as for its own backbones."""
from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from featx.errors import UserError
from featx.models.plain_resnet import Bottleneck, PlainResNet
from featx.registry import MODELS

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


@MODELS.register("mmcls.ResNeXt")
class ResNeXt(PlainResNet):
    """mmcls's ``ResNeXt(depth, groups, width_per_group)`` with its defaults (7x7 stem, ``pytorch`` style: the
    stride on the grouped 3x3 conv, whose width is ``groups * width_per_group * planes / 64``): input
    (N, 3, H, W), output the last stage (N, 2048, H / 32, W / 32). The other arguments it takes are for
    training (``frozen_stages``, ``norm_eval``, ``with_cp``, ``zero_init_residual``, ``drop_path_rate``:
    stochastic depth, off in eval mode) or initialisation (``init_cfg``)."""

    def __init__(self, depth: int, groups: int = 32, width_per_group: int = 4, num_stages: int = 4,
                 out_indices: Sequence[int] = (3,), style: str = "pytorch", frozen_stages: int = -1,
                 norm_eval: bool = False, with_cp: bool = False, zero_init_residual: bool = True,
                 drop_path_rate: float = 0.0, init_cfg: Any = None) -> None:
        super().__init__()
        del frozen_stages, norm_eval, with_cp, zero_init_residual, drop_path_rate, init_cfg
        if depth not in STAGE_BLOCKS:
            raise UserError(f"mmcls.ResNeXt: depth={depth!r} is not one of {', '.join(map(str, STAGE_BLOCKS))}")
        if num_stages != 4 or tuple(out_indices) != (3,) or style != "pytorch":
            raise UserError(f"mmcls.ResNeXt: num_stages={num_stages!r}, out_indices={tuple(out_indices)!r}, "
                            f"style={style!r}: featx runs 4 stages, out_indices=(3,), style='pytorch' only")
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.add_stages(STAGE_BLOCKS[depth], lambda i, in_channels, planes, stride: Bottleneck(
            in_channels, groups * width_per_group * planes // 64, planes * 4, conv1_kernel=(1, 1), conv2_kernel=(3, 3),
            stride=(stride, stride), groups=groups))

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.maxpool(self.bn1(self.conv1(x)).relu_()))
