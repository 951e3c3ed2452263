"""MMAction2 1.x's ``UniFormerV2``: a CLIP ViT over the patches of every frame (its ``resblocks``),
whose last layers' tokens, each through a depthwise 3D conv (``dpe``), feed a global decoder
(``dec``) that refines one video class token; input (N, C, T, H, W), output one ``n_dim`` row per view.

Parameter names are 1.x's (CLIP's ``class_embedding``, ``positional_embedding``, ``conv1``, ``ln_pre``,
``attn.in_proj_weight``, ``mlp.c_fc`` / ``mlp.c_proj``), so its checkpoints load as they are. Attention
runs through ``scaled_dot_product_attention`` (torch's own ``MultiheadAttention`` for the frames, the
decoder's cross-attention written with it). Tokens are batch-first here, ``(frames, tokens, dims)``,
where 1.x runs them sequence-first: the same sums. Dropout and drop-path are identities at inference.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featx.errors import UserError
from featx.models.layers import check_pretrained
from featx.models.transformer import heads_attention, merge_heads, self_attention
from featx.registry import MODELS


class QuickGELU(nn.Module):
    """CLIP's activation, ``x * sigmoid(1.702 * x)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


def _mlp(dims: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(c_fc=nn.Linear(dims, hidden), gelu=QuickGELU(), c_proj=nn.Linear(hidden, dims)))


class ResidualAttentionBlock(nn.Module):
    """A CLIP layer (1.x's local UniBlock without its local MHRA, as every 1.x config builds it):
    ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``, each frame's tokens on their own."""

    def __init__(self, dims: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dims, heads)
        self.ln_1 = nn.LayerNorm(dims)
        self.mlp = _mlp(dims, dims * 4)
        self.ln_2 = nn.LayerNorm(dims)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self_attention(self.attn, self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Extractor(nn.Module):
    """1.x's global UniBlock: the video class tokens ``x`` (N, 1, C) attend to a layer's tokens ``y``
    (N, T * L, C), then an MLP; ``ln_1`` normalises the queries, ``ln_3`` the keys and values."""

    def __init__(self, dims: int, heads: int, mlp_factor: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dims, heads)
        self.ln_1 = nn.LayerNorm(dims)
        self.mlp = _mlp(dims, round(mlp_factor * dims))
        self.ln_2 = nn.LayerNorm(dims)
        self.ln_3 = nn.LayerNorm(dims)

    def attention(self, x: Tensor, y: Tensor) -> Tensor:
        attn = self.attn
        w_q, w_kv = attn.in_proj_weight.split((attn.embed_dim, 2 * attn.embed_dim))
        b_q, b_kv = attn.in_proj_bias.split((attn.embed_dim, 2 * attn.embed_dim))
        q = F.linear(x, w_q, b_q).unflatten(-1, (attn.num_heads, -1)).transpose(1, 2)
        k, v = (t.unflatten(-1, (attn.num_heads, -1)).transpose(1, 2) for t in F.linear(y, w_kv, b_kv).chunk(2, -1))
        return attn.out_proj(merge_heads(heads_attention(q, k, v, attn.head_dim ** -0.5)))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        x = x + self.attention(self.ln_1(x), self.ln_3(y))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """The frames' ``resblocks``; after each layer in ``return_list``, its tokens plus their ``dpe``
    (patch tokens only) feed the next ``dec`` block; the output is ``norm`` of the decoded video token and
    the frames' mean class token, mixed by ``sigmoid(balance)``."""

    def __init__(self, width: int, layers: int, heads: int, t_size: int, return_list: Sequence[int],
                 n_dim: int, n_head: int, mlp_factor: float) -> None:
        super().__init__()
        self.t_size, self.return_list = t_size, tuple(return_list)
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))
        self.temporal_cls_token = nn.Parameter(torch.zeros(1, 1, n_dim))
        self.dpe = nn.ModuleList(nn.Conv3d(n_dim, n_dim, 3, padding=1, groups=n_dim) for _ in self.return_list)
        self.dec = nn.ModuleList(Extractor(n_dim, n_head, mlp_factor) for _ in self.return_list)
        self.norm = nn.LayerNorm(n_dim)
        self.balance = nn.Parameter(torch.zeros(n_dim))

    def forward(self, x: Tensor) -> Tensor:
        """(N * T, 1 + H * W, C), frame-minor, square grids -> (N, C)."""
        frames, length, dims = x.shape
        batches, side = frames // self.t_size, int((length - 1) ** 0.5)
        cls_token = self.temporal_cls_token.expand(batches, 1, -1)
        decoded = 0
        for i, block in enumerate(self.resblocks):
            x = block(x)
            if i not in self.return_list:
                continue
            tokens = x.reshape(batches, self.t_size, length, dims)
            patches = tokens[:, :, 1:].permute(0, 3, 1, 2).reshape(batches, dims, self.t_size, side, side)
            pos = self.dpe[decoded](patches).flatten(3).permute(0, 2, 3, 1)  # (N, T, H * W, C)
            tokens = torch.cat((tokens[:, :, :1], tokens[:, :, 1:] + pos), 2).flatten(1, 2)
            cls_token = self.dec[decoded](cls_token, tokens)
            decoded += 1
        weight = torch.sigmoid(self.balance)
        frames_cls = x[:, 0].reshape(batches, self.t_size, dims).mean(1)
        return self.norm((1 - weight) * cls_token[:, 0] + weight * frames_cls)


@MODELS.register()
class UniFormerV2(nn.Module):
    """MMAction2 1.x ``UniFormerV2``: ``conv1`` cuts each frame (or, with ``temporal_downsample``, each
    pair of frames) into ``patch_size`` squares, a class token (``class_embedding``) is put first,
    ``positional_embedding`` added, ``ln_pre``, then the ``transformer``. A view must have ``t_size``
    frames of ``input_resolution`` pixels squared, as the embeddings are not resized (1.x fails too).

    The local MHRA (``no_lmhra=False``), which no 1.x config builds, is refused.
    """

    def __init__(
        self,
        input_resolution: int = 224,
        patch_size: int = 16,
        width: int = 768,
        layers: int = 12,
        heads: int = 12,
        backbone_drop_path_rate: float = 0.0,
        t_size: int = 8,
        kernel_size: int = 3,
        dw_reduction: float = 1.5,
        temporal_downsample: bool = False,
        no_lmhra: bool = True,
        double_lmhra: bool = False,
        return_list: Sequence[int] = (8, 9, 10, 11),
        n_layers: int = 4,
        n_dim: int = 768,
        n_head: int = 12,
        mlp_factor: float = 4.0,
        drop_path_rate: float = 0.0,
        mlp_dropout: Sequence[float] = (0.5, 0.5, 0.5, 0.5),
        clip_pretrained: bool = True,
        pretrained: str | None = None,
        init_cfg: Any = None,
    ) -> None:
        super().__init__()
        # Training settings, the local MHRA's, and the CLIP weights 1.x loads only when it trains (its test
        # loop never initialises weights: they come from the checkpoint, as in featx).
        del backbone_drop_path_rate, drop_path_rate, mlp_dropout, init_cfg, double_lmhra, dw_reduction, clip_pretrained
        check_pretrained("UniFormerV2", pretrained)
        if not no_lmhra:
            raise UserError("UniFormerV2: no_lmhra=False is not supported (no MMAction2 1.x config builds the "
                            "local MHRA)")
        if n_layers != len(return_list):
            raise UserError(f"UniFormerV2: n_layers={n_layers} is not the length of return_list={list(return_list)}")
        if width != n_dim:
            raise UserError(f"UniFormerV2: width={width} and n_dim={n_dim} must be equal")
        if width % heads or n_dim % n_head:
            raise UserError(f"UniFormerV2: width={width} / n_dim={n_dim} is not divisible by heads={heads} / "
                            f"n_head={n_head}")
        if temporal_downsample:
            self.conv1 = nn.Conv3d(3, width, (kernel_size, patch_size, patch_size), (2, patch_size, patch_size),
                                   ((kernel_size - 1) // 2, 0, 0), bias=False)
            t_size //= 2
        else:
            self.conv1 = nn.Conv3d(3, width, (1, patch_size, patch_size), (1, patch_size, patch_size), bias=False)
        self.input_resolution, self.t_size = input_resolution, t_size
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, t_size, return_list, n_dim, n_head, mlp_factor)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, T, H, W) -> (N, n_dim)."""
        x = self.conv1(x)
        grid_tokens = self.positional_embedding.shape[0] - 1
        if x.shape[2] != self.t_size or x.shape[3] * x.shape[4] != grid_tokens or x.shape[3] != x.shape[4]:
            raise RuntimeError(
                f"UniFormerV2 takes views that embed to {self.t_size} steps of {grid_tokens} patches "
                f"(t_size, input_resolution={self.input_resolution}), got {tuple(x.shape[2:])}")
        x = x.permute(0, 2, 3, 4, 1).flatten(2, 3).flatten(0, 1)  # (N * T, H * W, C)
        cls_token = self.class_embedding.expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat((cls_token, x), 1) + self.positional_embedding)
        return self.transformer(x)
