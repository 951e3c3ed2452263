"""MMAction2 0.x's ``TANet``: a 2D bottleneck ResNet whose blocks carry a temporal adaptive module
(``TAM``) after their first conv, mixing the frames of each clip of ``num_segments`` views."""
from __future__ import annotations

from typing import Any, Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from featx.errors import UserError
from featx.models.backbones.resnet import ResNet
from featx.models.layers import positive_int
from featx.models.residual import ARCH_SETTINGS, BOTTLENECK, ResBlock
from featx.registry import MODELS, check_arguments


class ConvNormSequential(nn.Sequential):
    """A ``Sequential`` that starts with a conv and its BatchNorm, which ``fuse_conv_bn`` may fold."""

    conv_norm_pairs = (("0", "1"),)


class TAM(nn.Module):
    """The temporal adaptive module: per clip and channel, from the frames' spatial means, a global
    branch ``G`` predicts a softmax temporal kernel of ``adaptive_kernel_size`` taps and a local branch
    ``L`` a sigmoid gate per frame; the gated frames are then convolved over time with that kernel."""

    def __init__(self, in_channels: int, num_segments: int, alpha: int = 2, adaptive_kernel_size: int = 3,
                 beta: int = 4, conv1d_kernel_size: int = 3, adaptive_convolution_stride: int = 1,
                 adaptive_convolution_padding: int = 1, init_std: float = 0.001) -> None:
        super().__init__()
        del init_std  # weight initialisation only
        for name, value in (("alpha", alpha), ("beta", beta), ("adaptive_kernel_size", adaptive_kernel_size),
                            ("conv1d_kernel_size", conv1d_kernel_size),
                            ("adaptive_convolution_stride", adaptive_convolution_stride)):
            positive_int("TAM", name, value)
        frames_out = (num_segments + 2 * adaptive_convolution_padding - adaptive_kernel_size) \
            // adaptive_convolution_stride + 1
        if frames_out != num_segments:
            raise UserError(f"TAM: adaptive_kernel_size={adaptive_kernel_size}, adaptive_convolution_stride="
                            f"{adaptive_convolution_stride} and adaptive_convolution_padding="
                            f"{adaptive_convolution_padding} turn {num_segments} frames into {frames_out}: "
                            "the number of frames must stay the same")
        self.in_channels, self.num_segments = in_channels, num_segments
        self.stride, self.padding = adaptive_convolution_stride, adaptive_convolution_padding
        self.G = nn.Sequential(
            nn.Linear(num_segments, num_segments * alpha, bias=False), nn.BatchNorm1d(num_segments * alpha),
            nn.ReLU(inplace=True), nn.Linear(num_segments * alpha, adaptive_kernel_size, bias=False),
            nn.Softmax(-1))
        self.L = ConvNormSequential(
            nn.Conv1d(in_channels, in_channels // beta, conv1d_kernel_size, padding=conv1d_kernel_size // 2,
                      bias=False),
            nn.BatchNorm1d(in_channels // beta), nn.ReLU(inplace=True),
            nn.Conv1d(in_channels // beta, in_channels, 1, bias=False), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        t = self.num_segments
        clips = n // t
        x = x.view(clips, t, c, h, w).permute(0, 2, 1, 3, 4).contiguous()  # (clips, C, T, H, W)
        means = F.adaptive_avg_pool2d(x.view(-1, t, h, w), (1, 1))  # (clips * C, T, 1, 1)
        kernel = self.G(means.view(-1, t)).view(clips * c, 1, -1, 1)
        gate = self.L(means.view(-1, c, t)).view(clips, c, t, 1, 1)
        y = F.conv2d((x * gate).view(1, clips * c, t, h * w), kernel, stride=(self.stride, 1),
                     padding=(self.padding, 0), groups=clips * c)
        return y.view(clips, c, t, h, w).permute(0, 2, 1, 3, 4).contiguous().view(n, c, h, w)


class TABlock(nn.Module):
    """A bottleneck ``block`` with ``tam`` between its first and second conv."""

    def __init__(self, block: ResBlock, num_segments: int, tam_cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.block = block
        self.tam = TAM(block.conv1.conv.out_channels, num_segments, **tam_cfg)

    def forward(self, x: Tensor) -> Tensor:
        block = self.block
        identity = x if block.downsample is None else block.downsample(x)
        return block.add_shortcut(block.conv2(self.tam(block.conv1(x))), identity)


@MODELS.register()
class TANet(ResNet):
    """MMAction2 0.x ``TANet``: input (N*num_segments, C, H, W), every block a :class:`TABlock`;
    ``view_group = num_segments``."""

    def __init__(self, depth: int, num_segments: int, tam_cfg: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        if depth in ARCH_SETTINGS and ARCH_SETTINGS[depth][0] is not BOTTLENECK:
            raise UserError(f"TANet: depth={depth} has basic blocks; TA-Blocks exist for bottleneck ResNets "
                            "only (depth 50, 101, 152)")
        if positive_int("TANet", "num_segments", num_segments) < 3:
            raise UserError(f"TANet: num_segments={num_segments} must be at least 3")
        tam_cfg = dict(tam_cfg or {})
        try:
            check_arguments(TAM, (1, num_segments), tam_cfg)
        except TypeError as exc:
            raise UserError(f"TANet: tam_cfg={tam_cfg!r}: {exc}") from None
        super().__init__(depth, **kwargs)
        self.wrap_blocks(lambda s, i, block: TABlock(block, num_segments, tam_cfg))
        self.num_segments = self.view_group = num_segments
