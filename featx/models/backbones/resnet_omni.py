"""MMAction2 1.x's ``OmniResNet`` (OmniSource's image-and-video ResNet-50) on video, under 1.x's parameter
names: plain ``conv``/``bn`` attributes (``layer3.0.conv1.weight``, ``layer3.0.bn1.running_mean``,
``layer1.0.downsample.0.weight``), not ``ConvModule``'s.

Its 3D path is a SlowOnly ResNet: a (1, 7, 7) stem of stride (1, 2, 2), a (1, 3, 3) max pooling, bottlenecks
whose first conv is (1, 1, 1) in the first two stages and (3, 1, 1) in the last two, the spatial stride on
the (1, 3, 3) conv. 1.x's 2D path (images: the 3D kernels summed or squeezed) is for training on images;
featx reads videos only.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from featx.errors import UserError
from featx.models.layers import check_pretrained
from featx.models.plain_resnet import Bottleneck, PlainResNet
from featx.registry import MODELS


@MODELS.register()
class OmniResNet(PlainResNet):
    """``OmniResNet(layers=[3, 4, 6, 3])``: input (N, 3, T, H, W), output the last stage (N, 2048, T, H / 32, W / 32)."""

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), pretrain_2d: str | None = None,
                 init_cfg: object = None) -> None:
        super().__init__()
        del init_cfg  # initialisation; the weights come from the checkpoint
        check_pretrained("OmniResNet", pretrain_2d, key="pretrain_2d")
        if len(layers) != 4 or not all(isinstance(n, int) and n > 0 for n in layers):
            raise UserError(f"OmniResNet: layers={list(layers)!r} must be four positive block counts")
        self.conv1 = nn.Conv3d(3, 64, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.pool3d = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        # 1.2.0's BottleNeck: (t, 1, 1), t = 1 in the first two stages and 3 after, then (1, 3, 3) with the stride
        self.add_stages(layers, lambda i, in_channels, planes, stride: Bottleneck(
            in_channels, planes, planes * 4, conv1_kernel=(1 if i < 2 else 3, 1, 1), conv2_kernel=(1, 3, 3),
            stride=(1, stride, stride)))

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.pool3d(self.bn1(self.conv1(x)).relu_()))
