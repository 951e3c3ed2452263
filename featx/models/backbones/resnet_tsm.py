"""MMAction2 0.x's ``ResNetTSM``: a 2D ResNet whose blocks see their neighbouring frames through the
temporal shift module (TSM), optionally with non-local blocks; and the refusal of ``ResNetTIN``.

The views of a video go through the backbone together, ``num_segments`` consecutive ones forming one
clip: the shift moves a fraction of the channels one frame forward and one backward in that clip.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from featx.errors import UserError
from featx.models.backbones.resnet import ResNet
from featx.models.layers import positive_int
from featx.models.non_local import NonLocal3d
from featx.models.residual import ResBlock
from featx.registry import MODELS, check_arguments

SHIFT_PLACES = ("block", "blockres")


def temporal_shift(x: Tensor, num_segments: int, shift_div: int) -> Tensor:
    """(N, C, H, W) with N a whole number of clips of ``num_segments`` frames: the first
    ``C // shift_div`` channels come from the next frame, the next ``C // shift_div`` from the previous
    one, the rest stay. A clip's ends are filled with zeros made as ``v - v`` from its first frame, as
    MMAction2 does (NaN where that is infinite). Written into a tensor of ``x``'s memory format, so a
    channels-last input stays channels-last for the conv that follows."""
    n, c, h, w = x.shape
    out = torch.empty_like(x)
    src, dst = x.view(-1, num_segments, c, h * w), out.view(-1, num_segments, c, h * w)
    fold = c // shift_div
    left, mid = slice(0, fold), slice(fold, 2 * fold)
    dst[:, :-1, left] = src[:, 1:, left]
    dst[:, -1:, left] = src[:, :1, left] - src[:, :1, left]
    dst[:, 1:, mid] = src[:, :-1, mid]
    dst[:, :1, mid] = src[:, :1, mid] - src[:, :1, mid]
    dst[:, :, 2 * fold:] = src[:, :, 2 * fold:]
    return out


class TemporalShift(nn.Module):
    """``net`` applied to the temporally shifted input; the wrapped module stays in ``.net`` (MMAction2's
    key names, and where ``fuse_conv_bn`` finds a wrapped conv)."""

    def __init__(self, net: nn.Module, num_segments: int = 3, shift_div: int = 8) -> None:
        super().__init__()
        self.net = net
        self.num_segments = num_segments
        self.shift_div = shift_div

    def forward(self, x: Tensor) -> Tensor:
        return self.net(temporal_shift(x, self.num_segments, self.shift_div))


class NL3DWrapper(nn.Module):
    """A 2D residual ``block`` followed by a ``non_local_block`` (:class:`NonLocal3d`) that attends over
    all frames of each clip: (N*T, C, H, W) is regrouped to (N, C, T, H, W) around it."""

    def __init__(self, block: nn.Module, num_segments: int, non_local_cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.block = block
        last = getattr(block, f"conv{block.num_convs}")
        self.non_local_block = NonLocal3d(last.conv.out_channels, **non_local_cfg)
        self.num_segments = num_segments

    def forward(self, x: Tensor) -> Tensor:
        x = self.block(x)
        n, c, h, w = x.shape
        x = x.view(n // self.num_segments, self.num_segments, c, h, w).transpose(1, 2).contiguous()
        x = self.non_local_block(x)
        return x.transpose(1, 2).contiguous().view(n, c, h, w)


def _non_local_flags(non_local: Any, stage_sizes: Sequence[int]) -> list[list[bool]]:
    """Per stage, per block: whether it gets a non-local block (a stage may list fewer blocks)."""
    ok = isinstance(non_local, Sequence) and len(non_local) >= len(stage_sizes) and all(
        isinstance(flags, Sequence) and len(flags) <= size for flags, size in zip(non_local, stage_sizes))
    if not ok:
        raise UserError(f"ResNetTSM: non_local={non_local!r} must give, for each of the {len(stage_sizes)} "
                        f"stages, one flag per block (blocks per stage: {tuple(stage_sizes)})")
    return [[bool(flag) for flag in flags] for flags in non_local[:len(stage_sizes)]]


@MODELS.register()
class ResNetTSM(ResNet):
    """MMAction2 0.x ``ResNetTSM``: input (N*num_segments, C, H, W), output as :class:`ResNet`'s.

    ``shift_place='blockres'`` shifts the input of each block's first conv (from depth 101 on, of every
    second block only); ``'block'`` shifts each whole block's input. ``non_local`` flags (per stage,
    per block) add a non-local block after a block, only when ``non_local_cfg`` is not empty, as in
    MMAction2. The shift and non-local blocks mix the frames of a clip, so the backbone declares
    ``view_group = num_segments``.
    """

    def __init__(
        self,
        depth: int,
        num_segments: int = 8,
        is_shift: bool = True,
        non_local: Sequence[Any] = (0, 0, 0, 0),
        non_local_cfg: Mapping[str, Any] | None = None,
        shift_div: int = 8,
        shift_place: str = "blockres",
        temporal_pool: bool = False,
        **kwargs: Any,
    ) -> None:
        num_segments = positive_int("ResNetTSM", "num_segments", num_segments)
        if temporal_pool:
            raise UserError("ResNetTSM: temporal_pool=True is not supported: it changes the batch inside the "
                            "backbone, so the reference's feature vector for it is an artefact")
        if is_shift:
            positive_int("ResNetTSM", "shift_div", shift_div)
            if shift_place != "block" and not (isinstance(shift_place, str) and "blockres" in shift_place):
                # MMAction2 takes any name containing 'blockres' for it
                raise UserError(f"ResNetTSM: shift_place={shift_place!r} is not one of {', '.join(SHIFT_PLACES)}")
        super().__init__(depth, **kwargs)
        stages = list(self.stages())
        non_local_cfg = dict(non_local_cfg or {})
        if is_shift:
            self._add_temporal_shift(stages, num_segments, shift_div, shift_place == "block")
        with_non_local = bool(non_local_cfg) and self._add_non_local(  # MMAction2: only with a non_local_cfg
            stages, num_segments, non_local, non_local_cfg, is_shift and shift_place == "block")
        self.num_segments = num_segments
        self.view_group = num_segments if is_shift or with_non_local else 1

    def _add_temporal_shift(self, stages: list[nn.Module], num_segments: int, shift_div: int,
                            whole_blocks: bool) -> None:
        if len(stages) != 4:
            raise UserError(f"ResNetTSM: the temporal shift needs num_stages=4, got {len(stages)}")
        if whole_blocks:
            self.wrap_blocks(lambda s, i, block: TemporalShift(block, num_segments, shift_div))
            return
        every = 2 if len(stages[2]) >= 23 else 1  # deep ResNets shift every second block only

        def shift_conv1(s: int, i: int, block: nn.Module) -> nn.Module:
            if i % every == 0:
                block.conv1.conv = TemporalShift(block.conv1.conv, num_segments, shift_div)
            return block

        self.wrap_blocks(shift_conv1)

    def _add_non_local(self, stages: list[nn.Module], num_segments: int, non_local: Any,
                       non_local_cfg: dict[str, Any], blocks_shifted: bool) -> bool:
        """Wrap the flagged blocks in :class:`NL3DWrapper`; whether there was any."""
        flags = _non_local_flags(non_local, [len(stage) for stage in stages])
        if not any(map(any, flags)):
            return False
        if blocks_shifted or not isinstance(stages[0][0], ResBlock) or stages[0][0].num_convs != 3:
            raise UserError("ResNetTSM: non-local blocks need bottleneck blocks (depth >= 50) and "
                            "shift_place='blockres' (MMAction2 fails on other combinations)")
        try:
            check_arguments(NonLocal3d, (1,), non_local_cfg)
        except TypeError as exc:
            raise UserError(f"ResNetTSM: non_local_cfg={non_local_cfg!r}: {exc}") from None
        self.wrap_blocks(lambda s, i, block: NL3DWrapper(block, num_segments, non_local_cfg)
                         if i < len(flags[s]) and flags[s][i] else block)
        return True


@MODELS.register()
def ResNetTIN(**kwargs: Any) -> nn.Module:  # noqa: N802  (the config's type name)
    """MMAction2's ``ResNetTIN`` (temporal interlace network): refused."""
    raise UserError("ResNetTIN: TIN needs mmcv's CUDA-only tin_shift op: not supported")
