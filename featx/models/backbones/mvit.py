"""MMAction2 1.x's ``MViT`` (MViTv2): a class token and 3D patch tokens through multiscale blocks whose
attention pools its queries, keys and values (depthwise convs), with decomposed relative positions
(time, height, width) and residual pooling. Input (N, C, T, H, W); output one row per view, the
class token after the last stage's norm (what ``MViTHead`` classifies), or with
``output_cls_token=False`` that stage's normed patch tokens (N, C, T', H', W'), pooled by the
recognizer as ``MViTHead`` averages them."""
from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featx.errors import UserError
from featx.models.layers import arch_settings, build_norm_layer, check_layer_cfgs, check_pretrained
from featx.models.transformer import Mlp, heads_attention, merge_heads, split_heads
from featx.registry import MODELS

ARCHS = {
    "tiny": {"embed_dims": 96, "num_layers": 10, "num_heads": 1, "downscale_indices": [1, 3, 8]},
    "small": {"embed_dims": 96, "num_layers": 16, "num_heads": 1, "downscale_indices": [1, 3, 14]},
    "base": {"embed_dims": 96, "num_layers": 24, "num_heads": 1, "downscale_indices": [2, 5, 21]},
    "large": {"embed_dims": 144, "num_layers": 48, "num_heads": 2, "downscale_indices": [2, 8, 44]},
}
_LN6 = MappingProxyType({"type": "LN", "eps": 1e-6})
_GELU = MappingProxyType({"type": "GELU"})
_PATCH = MappingProxyType({"kernel_size": (3, 7, 7), "stride": (2, 4, 4), "padding": (1, 3, 3)})

Size3 = tuple[int, int, int]
# a head's patch-token queries (t, h, w) against the key positions along time, height, width
_AXIS_EQUATIONS = ("bnthwc,tkc->bnthwk", "bnthwc,hkc->bnthwk", "bnthwc,wkc->bnthwk")


def _triple(value: int | Sequence[int]) -> Size3:
    return (value,) * 3 if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def pool_tokens(x: Tensor, pool: nn.Module, size: Size3, extra: int, norm: nn.Module | None = None) -> tuple[Tensor, Size3]:
    """Pool the patch tokens of ``x`` (B, [heads,] extra + T*H*W, C) as a (T, H, W) map with ``pool``,
    the ``extra`` leading (class) tokens kept; then ``norm`` over channels. Returns the tokens and the
    pooled map's size."""
    heads_dim = x.dim() == 4
    if not heads_dim:
        x = x.unsqueeze(1)
    batches, heads, _, channels = x.shape
    kept, patches = x[:, :, :extra], x[:, :, extra:]
    grid = patches.reshape(batches * heads, *size, channels).permute(0, 4, 1, 2, 3)
    grid = pool(grid)
    out_size: Size3 = tuple(grid.shape[2:])  # type: ignore[assignment]
    x = torch.cat((kept, grid.reshape(batches, heads, channels, -1).transpose(2, 3)), 2)
    if norm is not None:
        x = norm(x)
    return (x if heads_dim else x.squeeze(1)), out_size


def relative_positions(rel_pos: Tensor, q_size: int, k_size: int) -> Tensor:
    """(q_size, k_size, dims): the embedding of each query-key offset along one axis, the table
    resized linearly to ``2 * max(q_size, k_size) - 1`` rows where it has another length, and the
    shorter axis' coordinates scaled to the longer one's (truncated to whole rows, as MMAction2 does)."""
    rows = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != rows:
        rel_pos = F.interpolate(rel_pos.transpose(0, 1)[None], size=rows, mode="linear")[0].transpose(0, 1)
    q_ratio, k_ratio = max(k_size / q_size, 1.0), max(q_size / k_size, 1.0)
    coords = (torch.arange(q_size)[:, None] * q_ratio - torch.arange(k_size)[None, :] * k_ratio
              + (k_size - 1) * k_ratio)
    return rel_pos[coords.long()]


class MultiScaleAttention(nn.Module):
    """Attention whose queries, keys and values are each pooled (a depthwise conv per head's channels,
    then a norm) before the product; decomposed relative positions added to the scores of patch
    tokens; the pooled queries added back to the patch outputs (residual pooling)."""

    def __init__(self, in_dims: int, out_dims: int, num_heads: int, qkv_bias: bool, norm_cfg: Mapping[str, Any],
                 pool_kernel: Size3, stride_q: Size3, stride_kv: Size3, rel_pos_embed: bool, residual_pooling: bool,
                 input_size: Size3, with_cls_token: bool) -> None:
        super().__init__()
        self.num_heads, self.out_dims = num_heads, out_dims
        self.extra = int(with_cls_token)
        head_dims = out_dims // num_heads
        self.scale = head_dims ** -0.5
        self.qkv = nn.Linear(in_dims, out_dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(out_dims, out_dims)
        padding = tuple(k // 2 for k in pool_kernel)
        for name, stride in (("q", stride_q), ("k", stride_kv), ("v", stride_kv)):
            self.add_module(f"pool_{name}", nn.Conv3d(head_dims, head_dims, pool_kernel, stride=stride,
                                                      padding=padding, groups=head_dims, bias=False))
            self.add_module(f"norm_{name}", build_norm_layer(norm_cfg, head_dims)[1])
        self.residual_pooling, self.rel_pos_embed = residual_pooling, rel_pos_embed
        if rel_pos_embed:
            if input_size[1] != input_size[2]:
                raise UserError(f"MViT: relative positions need a square token map, got {input_size[1]}x{input_size[2]}")
            rows = 2 * max(input_size[1] // stride_q[1], input_size[1] // stride_kv[1]) - 1
            self.rel_pos_h = nn.Parameter(torch.zeros(rows, head_dims))
            self.rel_pos_w = nn.Parameter(torch.zeros(rows, head_dims))
            self.rel_pos_t = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dims))

    def position_bias(self, q: Tensor, q_size: Size3, k_size: Size3) -> Tensor:
        """(B, heads, Nq, Nk): the decomposed relative position terms of the scores (zero on the class
        token's row and column)."""
        batches, heads, _, dims = q.shape
        patches = q[:, :, self.extra:].reshape(batches, heads, *q_size, dims)
        tables = (self.rel_pos_t, self.rel_pos_h, self.rel_pos_w)
        rt, rh, rw = (torch.einsum(equation, patches, relative_positions(table, qs, ks))
                      for equation, table, qs, ks in zip(_AXIS_EQUATIONS, tables, q_size, k_size))
        bias = rt[..., :, None, None] + rh[..., None, :, None] + rw[..., None, None, :]
        bias = bias.reshape(batches, heads, math.prod(q_size), math.prod(k_size))
        return F.pad(bias, (self.extra, 0, self.extra, 0))

    def forward(self, x: Tensor, size: Size3) -> tuple[Tensor, Size3]:
        q, k, v = split_heads(self.qkv(x), self.num_heads)
        q, q_size = pool_tokens(q, self.pool_q, size, self.extra, self.norm_q)
        k, k_size = pool_tokens(k, self.pool_k, size, self.extra, self.norm_k)
        v, _ = pool_tokens(v, self.pool_v, size, self.extra, self.norm_v)
        bias = self.position_bias(q, q_size, k_size) if self.rel_pos_embed else None
        out = heads_attention(q, k, v, self.scale, bias)
        if self.residual_pooling:
            out = torch.cat((out[:, :, :self.extra], out[:, :, self.extra:] + q[:, :, self.extra:]), 2)
        return self.proj(merge_heads(out)), q_size


class MultiScaleBlock(nn.Module):
    """Pre-norm multiscale attention and MLP; the shortcut is max-pooled where the queries are
    strided and projected where the channels change (before the attention's output with
    ``dim_mul_in_attention``, else around the MLP)."""

    def __init__(self, in_dims: int, out_dims: int, num_heads: int, mlp_ratio: float, qkv_bias: bool,
                 norm_cfg: Mapping[str, Any], act_cfg: Mapping[str, Any], qkv_pool_kernel: Size3, stride_q: Size3,
                 stride_kv: Size3, rel_pos_embed: bool, residual_pooling: bool, with_cls_token: bool,
                 dim_mul_in_attention: bool, input_size: Size3) -> None:
        super().__init__()
        self.extra, self.dim_mul_in_attention = int(with_cls_token), dim_mul_in_attention
        attn_dims = out_dims if dim_mul_in_attention else in_dims
        self.norm1 = build_norm_layer(norm_cfg, in_dims)[1]
        self.attn = MultiScaleAttention(in_dims, attn_dims, num_heads, qkv_bias, norm_cfg, qkv_pool_kernel, stride_q,
                                        stride_kv, rel_pos_embed, residual_pooling, input_size, with_cls_token)
        self.norm2 = build_norm_layer(norm_cfg, attn_dims)[1]
        self.mlp = Mlp(attn_dims, int(attn_dims * mlp_ratio), out_dims, act_cfg=act_cfg)
        self.proj = nn.Linear(in_dims, out_dims) if in_dims != out_dims else None
        self.pool_skip = None
        if math.prod(stride_q) > 1:
            kernel = tuple(s + 1 if s > 1 else s for s in stride_q)
            self.pool_skip = nn.MaxPool3d(kernel, stride_q, tuple(k // 2 for k in kernel))
        self.out_size: Size3 = tuple(n // s for n, s in zip(input_size, stride_q))  # type: ignore[assignment]

    def forward(self, x: Tensor, size: Size3) -> tuple[Tensor, Size3]:
        x_norm = self.norm1(x)
        x_attn, out_size = self.attn(x_norm, size)
        skip = self.proj(x_norm) if self.dim_mul_in_attention and self.proj is not None else x
        if self.pool_skip is not None:
            skip, _ = pool_tokens(skip, self.pool_skip, size, self.extra)
        x = skip + x_attn
        x_norm = self.norm2(x)
        skip = self.proj(x_norm) if not self.dim_mul_in_attention and self.proj is not None else x
        return skip + self.mlp(x_norm), out_size


class PatchEmbed3D(nn.Module):
    """One conv over the video (``patch_cfg``'s kernel, stride, padding): (B, C, T, H, W) -> tokens
    (B, T'*H'*W', C') and (T', H', W')."""

    def __init__(self, in_channels: int, embed_dims: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] | None = None, padding: int | Sequence[int] = 0,
                 dilation: int | Sequence[int] = 1, bias: bool = True) -> None:
        super().__init__()
        if isinstance(padding, str):
            raise UserError(f"MViT: patch_cfg padding={padding!r} (adaptive padding) is not supported: give numbers")
        self.projection = nn.Conv3d(in_channels, embed_dims, _triple(kernel_size),
                                    _triple(kernel_size if stride is None else stride), _triple(padding),
                                    _triple(dilation), bias=bias)

    def out_size(self, size: Size3) -> Size3:
        conv = self.projection
        return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1  # type: ignore[return-value]
                     for n, p, d, k, s in zip(size, conv.padding, conv.dilation, conv.kernel_size, conv.stride))

    def forward(self, x: Tensor) -> tuple[Tensor, Size3]:
        x = self.projection(x)
        return x.flatten(2).transpose(1, 2), tuple(x.shape[2:])  # type: ignore[return-value]


@MODELS.register()
class MViT(nn.Module):
    """MMAction2 1.x ``MViT``: ``arch`` (tiny/small/base/large, or a dict of ``embed_dims``,
    ``num_layers``, ``num_heads``, ``downscale_indices`` [, ``dim_mul_indices``]), patch embedding,
    class token, optional absolute positions, the blocks (heads and channels multiplied, queries
    strided by 2 spatially at each downscale index; the first block's keys and values strided by
    ``adaptive_kv_stride``, halved at each downscale) and ``norm{i}`` after each scale of
    ``out_scales``. As in MMAction2 a normed scale feeds the next blocks normed. Drop-path is
    training-only; ``pretrained`` must be None (weights come from the checkpoint)."""

    def __init__(
        self,
        arch: str | Mapping[str, Any] = "base",
        spatial_size: int = 224,
        temporal_size: int = 16,
        in_channels: int = 3,
        pretrained: str | None = None,
        pretrained_type: str | None = None,
        out_scales: int | Sequence[int] = -1,
        drop_path_rate: float = 0.0,
        use_abs_pos_embed: bool = False,
        interpolate_mode: str = "trilinear",
        pool_kernel: Sequence[int] = (3, 3, 3),
        dim_mul: int = 2,
        head_mul: int = 2,
        adaptive_kv_stride: Sequence[int] = (1, 8, 8),
        rel_pos_embed: bool = True,
        residual_pooling: bool = True,
        dim_mul_in_attention: bool = True,
        with_cls_token: bool = True,
        output_cls_token: bool = True,
        rel_pos_zero_init: bool = False,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_cfg: Mapping[str, Any] = _LN6,
        patch_cfg: Mapping[str, Any] = _PATCH,
        init_cfg: Any = None,
    ) -> None:
        super().__init__()
        del pretrained_type, drop_path_rate, rel_pos_zero_init, init_cfg  # training / weight init only
        check_pretrained("MViT", pretrained)
        settings = arch_settings("MViT", arch, ARCHS, ("embed_dims", "num_layers", "num_heads", "downscale_indices"),
                                 ("dim_mul_indices",))
        check_layer_cfgs("MViT", norm_cfg=norm_cfg)
        if output_cls_token and not with_cls_token:
            raise UserError("MViT: output_cls_token=True needs with_cls_token=True")
        num_layers, downscale = settings["num_layers"], list(settings["downscale_indices"])
        dim_mul_indices = list(settings.get("dim_mul_indices", downscale))
        num_scales = len(downscale) + 1
        scales = [out_scales] if isinstance(out_scales, int) else list(out_scales)
        if not scales or not all(isinstance(s, int) and -num_scales <= s < num_scales for s in scales):
            raise UserError(f"MViT: out_scales={out_scales!r} must name scales 0 to {num_scales - 1} (or count from -1)")
        self.out_scales = sorted(s % num_scales for s in scales)
        self.with_cls_token, self.output_cls_token = with_cls_token, output_cls_token
        self.use_abs_pos_embed, self.interpolate_mode = use_abs_pos_embed, interpolate_mode
        self.embed_dims = settings["embed_dims"]
        self.patch_embed = PatchEmbed3D(in_channels, self.embed_dims, **patch_cfg)
        self.patch_resolution = self.patch_embed.out_size((temporal_size, spatial_size, spatial_size))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        if use_abs_pos_embed:
            self.pos_embed = nn.Parameter(torch.zeros(1, math.prod(self.patch_resolution) + 1, self.embed_dims))
        # the last block of each scale: its index -> the scale
        self.stage_indices = {index - 1: i for i, index in enumerate(downscale)} | {num_layers - 1: num_scales - 1}
        self.blocks = nn.ModuleList()
        dims, heads, stride_kv = self.embed_dims, settings["num_heads"], _triple(adaptive_kv_stride)
        size = self.patch_resolution
        for i in range(num_layers):
            if i in downscale or i in dim_mul_indices:
                heads *= head_mul
            stride_q: Size3 = (1, 1, 1)
            if i in downscale:
                stride_q = (1, 2, 2)
                stride_kv = tuple(max(s // 2, 1) for s in stride_kv)  # type: ignore[assignment]
            grows = i in dim_mul_indices if dim_mul_in_attention else i + 1 in dim_mul_indices
            out_dims = dims * dim_mul if grows else dims
            block = MultiScaleBlock(dims, out_dims, heads, mlp_ratio, qkv_bias, norm_cfg, _GELU, _triple(pool_kernel),
                                    stride_q, stride_kv, rel_pos_embed, residual_pooling, with_cls_token,
                                    dim_mul_in_attention, size)
            self.blocks.append(block)
            size, dims = block.out_size, out_dims
            if self.stage_indices.get(i) in self.out_scales:
                self.add_module(f"norm{self.stage_indices[i]}", build_norm_layer(norm_cfg, out_dims)[1])

    def _positions(self, size: Size3) -> Tensor:
        """The absolute position embedding for a ``size`` token map (interpolated from the built one)."""
        if size == self.patch_resolution:
            return self.pos_embed
        cls_pos, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        grid = grid.reshape(1, *self.patch_resolution, -1).permute(0, 4, 1, 2, 3)
        grid = F.interpolate(grid, size=size, mode=self.interpolate_mode, align_corners=False)
        return torch.cat((cls_pos, grid.flatten(2).transpose(1, 2)), 1)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, T, H, W) -> (N, C') class tokens, or (N, C', T', H', W') patch tokens."""
        x, size = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), 1)
        if self.use_abs_pos_embed:
            x = x + self._positions(size)
        if not self.with_cls_token:
            x = x[:, 1:]
        last = self.out_scales[-1]
        for i, block in enumerate(self.blocks):
            x, size = block(x, size)
            scale = self.stage_indices.get(i)
            if scale in self.out_scales:
                x = getattr(self, f"norm{scale}")(x)
                if scale == last:
                    break
        if self.output_cls_token:
            return x[:, 0]
        patches = x[:, int(self.with_cls_token):]
        return patches.transpose(1, 2).reshape(x.shape[0], -1, *size)
