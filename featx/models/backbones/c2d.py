"""MMAction2 1.x's ``C2D``: a 2D ResNet run on every frame, with 3D max pooling after its stem and its
first stage (the "video-nonlocal-net" C2D baseline)."""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from featx.errors import UserError
from featx.models.backbones.resnet import ResNet
from featx.registry import MODELS


def _frames(x: Tensor) -> Tensor:
    """(N, C, T, H, W) -> (N * T, C, H, W)"""
    return x.transpose(1, 2).reshape((-1,) + x.shape[1:2] + x.shape[3:])


def _clips(x: Tensor, batches: int) -> Tensor:
    """(N * T, C, H, W) -> (N, C, T, H, W)"""
    return x.reshape((batches, -1) + x.shape[1:]).transpose(1, 2)


@MODELS.register()
class C2D(ResNet):
    """:class:`ResNet` (same arguments and parameter names) on input (N, C, T, H, W): every frame through
    the 2D stem, a (1, 3, 3) max pooling of stride (1, 2, 2) without padding, the first stage, a (2, 1, 1)
    max pooling of stride (2, 1, 1) (half the frames), the other stages; output (N, C', T / 2, H', W').
    MMAction2's C2D gives the last stage only."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.out_indices != (len(self.res_layers) - 1,):
            raise UserError(f"C2D: out_indices={self.out_indices!r} is not supported: MMAction2's C2D gives "
                            f"the last stage only, out_indices=({len(self.res_layers) - 1},)")
        self.maxpool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2))
        self.pool2 = nn.MaxPool3d(kernel_size=(2, 1, 1), stride=(2, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        batches = x.shape[0]
        x = self.maxpool(_clips(self.conv1(_frames(x)), batches))
        x = _frames(x)
        for i, stage in enumerate(self.stages()):
            x = stage(x)
            if i == 0:
                x = _frames(self.pool2(_clips(x, batches)))
        return _clips(x, batches)
