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
from featx.models.plain_resnet import Bottleneck
from featx.registry import MODELS


@MODELS.register()
class OmniResNet(nn.Module):
    """``OmniResNet(layers=[3, 4, 6, 3])``: input (N, 3, T, H, W), output the last stage (N, 2048, T, H / 32, W / 32)."""

    conv_norm_pairs = (("conv1", "bn1"),)

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
        inplanes = 64
        for i, blocks in enumerate(layers):
            planes = 64 * 2**i
            temporal_kernel = 1 if i < 2 else 3  # 1.2.0's BottleNeck: (t, 1, 1), then (1, 3, 3) with the stride
            stage = []
            for n in range(blocks):
                stride = 2 if i > 0 and n == 0 else 1
                stage.append(Bottleneck(inplanes, planes, planes * 4, conv1_kernel=(temporal_kernel, 1, 1),
                                        conv2_kernel=(1, 3, 3), stride=(1, stride, stride)))
                inplanes = planes * 4
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool3d(self.bn1(self.conv1(x)).relu_())
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
