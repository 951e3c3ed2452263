"""MMAction2 1.x's ``SwinTransformer3D`` (Video Swin): 3D patches, shifted-window attention with a
relative position bias, patch merging between stages. Input (N, C, T, H, W), output the normed
feature map of each ``out_indices`` stage, (N, C, T', H', W') (``norm3`` after the last stage)."""
from __future__ import annotations

import functools
import math
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featx.errors import UserError
from featx.models.layers import arch_settings, build_norm_layer, check_layer_cfgs, check_pretrained
from featx.models.transformer import Mlp, QKVAttention, heads_attention, merge_heads, split_heads
from featx.registry import MODELS

ARCHS = {
    "tiny": {"embed_dims": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)},
    "small": {"embed_dims": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24)},
    "base": {"embed_dims": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)},
    "large": {"embed_dims": 192, "depths": (2, 2, 18, 2), "num_heads": (6, 12, 24, 48)},
}
ARCHS |= {name[0]: arch for name, arch in ARCHS.items()}  # MMAction2 takes 't' for 'tiny', ...
_LN = MappingProxyType({"type": "LN"})
_GELU = MappingProxyType({"type": "GELU"})
MASKED = -100.0  # the score MMAction2 adds between tokens of different regions of a shifted window

Size3 = tuple[int, int, int]


def fitted_window(size: Size3, window: Size3, shift: Size3) -> tuple[Size3, Size3]:
    """The window and shift used on a ``size`` map: a dimension no larger than the window is one
    window, unshifted."""
    fits = [s <= w for s, w in zip(size, window)]
    used_window = tuple(s if fit else w for s, w, fit in zip(size, window, fits))
    used_shift = tuple(0 if fit else h for h, fit in zip(shift, fits))
    return used_window, used_shift  # type: ignore[return-value]


def window_partition(x: Tensor, window: Size3) -> Tensor:
    """(B, D, H, W, C), each dimension a multiple of ``window`` -> (B, windows, tokens per window, C),
    windows and their tokens in (d, h, w) order."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.reshape(b, d // wd, wd, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(b, -1, wd * wh * ww, c)


def window_reverse(windows: Tensor, window: Size3, size: Size3) -> Tensor:
    """The inverse of :func:`window_partition`: (B, windows, tokens, C) -> (B, D, H, W, C)."""
    (d, h, w), (wd, wh, ww) = size, window
    b, c = windows.shape[0], windows.shape[-1]
    x = windows.reshape(b, d // wd, h // wh, w // ww, wd, wh, ww, c).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(b, d, h, w, c)


@functools.lru_cache(maxsize=32)
def shift_mask(size: Size3, window: Size3, shift: Size3, device: torch.device) -> Tensor:
    """(windows, tokens, tokens): 0 between tokens of the same region of a cyclically shifted map,
    ``MASKED`` otherwise (``size`` is the padded map)."""
    regions = torch.zeros((1, *size, 1), device=device)
    cuts = [(slice(-w), slice(-w, -s), slice(-s, None)) for w, s in zip(window, shift)]
    label = 0
    for d in cuts[0]:
        for h in cuts[1]:
            for w in cuts[2]:
                regions[:, d, h, w] = label
                label += 1
    labels = window_partition(regions, window)[0, ..., 0]  # (windows, tokens)
    differ = labels[:, None, :] != labels[:, :, None]
    return torch.zeros(differ.shape, device=device).masked_fill_(differ, MASKED)


def relative_position_index(window: Size3) -> Tensor:
    """(tokens, tokens): for each query and key token of a window, the row of their offset
    (dd, dh, dw) in the relative position bias table."""
    coords = torch.stack(torch.meshgrid(*(torch.arange(w) for w in window), indexing="ij")).flatten(1)
    offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    offsets += torch.tensor([w - 1 for w in window])
    _, wh, ww = window
    return (offsets * torch.tensor([(2 * wh - 1) * (2 * ww - 1), 2 * ww - 1, 1])).sum(-1)


class WindowAttention3D(QKVAttention):
    """Multi-head attention within each window, with a learnt bias per head and relative offset."""

    def __init__(self, embed_dims: int, window_size: Size3, num_heads: int, qkv_bias: bool = True,
                 qk_scale: float | None = None) -> None:
        super().__init__(embed_dims, num_heads, qkv_bias, qk_scale)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros(math.prod(2 * w - 1 for w in window_size), num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, windows, tokens, C) -> the same; ``mask`` (windows, tokens, tokens) is added to the scores."""
        tokens = x.shape[-2]
        # MMAction2 takes the first rows and columns of the full window's table for a smaller window.
        index = self.relative_position_index[:tokens, :tokens].reshape(-1)
        bias = self.relative_position_bias_table[index].reshape(tokens, tokens, -1).permute(2, 0, 1)
        q, k, v = split_heads(self.qkv(x), self.num_heads)  # (B, windows, heads, tokens, head_dims)
        batches, windows = q.shape[:2]
        # torch's fused kernels take 4-D inputs: windows go with the batch when every window has the same
        # bias, with the heads when each window has its own mask.
        if mask is None:
            q, k, v = (t.flatten(0, 1) for t in (q, k, v))
        else:
            bias = (bias + mask[:, None]).flatten(0, 1)  # (windows * heads, tokens, tokens)
            q, k, v = (t.flatten(1, 2) for t in (q, k, v))
        out = heads_attention(q, k, v, self.scale, bias.to(q.dtype))
        return self.proj(merge_heads(out.reshape(batches, windows, self.num_heads, tokens, -1)))


class SwinTransformerBlock3D(nn.Module):
    """Pre-norm (shifted-)window attention and MLP, each with its shortcut, on (B, D, H, W, C)."""

    def __init__(self, embed_dims: int, num_heads: int, window_size: Size3, shift_size: Size3,
                 mlp_ratio: float, qkv_bias: bool, qk_scale: float | None, act_cfg: Mapping[str, Any],
                 norm_cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = WindowAttention3D(embed_dims, window_size, num_heads, qkv_bias, qk_scale)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio), act_cfg=act_cfg)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = x + self._attention(x, mask)
        return x + self.mlp(self.norm2(x))

    def _attention(self, x: Tensor, mask: Tensor | None) -> Tensor:
        _, d, h, w, _ = x.shape
        window, shift = fitted_window((d, h, w), self.window_size, self.shift_size)
        pads = [(-n) % s for n, s in zip((d, h, w), window)]
        y = F.pad(self.norm1(x), (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))  # zeros after the norm
        padded = y.shape[1:4]
        shifted = any(shift)
        if shifted:
            y = torch.roll(y, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        y = self.attn(window_partition(y, window), mask if shifted else None)
        y = window_reverse(y, window, padded)
        if shifted:
            y = torch.roll(y, shifts=shift, dims=(1, 2, 3))
        return y[:, :d, :h, :w]


class PatchMerging(nn.Module):
    """Each 2x2 group of neighbouring tokens (zero-padded to even H, W) concatenated, normed and
    projected to twice the channels: (B, D, H, W, C) -> (B, D, H/2, W/2, 2C)."""

    def __init__(self, embed_dims: int, norm_cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.out_embed_dims = 2 * embed_dims
        self.reduction = nn.Linear(4 * embed_dims, 2 * embed_dims, bias=False)
        self.norm = build_norm_layer(norm_cfg, 4 * embed_dims)[1]

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2:4]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    """One stage: ``depth`` blocks, every second one shifted by half a window, then its patch merging."""

    def __init__(self, embed_dims: int, depth: int, num_heads: int, window_size: Size3, downsample: bool,
                 **block_args: Any) -> None:
        super().__init__()
        self.embed_dims, self.window_size = embed_dims, window_size
        self.shift_size: Size3 = tuple(w // 2 for w in window_size)  # type: ignore[assignment]
        self.blocks = nn.ModuleList(
            SwinTransformerBlock3D(embed_dims, num_heads, window_size, (0, 0, 0) if i % 2 == 0 else self.shift_size,
                                   **block_args) for i in range(depth))
        self.downsample = PatchMerging(embed_dims, block_args["norm_cfg"]) if downsample else None

    @property
    def out_embed_dims(self) -> int:
        return self.embed_dims if self.downsample is None else self.downsample.out_embed_dims

    def forward(self, x: Tensor) -> Tensor:
        """(B, D, H, W, C) -> the same, after the blocks (no patch merging)."""
        size = tuple(x.shape[1:4])
        window, shift = fitted_window(size, self.window_size, self.shift_size)  # type: ignore[arg-type]
        padded = tuple(math.ceil(n / w) * w for n, w in zip(size, window))
        mask = shift_mask(padded, window, shift, x.device) if any(shift) else None
        for block in self.blocks:
            x = block(x, mask)
        return x


class PatchEmbed3D(nn.Module):
    """Non-overlapping ``patch_size`` patches (the input zero-padded at the end to whole patches),
    projected by one strided conv, then normed over channels: (B, C, T, H, W) -> (B, D, H', W', C)."""

    def __init__(self, patch_size: Size3, in_channels: int, embed_dims: int,
                 norm_cfg: Mapping[str, Any] | None) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv3d(in_channels, embed_dims, kernel_size=patch_size, stride=patch_size)
        self.norm = None if norm_cfg is None else build_norm_layer(norm_cfg, embed_dims)[1]

    def forward(self, x: Tensor) -> Tensor:
        pads = [(-n) % p for n, p in zip(x.shape[2:], self.patch_size)]
        x = self.proj(F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0])))
        x = x.permute(0, 2, 3, 4, 1)
        return x if self.norm is None else self.norm(x)


def _triple(value: int | Sequence[int], name: str) -> Size3:
    triple = (value,) * 3 if isinstance(value, int) else tuple(value)
    if len(triple) != 3 or not all(isinstance(v, int) and v > 0 for v in triple):
        raise UserError(f"SwinTransformer3D: {name}={value!r} must be a positive int or three of them")
    return triple  # type: ignore[return-value]


@MODELS.register()
class SwinTransformer3D(nn.Module):
    """MMAction2 1.x ``SwinTransformer3D``: ``arch`` (tiny/small/base/large, or a dict of
    ``embed_dims``, ``depths``, ``num_heads``), patch embedding, one :class:`BasicLayer` per stage
    with patch merging between stages, and ``norm{i}`` after each stage ``i`` of ``out_indices``
    (``out_after_downsample``: after that stage's patch merging). Dropout and drop-path are
    training-only; ``pretrained`` must be None (weights come from the checkpoint)."""

    def __init__(
        self,
        arch: str | Mapping[str, Any],
        pretrained: str | None = None,
        pretrained2d: bool = True,
        patch_size: int | Sequence[int] = (2, 4, 4),
        in_channels: int = 3,
        window_size: Sequence[int] = (8, 7, 7),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        act_cfg: Mapping[str, Any] = _GELU,
        norm_cfg: Mapping[str, Any] | None = _LN,
        patch_norm: bool = True,
        frozen_stages: int = -1,
        with_cp: bool = False,
        out_indices: Sequence[int] = (3,),
        out_after_downsample: bool = False,
        init_cfg: Any = None,
    ) -> None:
        super().__init__()
        del pretrained2d, drop_rate, attn_drop_rate, drop_path_rate, frozen_stages, with_cp, init_cfg
        check_pretrained("SwinTransformer3D", pretrained)
        settings = arch_settings("SwinTransformer3D", arch, ARCHS, ("embed_dims", "depths", "num_heads"))
        check_layer_cfgs("SwinTransformer3D", norm_cfg=norm_cfg, act_cfg=act_cfg)
        depths, heads = tuple(settings["depths"]), tuple(settings["num_heads"])
        if len(depths) != len(heads):
            raise UserError(f"SwinTransformer3D: arch has {len(depths)} depths but {len(heads)} num_heads")
        self.out_indices = tuple(out_indices)
        if not self.out_indices or not all(0 <= i < len(depths) for i in self.out_indices):
            raise UserError(f"SwinTransformer3D: out_indices={list(out_indices)!r} must name stages 0 to "
                            f"{len(depths) - 1}")
        self.out_after_downsample = out_after_downsample
        self.patch_embed = PatchEmbed3D(_triple(patch_size, "patch_size"), in_channels, settings["embed_dims"],
                                        norm_cfg if patch_norm else None)
        window = _triple(window_size, "window_size")
        dims = [settings["embed_dims"]]
        self.layers = nn.ModuleList()
        for i, (depth, num_heads) in enumerate(zip(depths, heads)):
            if dims[-1] % num_heads:
                raise UserError(f"SwinTransformer3D: stage {i} has {dims[-1]} channels, not divisible by "
                                f"num_heads={num_heads}")
            layer = BasicLayer(dims[-1], depth, num_heads, window, downsample=i < len(depths) - 1,
                               mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, act_cfg=act_cfg,
                               norm_cfg=norm_cfg or _LN)
            self.layers.append(layer)
            dims.append(layer.out_embed_dims)
        out_dims = dims[1:] if out_after_downsample else dims[:-1]
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.Identity() if norm_cfg is None else build_norm_layer(norm_cfg, out_dims[i])[1])

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        """(N, C, T, H, W) -> (N, C', T', H', W') per stage of ``out_indices`` (one tensor for one)."""
        x = self.patch_embed(x)
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if layer.downsample is not None and self.out_after_downsample:
                x = layer.downsample(x)
            if i in self.out_indices:
                outs.append(getattr(self, f"norm{i}")(x).permute(0, 4, 1, 2, 3).contiguous())
            if layer.downsample is not None and not self.out_after_downsample:
                x = layer.downsample(x)
        return outs[0] if len(outs) == 1 else tuple(outs)
