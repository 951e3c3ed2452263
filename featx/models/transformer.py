"""mmcv 1.x's transformer bricks, MMAction2's divided space-time attentions, and the timm-style
attention and MLP of MMAction2 1.x's Swin, MViT and UniFormer, at inference.

Module and parameter names are mmcv's (``attentions.0.attn.in_proj_weight`` is torch's
``nn.MultiheadAttention`` inside mmcv's wrapper, ``ffns.0.layers.0.0.weight`` the first FFN linear,
``norms.0`` a layer's own norms), so MMAction2 checkpoints load as they are. Dropout, attention
dropout and drop-path are identities in eval mode and are left out.

Tokens are batch-first, ``(batch, tokens, dims)``; torch's attention runs sequence-first on them, as
mmcv's wrapper and MMAction2's attentions transpose them for it.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featx.models.layers import build_activation, build_norm_layer

def split_heads(qkv: Tensor, num_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """A fused ``qkv`` projection (..., tokens, 3 * dims) as query, key and value, each
    (..., heads, tokens, dims / heads), the way every timm-style attention splits it."""
    *batch, tokens, dims = qkv.shape
    parts = qkv.reshape(*batch, tokens, 3, num_heads, dims // (3 * num_heads)).movedim(-3, 0)
    return parts[0].transpose(-3, -2), parts[1].transpose(-3, -2), parts[2].transpose(-3, -2)


def merge_heads(x: Tensor) -> Tensor:
    """(..., heads, tokens, head_dims) -> (..., tokens, heads * head_dims)."""
    return x.transpose(-3, -2).flatten(-2)


def heads_attention(q: Tensor, k: Tensor, v: Tensor, scale: float, bias: Tensor | None = None) -> Tensor:
    """``softmax(q k^T * scale + bias) v`` per head, through torch's ``scaled_dot_product_attention``
    (the same product, in fused kernels where torch has them); ``bias`` broadcasts to the scores."""
    if bias is not None and bias.dim() < q.dim():  # torch's CPU flash kernel takes only a mask of q's rank
        bias = bias.reshape((1,) * (q.dim() - bias.dim()) + bias.shape)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)


class QKVAttention(nn.Module):
    """timm-style multi-head self-attention: one ``qkv`` linear, the heads, then ``proj``; an additive
    score ``bias`` may be given (relative positions, masks)."""

    def __init__(self, embed_dims: int, num_heads: int, qkv_bias: bool = True, qk_scale: float | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (embed_dims // num_heads) ** -0.5
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        """(..., tokens, dims) -> the same."""
        q, k, v = split_heads(self.qkv(x), self.num_heads)
        return self.proj(merge_heads(heads_attention(q, k, v, self.scale, bias)))


class Mlp(nn.Module):
    """The two-linear MLP of timm-style blocks (Swin, MViT, UniFormer): ``fc2(act(fc1(x)))``; dropout is
    training-only."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None,
                 act_cfg: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = build_activation(act_cfg or {"type": "GELU"})
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def self_attention(attn: nn.MultiheadAttention, x: Tensor) -> Tensor:
    """``attn`` with ``x`` (batch, tokens, dims) as query, key and value; the same layout back."""
    seq_first = x.transpose(0, 1)
    return attn(seq_first, seq_first, seq_first, need_weights=False)[0].transpose(0, 1)


class MultiheadAttention(nn.Module):
    """mmcv's ``MultiheadAttention`` (batch-first): ``identity + attn(query)``, where ``identity`` is
    the query itself unless the layer passes its own (pre-norm layers pass their input)."""

    def __init__(self, embed_dims: int, num_heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dims, num_heads)

    def forward(self, query: Tensor, identity: Tensor | None = None) -> Tensor:
        return (query if identity is None else identity) + self_attention(self.attn, query)


class _DividedAttention(nn.Module):
    """A pre-normed attention over part of the tokens ``[cls, (patch, frame) ...]`` (frame-minor) of
    ``num_frames`` frames, adding its own shortcut."""

    def __init__(self, embed_dims: int, num_heads: int, num_frames: int,
                 norm_cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.num_frames = num_frames
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = nn.MultiheadAttention(embed_dims, num_heads)


class DividedTemporalAttentionWithNorm(_DividedAttention):
    """MMAction2's temporal half of divided space-time attention: each patch position attends over the
    frames, through ``temporal_fc``, added to its tokens; the class token passes unchanged."""

    def __init__(self, embed_dims: int, num_heads: int, num_frames: int,
                 norm_cfg: Mapping[str, Any]) -> None:
        super().__init__(embed_dims, num_heads, num_frames, norm_cfg)
        self.temporal_fc = nn.Linear(embed_dims, embed_dims)

    def forward(self, query: Tensor, identity: None = None) -> Tensor:
        cls_token, tokens = query[:, :1], query[:, 1:]
        batches, num_tokens, dims = tokens.shape
        per_patch = self.norm(tokens.reshape(-1, self.num_frames, dims))  # (batch * patches, frames, dims)
        res = self.temporal_fc(self_attention(self.attn, per_patch)).reshape(batches, num_tokens, dims)
        return torch.cat((cls_token, tokens + res), 1)


class DividedSpatialAttentionWithNorm(_DividedAttention):
    """MMAction2's spatial half of divided space-time attention: within each frame the class token and
    the frame's patches attend to each other; the class token's results are averaged over the frames;
    all is added to the input."""

    def forward(self, query: Tensor, identity: None = None) -> Tensor:
        batches, num_tokens, dims = query.shape
        frames = self.num_frames
        patches = (num_tokens - 1) // frames
        cls_tokens = query[:, :1].expand(batches, frames, dims).reshape(batches * frames, 1, dims)
        per_frame = query[:, 1:].reshape(batches, patches, frames, dims).transpose(1, 2)
        per_frame = torch.cat((cls_tokens, per_frame.reshape(batches * frames, patches, dims)), 1)
        res = self_attention(self.attn, self.norm(per_frame))  # (batch * frames, 1 + patches, dims)
        cls_res = res[:, 0].reshape(batches, frames, dims).mean(1, keepdim=True)
        patch_res = res[:, 1:].reshape(batches, frames, patches, dims).transpose(1, 2)
        return query + torch.cat((cls_res, patch_res.reshape(batches, patches * frames, dims)), 1)


class FFN(nn.Module):
    """mmcv's ``FFN`` (``num_fcs`` linears with the activation between them) plus its identity (unless
    ``add_identity=False``); with ``norm_cfg``, MMAction2's ``FFNWithNorm``: the input is normalised
    first, the identity is not."""

    def __init__(self, embed_dims: int, feedforward_channels: int, num_fcs: int = 2,
                 act_cfg: Mapping[str, Any] | None = None, norm_cfg: Mapping[str, Any] | None = None,
                 add_identity: bool = True) -> None:
        super().__init__()
        act = build_activation(act_cfg or {"type": "ReLU", "inplace": True})
        dims = [embed_dims] + [feedforward_channels] * (num_fcs - 1)
        hidden = [nn.Sequential(nn.Linear(cin, cout), act) for cin, cout in zip(dims, dims[1:])]
        self.layers = nn.Sequential(*hidden, nn.Linear(feedforward_channels, embed_dims))
        self.norm = nn.Identity() if norm_cfg is None else build_norm_layer(norm_cfg, embed_dims)[1]
        self.add_identity = add_identity

    def forward(self, x: Tensor, identity: Tensor | None = None) -> Tensor:
        out = self.layers(self.norm(x))
        return ((x if identity is None else identity) + out) if self.add_identity else out


class BaseTransformerLayer(nn.Module):
    """mmcv's ``BaseTransformerLayer`` with self-attentions, norms and FFNs run in ``operation_order``
(``'self_attn'``, ``'norm'``, ``'ffn'``; no cross-attention).

    When the order starts with ``'norm'`` (pre-norm), each attention and FFN adds the layer's last
    un-normalised value as its identity; otherwise each adds its own input (or its own shortcut).
    """

    def __init__(self, attentions: Sequence[nn.Module], ffns: Sequence[nn.Module], operation_order: Sequence[str],
                 norms: Iterable[nn.Module] = ()) -> None:
        super().__init__()
        self.operation_order = tuple(operation_order)
        self.pre_norm = self.operation_order[0] == "norm"
        self.attentions = nn.ModuleList(attentions)
        self.ffns = nn.ModuleList(ffns)
        self.norms = nn.ModuleList(norms)

    def forward(self, query: Tensor) -> Tensor:
        modules = {"self_attn": iter(self.attentions), "norm": iter(self.norms), "ffn": iter(self.ffns)}
        identity = query
        for operation in self.operation_order:
            module = next(modules[operation])
            if operation == "norm":
                query = module(query)
                continue
            query = module(query, identity if self.pre_norm else None)
            if operation == "self_attn":
                identity = query
        return query


class TransformerLayerSequence(nn.Module):
    """mmcv's ``TransformerLayerSequence``: its ``layers`` one after the other."""

    def __init__(self, layers: Iterable[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
