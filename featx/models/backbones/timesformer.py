"""MMAction2 0.x's ``TimeSformer`` (a ViT over the patches of every frame): input (N, C, T, H, W),
output the class token after the final norm, one ``embed_dims`` row per view."""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from featx.errors import UserError
from featx.models.layers import build_norm_layer, check_layer_cfgs, check_pretrained
from featx.models.transformer import (
    FFN,
    BaseTransformerLayer,
    DividedSpatialAttentionWithNorm,
    DividedTemporalAttentionWithNorm,
    MultiheadAttention,
    TransformerLayerSequence,
)
from featx.registry import MODELS

ATTENTION_TYPES = ("divided_space_time", "space_only", "joint_space_time")
_LN = MappingProxyType({"type": "LN", "eps": 1e-6})  # the norm of every transformer layer
_GELU = MappingProxyType({"type": "GELU"})


class PatchEmbed(nn.Module):
    """Each frame cut into ``patch_size`` squares, each projected to ``embed_dims`` by one strided conv:
    (N, C, T, H, W) -> (N * T, patches, embed_dims)."""

    def __init__(self, img_size: int | tuple[int, int], patch_size: int | tuple[int, int], in_channels: int = 3,
                 embed_dims: int = 768) -> None:
        super().__init__()
        self.img_size, self.patch_size = _pair(img_size), _pair(patch_size)
        self.grid = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid[0] * self.grid[1]
        if self.num_patches * self.patch_size[0] * self.patch_size[1] != self.img_size[0] * self.img_size[1]:
            raise UserError(f"TimeSformer: img_size={img_size!r} is not a whole number of "
                            f"patch_size={patch_size!r} patches")
        self.projection = nn.Conv2d(in_channels, embed_dims, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        frames = x.transpose(1, 2).flatten(0, 1)  # (N * T, C, H, W)
        return self.projection(frames).flatten(2).transpose(1, 2)


def _divided_layer(embed_dims: int, num_heads: int, num_frames: int) -> BaseTransformerLayer:
    """Temporal attention, spatial attention, then a pre-normed FFN; each adds its own shortcut."""
    return BaseTransformerLayer(
        attentions=[DividedTemporalAttentionWithNorm(embed_dims, num_heads, num_frames, _LN),
                    DividedSpatialAttentionWithNorm(embed_dims, num_heads, num_frames, _LN)],
        ffns=[FFN(embed_dims, embed_dims * 4, act_cfg=_GELU, norm_cfg=_LN)],
        operation_order=("self_attn", "self_attn", "ffn"),
    )


def _joint_layer(embed_dims: int, num_heads: int) -> BaseTransformerLayer:
    """A pre-norm ViT layer: attention over all tokens given, then an FFN."""
    return BaseTransformerLayer(
        attentions=[MultiheadAttention(embed_dims, num_heads)],
        ffns=[FFN(embed_dims, embed_dims * 4, act_cfg=_GELU)],
        operation_order=("norm", "self_attn", "norm", "ffn"),
        norms=[build_norm_layer(_LN, embed_dims)[1] for _ in range(2)],
    )


@MODELS.register()
class TimeSformer(nn.Module):
    """MMAction2 0.x ``TimeSformer``: patch embedding + class token + position (and, unless
    ``space_only``, time) embeddings, ``num_transformer_layers`` layers, the final norm.

    ``attention_type``: ``divided_space_time`` (temporal then spatial attention in each layer),
    ``joint_space_time`` (one attention over all patches of all frames) or ``space_only`` (each frame
    on its own, the frames' outputs averaged before the norm). The embeddings are not interpolated: a
    view must have ``num_frames`` frames and as many patches as ``img_size``, as in MMAction2.
    Dropout and drop-path are training-only; only the default layers are built
    (``transformer_layers=None``).
    """

    def __init__(
        self,
        num_frames: int,
        img_size: int | tuple[int, int],
        patch_size: int | tuple[int, int],
        pretrained: str | None = None,
        embed_dims: int = 768,
        num_heads: int = 12,
        num_transformer_layers: int = 12,
        in_channels: int = 3,
        dropout_ratio: float = 0.0,
        transformer_layers: Mapping[str, Any] | None = None,
        attention_type: str = "divided_space_time",
        norm_cfg: Mapping[str, Any] = _LN,
    ) -> None:
        super().__init__()
        del dropout_ratio  # training only
        check_pretrained("TimeSformer", pretrained)
        if attention_type not in ATTENTION_TYPES:
            raise UserError(f"TimeSformer: attention_type={attention_type!r} is not one of {', '.join(ATTENTION_TYPES)}")
        if transformer_layers is not None:
            raise UserError("TimeSformer: transformer_layers must be None (featx builds MMAction2's default layers)")
        if embed_dims % num_heads:
            raise UserError(f"TimeSformer: embed_dims={embed_dims} is not divisible by num_heads={num_heads}")
        check_layer_cfgs("TimeSformer", norm_cfg=norm_cfg)
        self.num_frames, self.attention_type = num_frames, attention_type
        self.patch_embed = PatchEmbed(img_size, patch_size, in_channels, embed_dims)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dims))
        if attention_type != "space_only":
            self.time_embed = nn.Parameter(torch.zeros(1, num_frames, embed_dims))
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1]
        layers = [_divided_layer(embed_dims, num_heads, num_frames) if attention_type == "divided_space_time"
                  else _joint_layer(embed_dims, num_heads) for _ in range(num_transformer_layers)]
        self.transformer_layers = TransformerLayerSequence(layers)

    def check_input(self, x: Tensor) -> None:
        """A RuntimeError unless ``x`` has ``num_frames`` frames of ``img_size`` patches (the embeddings'
        sizes): MMAction2 fails on any other size too, and featx does not resize them."""
        embed = self.patch_embed
        grid = (x.shape[-2] // embed.patch_size[0], x.shape[-1] // embed.patch_size[1])
        if x.dim() != 5 or x.shape[2] != self.num_frames or grid != embed.grid:
            size = "x".join(map(str, embed.img_size))
            raise RuntimeError(
                f"TimeSformer takes {self.num_frames} frames of {size} pixels (num_frames, img_size), "
                f"got {x.shape[2]} frames of {x.shape[-2]}x{x.shape[-1]}")

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, T, H, W) -> (N, embed_dims)."""
        self.check_input(x)
        batches = x.shape[0]
        x = self.patch_embed(x)  # (N * T, P, D)
        cls_token = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls_token, x), 1) + self.pos_embed
        if self.attention_type != "space_only":
            # One sequence per view: the class token (the same in every row), then every patch at
            # every frame, frame-minor.
            cls_token, patches = x[:batches, :1], x[:, 1:]
            num_patches, dims = patches.shape[1:]
            patches = patches.reshape(batches, self.num_frames, num_patches, dims).transpose(1, 2)
            patches = (patches + self.time_embed[:, None]).reshape(batches, -1, dims)
            x = torch.cat((cls_token, patches), 1)
        x = self.transformer_layers(x)
        cls_token = x[:, 0]
        if self.attention_type == "space_only":
            cls_token = cls_token.reshape(batches, self.num_frames, -1).mean(1)
        return self.norm(cls_token)

