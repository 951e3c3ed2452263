"""MMAction2 1.x's ``VisionTransformer`` (VideoMAE, VideoMAE V2): a plain ViT over tubelets of
``tubelet_size`` frames x ``patch_size`` pixels squared, input (N, C, T, H, W), output one
``embed_dims`` row per view (the mean of the tokens through ``fc_norm``, or with
``use_mean_pooling=False`` the first token through ``norm``).

Parameter names are 1.x's (mmcv's ``PatchEmbed`` ``patch_embed.projection``, ``attn.q_bias`` /
``attn.v_bias``, mmcv's ``FFN`` ``mlp.layers.0.0``), so its checkpoints load as they are. Attention runs
through ``scaled_dot_product_attention``. Dropout and drop-path are identities at inference.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featx.errors import UserError
from featx.models.layers import build_norm_layer, check_layer_cfgs, check_pretrained
from featx.models.transformer import FFN, QKVAttention, heads_attention, merge_heads, split_heads
from featx.registry import MODELS

_LN = MappingProxyType({"type": "LN", "eps": 1e-6})
_GELU = MappingProxyType({"type": "GELU"})


class Attention(QKVAttention):
    """1.x's attention: a bias-free ``qkv`` linear whose bias, if any, is ``q_bias``, zeros for the keys
    and ``v_bias``; the queries scaled by ``qk_scale`` (default ``head_dims ** -0.5``)."""

    def __init__(self, embed_dims: int, num_heads: int, qkv_bias: bool = True, qk_scale: float | None = None) -> None:
        super().__init__(embed_dims, num_heads, qkv_bias=False, qk_scale=qk_scale)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(embed_dims))
            self.v_bias = nn.Parameter(torch.zeros(embed_dims))

    def forward(self, x: Tensor, bias: None = None) -> Tensor:
        """(B, N, C) -> (B, N, C)."""
        qkv_bias = None
        if hasattr(self, "q_bias"):
            qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        q, k, v = split_heads(F.linear(x, self.qkv.weight, qkv_bias), self.num_heads)
        return self.proj(merge_heads(heads_attention(q, k, v, self.scale)))


class Block(nn.Module):
    """Pre-norm ViT block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``; with ``init_values > 0``
    each branch is scaled by its ``gamma_1`` / ``gamma_2`` first."""

    def __init__(self, embed_dims: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, qk_scale: float | None,
                 init_values: float, norm_cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = Attention(embed_dims, num_heads, qkv_bias, qk_scale)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.mlp = FFN(embed_dims, int(embed_dims * mlp_ratio), act_cfg=_GELU, add_identity=False)
        if isinstance(init_values, float) and init_values > 0:  # 1.x's test: an int leaves the branches unscaled
            self.gamma_1 = nn.Parameter(torch.full((embed_dims,), init_values))
            self.gamma_2 = nn.Parameter(torch.full((embed_dims,), init_values))

    def forward(self, x: Tensor) -> Tensor:
        attn = self.attn(self.norm1(x))
        x = x + (self.gamma_1 * attn if hasattr(self, "gamma_1") else attn)
        mlp = self.mlp(self.norm2(x))
        return x + (self.gamma_2 * mlp if hasattr(self, "gamma_2") else mlp)


def sinusoid_table(positions: int, dims: int) -> Tensor:
    """The (1, positions, dims) sine-cosine table of "Attention Is All You Need": position ``p``, dimension
    ``d`` gets ``sin`` (even ``d``) or ``cos`` (odd ``d``) of ``p / 10000 ** (2 * (d // 2) / dims)``,
    computed in float64."""
    rates = torch.pow(10000.0, -(2 * (torch.arange(dims, dtype=torch.float64) // 2)) / dims)
    angles = torch.arange(positions, dtype=torch.float64)[:, None] * rates
    table = torch.where(torch.arange(dims) % 2 == 0, angles.sin(), angles.cos())
    return table.to(torch.float32)[None]


class PatchEmbed(nn.Module):
    """mmcv's ``PatchEmbed`` with a Conv3d and no padding or norm: (N, C, T, H, W) -> (N, T'H'W', D), the
    tokens time-major."""

    def __init__(self, in_channels: int, embed_dims: int, kernel_size: tuple[int, int, int]) -> None:
        super().__init__()
        self.projection = nn.Conv3d(in_channels, embed_dims, kernel_size=kernel_size, stride=kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(x).flatten(2).transpose(1, 2)


@MODELS.register()
class VisionTransformer(nn.Module):
    """MMAction2 1.x ``VisionTransformer`` (VideoMAE): tubelet embedding plus a position table
    (sine-cosine, or learnt with ``use_learnable_pos_emb``; either is the checkpoint's ``pos_embed``),
    ``depth`` blocks, then mean pooling and ``fc_norm`` (``use_mean_pooling``) or ``norm`` and the
    first token. ``return_feat_map`` returns the tokens as (N, C, T', H', W') instead, which the
    recognizer average-pools. A view whose patch grid is not ``img_size``'s gets the table resized
    per time step (bicubic), as 1.x does; its frames must still be ``num_frames``.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        embed_dims: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: Mapping[str, Any] = _LN,
        init_values: float = 0.0,
        use_learnable_pos_emb: bool = False,
        num_frames: int = 16,
        tubelet_size: int = 2,
        use_mean_pooling: bool = True,
        pretrained: str | None = None,
        return_feat_map: bool = False,
        init_cfg: Any = None,
    ) -> None:
        super().__init__()
        del drop_rate, attn_drop_rate, drop_path_rate, init_cfg  # training only
        check_pretrained("VisionTransformer", pretrained)
        check_layer_cfgs("VisionTransformer", norm_cfg=norm_cfg)
        if embed_dims % num_heads:
            raise UserError(f"VisionTransformer: embed_dims={embed_dims} is not divisible by num_heads={num_heads}")
        self.embed_dims, self.patch_size = embed_dims, patch_size
        self.patch_embed = PatchEmbed(in_channels, embed_dims, (tubelet_size, patch_size, patch_size))
        self.grid_size = (img_size // patch_size,) * 2
        num_patches = self.grid_size[0] * self.grid_size[1] * (num_frames // tubelet_size)
        if use_learnable_pos_emb:
            self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, embed_dims))
        else:
            self.register_buffer("pos_embed", sinusoid_table(num_patches, embed_dims))
        self.blocks = nn.ModuleList(
            Block(embed_dims, num_heads, mlp_ratio, qkv_bias, qk_scale, init_values, norm_cfg) for _ in range(depth))
        self.norm = nn.Identity() if use_mean_pooling else build_norm_layer(norm_cfg, embed_dims)[1]
        self.fc_norm = build_norm_layer(norm_cfg, embed_dims)[1] if use_mean_pooling else None
        self.return_feat_map = return_feat_map

    def position_table(self, grid: tuple[int, int]) -> Tensor:
        """``pos_embed`` for a ``grid`` of patches per time step: as it is, or resized (bicubic)."""
        if grid == self.grid_size:
            return self.pos_embed
        table = self.pos_embed.reshape(-1, *self.grid_size, self.embed_dims).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=grid, mode="bicubic", align_corners=False)
        return table.permute(0, 2, 3, 1).reshape(1, -1, self.embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, T, H, W) -> (N, embed_dims), or (N, embed_dims, T', H', W') with ``return_feat_map``."""
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        x = self.patch_embed(x) + self.position_table(grid)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        if self.return_feat_map:
            return x.reshape(x.shape[0], -1, *grid, self.embed_dims).permute(0, 4, 1, 2, 3)
        if self.fc_norm is not None:
            return self.fc_norm(x.mean(1))
        return x[:, 0]
