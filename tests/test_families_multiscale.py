"""MMAction2 1.x's multiscale video transformers (Video Swin, MViTv2, UniFormer): the fast path equal to
the plain model, attention through scaled_dot_product_attention equal to its written-out product,
the per-view outputs, the refusals."""
from __future__ import annotations

import functools
import re
from typing import Any

import pytest
import torch
from torch import nn

from helpers import bf16_cosine, fast_path, randomize_, rel_error
from featx.errors import UserError
from featx.models import build_model
from featx.models.backbones.mvit import MultiScaleAttention, relative_positions
from featx.models.backbones.swin import WindowAttention3D, fitted_window, shift_mask, window_partition
from featx.models.backbones.uniformer import CBlock
from featx.registry import MODELS

# Small models of each family: the same kinds of layers as the shipped configs, fewer and narrower.
SMALL = {
    # 28x28 views give 7x7 tokens, padded to 9x9 for 3x3 windows; stage 2 has 4x4 tokens
    "swin": dict(type="SwinTransformer3D", arch={"embed_dims": 16, "depths": [2, 2], "num_heads": [2, 4]},
                 window_size=(2, 3, 3), out_indices=(1,)),
    # 2x8x8 tokens; one downscale to 2x4x4 queries, keys and values strided 1x2x2 first
    "mvit": dict(type="MViT", arch={"embed_dims": 16, "num_layers": 3, "num_heads": 1, "downscale_indices": [1]},
                 spatial_size=32, temporal_size=4, adaptive_kv_stride=(1, 2, 2)),
    "uniformer": dict(type="UniFormer", depth=[1, 1, 1, 1], embed_dim=[16, 32, 64, 64], head_dim=32),
}
INPUTS = {"swin": (1, 2, 3, 4, 28, 28), "mvit": (1, 2, 3, 4, 32, 32), "uniformer": (1, 2, 3, 4, 64, 64)}
FEATURES = {"swin": 32, "mvit": 32, "uniformer": 64}


@functools.cache
def small_model(family: str) -> nn.Module:
    """A randomised Recognizer3D over the family's small backbone; built once, so tests must not modify it."""
    return randomize_(build_model({"type": "Recognizer3D", "backbone": SMALL[family]}))


def small_input(family: str, seed: int = 0) -> torch.Tensor:
    return torch.randn(INPUTS[family], generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", sorted(SMALL))
@torch.no_grad()
def test_fast_path_matches_the_plain_model(family: str) -> None:
    plain = small_model(family)
    fast, _ = fast_path(plain)
    x = small_input(family)
    views = plain.forward_views(x)
    assert views.shape == (1, 2, FEATURES[family])
    assert rel_error(fast.forward_views(x), views) < 1e-5
    assert rel_error(plain.forward_views(x[:, 1:]), views[:, 1:]) < 1e-5  # a view alone gives its own row
    if family == "uniformer":  # every BatchNorm but the last folds into the pointwise conv after it
        norms = [name for name, m in fast.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert norms == ["backbone.norm"]


@pytest.mark.parametrize("family", sorted(SMALL))
def test_runs_in_bf16_with_conv_and_linear_weights_stored_in_bf16(family: str, tmp_path) -> None:
    model, cos = bf16_cosine({"type": "Recognizer3D", "backbone": SMALL[family]}, small_input(family), tmp_path)
    assert cos >= 0.999
    assert all(m.weight.dtype == torch.bfloat16 for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv3d)))
    assert all(m.weight.dtype == torch.float32 for m in model.modules() if isinstance(m, nn.LayerNorm))


@torch.no_grad()
def test_uniformer_norm_folds_into_the_pointwise_conv_after_it() -> None:
    block = randomize_(CBlock(8, mlp_ratio=2.0)).eval()
    x = torch.randn(2, 8, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    expected = block(x)
    fast, _ = fast_path(block)
    assert isinstance(fast.norm1, nn.Identity) and isinstance(fast.norm2, nn.Identity)
    assert rel_error(fast(x), expected) < 1e-5


def written_out_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                          bias: torch.Tensor) -> torch.Tensor:
    return torch.softmax((q * scale) @ k.transpose(-2, -1) + bias, -1) @ v


@torch.no_grad()
def test_swin_window_attention_is_softmax_with_table_bias_and_mask() -> None:
    window = (2, 3, 3)
    attn = randomize_(WindowAttention3D(16, window, 2)).eval()
    x = torch.randn(2, 4, 18, 16, generator=torch.Generator().manual_seed(2))  # 2 maps of 4 windows
    size, shift = (2, 6, 6), (1, 1, 1)
    mask = shift_mask(size, window, shift, torch.device("cpu"))
    assert mask.shape == (4, 18, 18) and set(mask.unique().tolist()) == {-100.0, 0.0}
    index = attn.relative_position_index
    assert index.shape == (18, 18) and int(index.max()) == 3 * 5 * 5 - 1 and torch.equal(index.diagonal(),
                                                                                        index[0, 0].expand(18))
    qkv = attn.qkv(x).reshape(2, 4, 18, 3, 2, 8).permute(3, 0, 1, 4, 2, 5)
    bias = attn.relative_position_bias_table[index.reshape(-1)].reshape(18, 18, 2).permute(2, 0, 1)
    out = written_out_attention(qkv[0], qkv[1], qkv[2], 8 ** -0.5, bias + mask[:, None])
    expected = attn.proj(out.transpose(-3, -2).reshape(2, 4, 18, 16))
    assert rel_error(attn(x, mask), expected) < 1e-5


def test_swin_windows_shrink_to_small_maps_and_partition_in_order() -> None:
    assert fitted_window((16, 7, 7), (8, 7, 7), (4, 3, 3)) == ((8, 7, 7), (4, 0, 0))
    assert fitted_window((4, 56, 56), (8, 7, 7), (4, 3, 3)) == ((4, 7, 7), (0, 3, 3))
    x = torch.arange(2 * 4 * 6).reshape(1, 2, 4, 6, 1)
    windows = window_partition(x, (1, 2, 3))[0, ..., 0]
    assert windows[0].tolist() == [0, 1, 2, 6, 7, 8] and windows[1].tolist() == [3, 4, 5, 9, 10, 11]
    assert windows.shape == (8, 6)


@torch.no_grad()
def test_mvit_attention_adds_decomposed_relative_positions() -> None:
    attn = randomize_(MultiScaleAttention(8, 8, 2, True, {"type": "LN", "eps": 1e-6}, (3, 3, 3), (1, 2, 2), (1, 1, 1),
                                          True, True, (2, 4, 4), True)).eval()
    q = torch.randn(1, 2, 1 + 2 * 2 * 2, 4, generator=torch.Generator().manual_seed(3))  # class + 2x2x2 queries
    bias = attn.position_bias(q, (2, 2, 2), (2, 4, 4))
    assert bias.shape == (1, 2, 9, 33)
    assert not bias[:, :, 0].any() and not bias[:, :, :, 0].any()  # the class token has no position
    tables = [relative_positions(t, qs, ks) for t, qs, ks in zip((attn.rel_pos_t, attn.rel_pos_h, attn.rel_pos_w),
                                                                 (2, 2, 2), (2, 4, 4))]
    queries = [(t, h, w) for t in range(2) for h in range(2) for w in range(2)]
    keys = [(t, h, w) for t in range(2) for h in range(4) for w in range(4)]
    for i, qpos in enumerate(queries):
        for j, kpos in enumerate(keys):
            expected = sum(q[0, :, 1 + i] @ tables[axis][qpos[axis], kpos[axis]] for axis in range(3))
            assert torch.allclose(bias[0, :, 1 + i, 1 + j], expected, atol=1e-5)
    # queries at half the keys' resolution are placed at every other key position
    assert relative_positions(torch.arange(7.0)[:, None], 2, 4)[:, :, 0].tolist() == [[3, 2, 1, 0], [5, 4, 3, 2]]


@torch.no_grad()
def test_mvit_gives_the_class_token_after_the_last_norm() -> None:
    model = small_model("mvit")
    backbone = model.backbone
    x = small_input("mvit")[0]
    tokens, size = backbone.patch_embed(x)
    tokens = torch.cat((backbone.cls_token.expand(2, -1, -1), tokens), 1)
    for block in backbone.blocks:
        tokens, size = block(tokens, size)
    assert size == (2, 4, 4)
    assert rel_error(backbone(x), backbone.norm1(tokens)[:, 0]) < 1e-6
    patches = randomize_(MODELS.build(SMALL["mvit"] | {"output_cls_token": False}))
    patches.load_state_dict(backbone.state_dict())
    expected = backbone.norm1(tokens)[:, 1:].transpose(1, 2).reshape(2, 32, 2, 4, 4)
    assert rel_error(patches.eval()(x), expected) < 1e-6


@pytest.mark.parametrize("family, cfg, message", [
    ("swin", {"arch": "huge"}, "SwinTransformer3D: arch='huge' is not one of tiny, small, base, large, t, s, b, l"),
    ("swin", {"arch": {"embed_dims": 16, "depths": [2]}},
     "SwinTransformer3D: arch={'embed_dims': 16, 'depths': [2]} must be a name or a dict of embed_dims, depths, num_heads"),
    ("swin", {"arch": {"embed_dims": 16, "depths": [2], "num_heads": [1, 2]}},
     "SwinTransformer3D: arch has 1 depths but 2 num_heads"),
    ("mvit", {"arch": {"embed_dims": 16, "num_layers": 2, "num_heads": 1, "downscale_indices": [1], "depth": 2}},
     "MViT: arch={"),
    ("swin", {"out_indices": (2,)}, "SwinTransformer3D: out_indices=[2] must name stages 0 to 1"),
    ("swin", {"window_size": (2, 3)}, "SwinTransformer3D: window_size=(2, 3) must be a positive int or three"),
    ("swin", {"arch": {"embed_dims": 16, "depths": [1], "num_heads": [3]}, "out_indices": (0,)},
     "SwinTransformer3D: stage 0 has 16 channels, not divisible by num_heads=3"),
    ("swin", {"norm_cfg": {"type": "GN"}}, "SwinTransformer3D: norm_cfg="),
    ("swin", {"pretrained": "swin.pth"}, "SwinTransformer3D: pretrained='swin.pth' must be None"),
    ("mvit", {"arch": "huge"}, "MViT: arch='huge' is not one of tiny, small, base, large"),
    ("mvit", {"out_scales": 2}, "MViT: out_scales=2 must name scales 0 to 1"),
    ("mvit", {"with_cls_token": False}, "MViT: output_cls_token=True needs with_cls_token=True"),
    ("mvit", {"patch_cfg": {"kernel_size": 4, "padding": "corner"}}, "MViT: patch_cfg padding='corner'"),
    ("mvit", {"pretrained": "mvit.pth"}, "MViT: pretrained='mvit.pth' must be None"),
    ("uniformer", {"depth": [1, 1, 1]}, "UniFormer: depth=[1, 1, 1] and embed_dim=[16, 32, 64, 64] must give 4"),
    ("uniformer", {"head_dim": 48}, "UniFormer: embed_dim 64 is not a multiple of head_dim=48"),
    ("uniformer", {"pretrained": "uniformer_small_in1k"}, "UniFormer: pretrained='uniformer_small_in1k' must be"),
])
def test_refusals(family: str, cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match="^" + re.escape(message)):
        MODELS.build(SMALL[family] | cfg)
