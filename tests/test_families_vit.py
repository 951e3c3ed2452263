"""MMAction2 1.x's ViT backbones (VideoMAE's ``VisionTransformer``, ``UniFormerV2``): each part against an
independent statement of what 1.2.0 computes, the fast path equal to the plain model, per-view rows and
refusals, on small randomised models."""
from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import bf16_cosine, fast_path, randomize_, rel_error
from featx.errors import UserError
from featx.registry import MODELS

# Small models: 2 layers of 64 dims over 32x32 views (2x2 patches of 16).
SMALL = {
    "vit": dict(type="VisionTransformer", img_size=32, patch_size=16, embed_dims=64, depth=2, num_heads=4,
                num_frames=4, tubelet_size=2, norm_cfg=dict(type="LN", eps=1e-6)),
    "uniformerv2": dict(type="UniFormerV2", input_resolution=32, patch_size=16, width=64, layers=3, heads=4, t_size=4,
                        return_list=[1, 2], n_layers=2, n_dim=64, n_head=4, clip_pretrained=False),
}
SHAPE = (2, 3, 3, 4, 32, 32)  # 2 videos of 3 views of 4 frames


@functools.cache
def small_model(name: str, **changes: Any) -> nn.Module:
    """A Recognizer3D over the small ``name`` backbone, randomised; built once, so tests must not modify it."""
    return randomize_(MODELS.build({"type": "Recognizer3D", "backbone": {**SMALL[name], **changes}}).eval())


def small_input(seed: int = 0) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q * scale @ k^T) @ v, as 1.x writes it; (batch, heads, tokens, head_dims)."""
    return ((q * scale) @ k.transpose(-2, -1)).softmax(-1) @ v


@pytest.mark.parametrize("qk_scale", [None, 0.1])
@torch.no_grad()
def test_vit_attention_is_qv_biased_scaled_softmax_attention(qk_scale: float | None) -> None:
    attn = small_model("vit", qk_scale=qk_scale).backbone.blocks[0].attn
    x = torch.randn(2, 9, 64, generator=torch.Generator().manual_seed(1))
    bias = torch.cat((attn.q_bias, torch.zeros(64), attn.v_bias))
    q, k, v = (x @ attn.qkv.weight.T + bias).reshape(2, 9, 3, 4, 16).permute(2, 0, 3, 1, 4)
    out = reference_attention(q, k, v, qk_scale or 16 ** -0.5).transpose(1, 2).reshape(2, 9, 64)
    assert rel_error(attn(x), attn.proj(out)) < 1e-5


@torch.no_grad()
def test_vit_without_qkv_bias_has_no_bias_parameters() -> None:
    attn = small_model("vit", qkv_bias=False).backbone.blocks[0].attn
    assert [k for k, _ in attn.named_parameters()] == ["qkv.weight", "proj.weight", "proj.bias"]


def test_vit_position_table_is_the_sine_cosine_table() -> None:
    backbone = MODELS.build(SMALL["vit"])
    positions, dims = 8, 64  # 2 tubelets of 2x2 patches
    angle = np.arange(positions)[:, None] / np.power(10000.0, 2 * (np.arange(dims) // 2) / dims)
    table = np.where(np.arange(dims) % 2 == 0, np.sin(angle), np.cos(angle)).astype(np.float32)
    assert "pos_embed" in backbone.state_dict()  # a checkpoint's table is the one used
    np.testing.assert_allclose(backbone.pos_embed[0].numpy(), table, rtol=0, atol=1e-6)


@torch.no_grad()
def test_vit_block_is_a_pre_norm_encoder_layer_and_mean_pooled_through_fc_norm() -> None:
    backbone = small_model("vit").backbone
    x = small_input()[0]  # 3 views
    tokens = backbone.patch_embed.projection(x).flatten(2).transpose(1, 2) + backbone.pos_embed
    for block in backbone.blocks:
        tokens = tokens + block.attn(block.norm1(tokens))
        hidden = F.gelu(F.linear(block.norm2(tokens), block.mlp.layers[0][0].weight, block.mlp.layers[0][0].bias))
        tokens = tokens + F.linear(hidden, block.mlp.layers[1].weight, block.mlp.layers[1].bias)
    assert rel_error(backbone(x), backbone.fc_norm(tokens.mean(1))) < 1e-5


@torch.no_grad()
def test_vit_other_outputs() -> None:
    x = small_input()[0]
    first = small_model("vit", use_mean_pooling=False).backbone
    assert first.fc_norm is None and "norm.weight" in first.state_dict()
    assert first(x).shape == (3, 64)
    scaled = small_model("vit", init_values=0.1).backbone
    assert scaled.blocks[0].gamma_1.shape == scaled.blocks[0].gamma_2.shape == (64,)
    maps = small_model("vit", return_feat_map=True)
    assert maps.backbone(x).shape == (3, 64, 2, 2, 2)
    assert maps.forward_views(x[None]).shape == (1, 3, 64)  # average-pooled by the recognizer


@torch.no_grad()
def test_vit_resizes_its_position_table_per_time_step_for_other_grids() -> None:
    backbone = small_model("vit").backbone
    table = backbone.position_table((3, 2)).reshape(2, 3, 2, 64)  # 2 tubelets of 3x2 patches
    second = backbone.pos_embed[0, 4:].reshape(1, 2, 2, 64).permute(0, 3, 1, 2)
    expected = F.interpolate(second, size=(3, 2), mode="bicubic", align_corners=False)[0].permute(1, 2, 0)
    assert rel_error(table[1], expected) < 1e-6
    assert backbone.position_table((2, 2)) is backbone.pos_embed
    assert backbone(torch.randn(1, 3, 4, 48, 32)).shape == (1, 64)


@torch.no_grad()
def test_uniformerv2_decoder_attention_is_torchs_cross_attention() -> None:
    dec = small_model("uniformerv2").backbone.transformer.dec[0]
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(3, 1, 64, generator=gen), torch.randn(3, 20, 64, generator=gen)
    expected = dec.attn(x.transpose(0, 1), y.transpose(0, 1), y.transpose(0, 1), need_weights=False)[0]
    assert rel_error(dec.attention(x, y), expected.transpose(0, 1)) < 1e-5


@torch.no_grad()
def test_uniformerv2_is_clip_frames_and_a_balanced_video_token() -> None:
    """The frames through CLIP layers; the decoder sees each returned layer's tokens plus their dpe; the output
    mixes the decoded token and the frames' mean class token, as 1.x's sequence-first code does."""
    backbone = small_model("uniformerv2").backbone
    x = small_input()[0]  # 3 views of 4 frames
    patches = backbone.conv1(x).flatten(3).permute(0, 2, 3, 1)  # (3, 4, 4 patches, 64)
    cls = backbone.class_embedding.expand(3, 4, 1, 64)
    tokens = backbone.ln_pre(torch.cat((cls, patches), 2) + backbone.positional_embedding).flatten(0, 1)
    transformer, video = backbone.transformer, backbone.transformer.temporal_cls_token.expand(3, 1, 64)
    for i, block in enumerate(transformer.resblocks):
        tokens = block(tokens)
        if i in (1, 2):
            grid = tokens.reshape(3, 4, 5, 64)[:, :, 1:].permute(0, 3, 1, 2).reshape(3, 64, 4, 2, 2)
            pos = transformer.dpe[i - 1](grid).reshape(3, 64, 4, 4).permute(0, 2, 3, 1)
            keys = tokens.reshape(3, 4, 5, 64).clone()
            keys[:, :, 1:] += pos
            video = transformer.dec[i - 1](video, keys.reshape(3, 20, 64))
    weight = torch.sigmoid(transformer.balance)
    expected = transformer.norm((1 - weight) * video[:, 0] + weight * tokens[:, 0].reshape(3, 4, 64).mean(1))
    assert rel_error(backbone(x), expected) < 1e-5


@torch.no_grad()
def test_uniformerv2_temporal_downsample_embeds_pairs_of_frames() -> None:
    backbone = small_model("uniformerv2", temporal_downsample=True, t_size=8).backbone
    assert backbone.conv1.weight.shape == (64, 3, 3, 16, 16) and backbone.transformer.t_size == 4
    assert backbone(torch.randn(2, 3, 8, 32, 32)).shape == (2, 64)


@pytest.mark.parametrize("name", ["vit", "uniformerv2"])
@torch.no_grad()
def test_fast_path_matches_the_plain_model(name: str) -> None:
    plain = small_model(name)
    fast, onednn = fast_path(plain)
    assert not onednn  # no ConvModule to fuse
    x = small_input()
    views = plain.forward_views(x)
    assert views.shape == (2, 3, 64)
    assert rel_error(fast.forward_views(x), views) < 1e-5
    assert rel_error(plain.forward_views(x[:1, 1:]), views[:1, 1:]) < 1e-5  # a view alone gives its own row
    assert torch.equal(plain(x), views.mean(1))


@pytest.mark.parametrize("name", ["vit", "uniformerv2"])
def test_runs_in_bf16_with_linear_weights_stored_in_bf16(name: str, tmp_path) -> None:
    model, cos = bf16_cosine({"type": "Recognizer3D", "backbone": SMALL[name]}, small_input(), tmp_path)
    assert cos >= 0.999
    assert all(m.weight.dtype == torch.bfloat16 for m in model.modules() if isinstance(m, nn.Linear))
    assert all(m.weight.dtype == torch.float32 for m in model.modules() if isinstance(m, nn.LayerNorm))


@pytest.mark.parametrize("name, shape, message", [
    ("uniformerv2", (1, 3, 3, 32, 32), r"^UniFormerV2 takes views that embed to 4 steps of 4 patches "
                                       r"\(t_size, input_resolution=32\), got \(3, 2, 2\)"),
    ("uniformerv2", (1, 3, 4, 48, 32), r"^UniFormerV2 takes views that embed to 4 steps of 4 patches"),
    ("vit", (1, 3, 6, 32, 32), "size of tensor"),  # 1.x fails on other frame counts too
])
@torch.no_grad()
def test_views_the_embeddings_do_not_fit_fail(name: str, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        small_model(name).backbone(torch.zeros(shape))


@pytest.mark.parametrize("name, cfg, message", [
    ("vit", {"num_heads": 5}, "VisionTransformer: embed_dims=64 is not divisible by num_heads=5"),
    ("vit", {"norm_cfg": {"type": "GN"}}, "VisionTransformer: norm_cfg="),
    ("vit", {"pretrained": "mae.pth"}, "VisionTransformer: pretrained='mae.pth' must be None"),
    ("uniformerv2", {"no_lmhra": False}, "UniFormerV2: no_lmhra=False is not supported"),
    ("uniformerv2", {"n_layers": 3}, "UniFormerV2: n_layers=3 is not the length of return_list=[1, 2]"),
    ("uniformerv2", {"n_dim": 32}, "UniFormerV2: width=64 and n_dim=32 must be equal"),
    ("uniformerv2", {"heads": 5}, "UniFormerV2: width=64 / n_dim=64 is not divisible by heads=5"),
])
def test_refusals(name: str, cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match="^" + re.escape(message)):
        MODELS.build({**SMALL[name], **cfg})
