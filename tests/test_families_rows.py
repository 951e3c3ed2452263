"""Backbones whose output is one row per view (TimeSformer, C3D): MMAction2's state-dict layouts, the
fast path equal to the plain model, per-view rows, refusals, and a view the model cannot take
failing only its own video."""
from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from helpers import ROOT, fast_path, randomize_, rel_error
from featx.config import read_config
from featx.data import Sample
from featx.errors import UserError
from featx.extraction import FeatureExtractor
from featx.models import build_model
from featx.models.layers import ConvModule
from featx.registry import MODELS

TIMESFORMER = "configs/recognition/timesformer/timesformer_{}_8x32x1_15e_kinetics400_rgb.py"
C3D = "configs/recognition/c3d/c3d_sports1m_16x1x1_45e_ucf101_rgb.py"
# Small TimeSformers: 2 layers of 64 dims over 2 frames of 2x2 patches.
SMALL_TIMESFORMER = {f"model.backbone.{k}": v for k, v in dict(
    embed_dims=64, num_heads=4, num_transformer_layers=2, img_size=32, patch_size=16, num_frames=2).items()}
# C3D on 16x32x32 views: pool5 gives 512 x 1 x 2 x 2 values.
SMALL_C3D = {"model.backbone.out_dim": 2048}
SMALL_INPUTS = {"timesformer": (2, 3, 3, 2, 32, 32), "c3d": (1, 2, 3, 16, 32, 32)}


@functools.cache
def small_model(name: str) -> nn.Module:
    """``c3d`` or a TimeSformer (``divST``, ``jointST``, ``spaceOnly``) from its shipped config with small
    sizes, randomised; built once, so tests must not modify it."""
    if name == "c3d":
        cfg = read_config(ROOT / C3D, SMALL_C3D)
    else:
        cfg = read_config(ROOT / TIMESFORMER.format(name), SMALL_TIMESFORMER)
    return randomize_(build_model(cfg.model))


def small_input(name: str, seed: int = 0) -> torch.Tensor:
    return torch.randn(SMALL_INPUTS["c3d" if name == "c3d" else "timesformer"],
                       generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("attention", ["jointST", "spaceOnly"])
def test_other_timesformer_configs_have_mmcv_layer_names(attention: str) -> None:
    keys = list(small_model(attention).state_dict())
    assert ("backbone.time_embed" in keys) == (attention == "jointST")
    layer = [k.removeprefix("backbone.transformer_layers.layers.0.") for k in keys
             if k.startswith("backbone.transformer_layers.layers.0.")]
    assert layer == [
        "attentions.0.attn.in_proj_weight", "attentions.0.attn.in_proj_bias", "attentions.0.attn.out_proj.weight",
        "attentions.0.attn.out_proj.bias", "ffns.0.layers.0.0.weight", "ffns.0.layers.0.0.bias",
        "ffns.0.layers.1.weight", "ffns.0.layers.1.bias", "norms.0.weight", "norms.0.bias", "norms.1.weight",
        "norms.1.bias",
    ]


@pytest.mark.parametrize("name", ["divST", "jointST", "spaceOnly", "c3d"])
@torch.no_grad()
def test_fast_path_matches_the_plain_model(name: str) -> None:
    plain = small_model(name)
    fast, onednn = fast_path(plain)
    assert onednn == (name == "c3d" and torch.backends.mkldnn.is_available())
    assert all(m.onednn == onednn for m in fast.modules() if isinstance(m, ConvModule))
    x = small_input(name)
    views = plain.forward_views(x)
    assert views.shape == x.shape[:2] + ((4096,) if name == "c3d" else (64,))
    assert rel_error(fast.forward_views(x), views) < 1e-5
    assert rel_error(plain.forward_views(x[:1, 1:]), views[:1, 1:]) < 1e-5  # a view alone gives its own row
    assert torch.equal(plain(x), views.mean(1))


@torch.no_grad()
def test_timesformer_space_only_averages_frames_before_the_norm() -> None:
    model = small_model("spaceOnly").backbone
    x = small_input("spaceOnly")[0]  # 3 views of 2 frames
    frames = x.transpose(1, 2).reshape(6, 3, 1, 32, 32)  # each frame a view of its own
    tokens = model.transformer_layers(torch.cat((model.cls_token.expand(6, -1, -1),
                                                 model.patch_embed(frames)), 1) + model.pos_embed)
    expected = model.norm(tokens[:, 0].reshape(3, 2, -1).mean(1))
    assert rel_error(model(x), expected) < 1e-6


@torch.no_grad()
def test_timesformer_joint_layers_are_torchs_pre_norm_encoder_layers() -> None:
    sequence = small_model("jointST").backbone.transformer_layers
    x = torch.randn(2, 9, 64, generator=torch.Generator().manual_seed(0))
    expected = x
    for layer in sequence.layers:
        torch_layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=256, dropout=0.0, activation="gelu",
                                                 layer_norm_eps=1e-6, batch_first=True, norm_first=True).eval()
        parts = {"self_attn": layer.attentions[0].attn, "linear1": layer.ffns[0].layers[0][0],
                 "linear2": layer.ffns[0].layers[1], "norm1": layer.norms[0], "norm2": layer.norms[1]}
        for name, part in parts.items():
            getattr(torch_layer, name).load_state_dict(part.state_dict())
        expected = torch_layer(expected)
    assert rel_error(sequence(x), expected) < 1e-5


@pytest.mark.parametrize("cfg, message", [
    ({"attention_type": "divided_space"}, "attention_type='divided_space' is not one of"),
    ({"transformer_layers": {"type": "TransformerLayerSequence"}}, "transformer_layers must be None"),
    ({"img_size": 40}, "img_size=40 is not a whole number of patch_size=16 patches"),
    ({"num_heads": 5}, "embed_dims=64 is not divisible by num_heads=5"),
    ({"norm_cfg": {"type": "GN"}}, "norm_cfg="),
    ({"pretrained": "vit.pth"}, "pretrained='vit.pth' must be None"),
])
def test_timesformer_refusals(cfg: dict[str, Any], message: str) -> None:
    backbone = dict(type="TimeSformer", num_frames=2, img_size=32, patch_size=16, embed_dims=64, num_heads=4,
                    num_transformer_layers=1) | cfg
    with pytest.raises(UserError, match="^TimeSformer: " + re.escape(message)):
        MODELS.build(backbone)


@pytest.mark.parametrize("shape", [(1, 3, 3, 32, 32), (1, 3, 2, 48, 32), (1, 3, 2, 16, 32)])
@torch.no_grad()
def test_timesformer_refuses_other_sizes_than_its_embeddings(shape: tuple[int, ...]) -> None:
    backbone = small_model("divST").backbone
    backbone(torch.zeros(1, 3, 2, 47, 40))  # 2x2 patches of 16, as MMAction2 takes it
    with pytest.raises(RuntimeError, match=r"^TimeSformer takes 2 frames of 32x32 pixels \(num_frames, img_size\), got"):
        backbone(torch.zeros(shape))


@torch.no_grad()
def test_c3d_fails_on_views_it_cannot_take() -> None:
    backbone = small_model("c3d").backbone
    with pytest.raises(RuntimeError, match="too small"):
        backbone(torch.zeros(1, 3, 16, 8, 32))  # as MMAction2 on a 171x96 frame's 112 crop
    with pytest.raises(RuntimeError, match=r"^C3D: a 16x64x64 \(TxHxW\) view gives 4608 values after pool5, fc6 "):
        backbone(torch.zeros(1, 3, 16, 64, 64))


def sample(index: int, imgs: np.ndarray) -> Sample:
    """A decoded one-clip, one-crop sample as the data loader gives it."""
    return Sample(index, f"v{index}.mp4", imgs, np.arange(16), clip_len=16, num_crops=1, total_frames=16, avg_fps=25.0)


@torch.no_grad()
def test_a_view_the_model_cannot_take_fails_only_its_video() -> None:
    model = small_model("c3d")
    extractor = FeatureExtractor(model, torch.device("cpu"))
    good, small = np.zeros((1, 3, 16, 32, 32), np.float32), np.zeros((1, 3, 16, 8, 32), np.float32)
    results = extractor([sample(0, good), sample(1, small), sample(2, good)])
    assert [r.index for r in results] == [0, 1, 2]
    assert results[0].error is None and results[0].feature.shape == (4096,)
    assert results[2].error is None
    assert results[1].feature is None
    assert results[1].error.startswith("the model cannot run on this input: ")
    assert "too small" in results[1].error and "\n" not in results[1].error


class OutOfMemory(nn.Module):
    def forward_views(self, imgs: torch.Tensor) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")


def test_out_of_memory_with_one_view_group_fails_the_video_with_that_reason() -> None:
    extractor = FeatureExtractor(OutOfMemory(), torch.device("cpu"))
    [result] = extractor([sample(0, np.zeros((1, 3, 16, 32, 32), np.float32))])
    assert result.error == "out of memory on cpu with one view group (1 view per forward): CUDA out of memory"
