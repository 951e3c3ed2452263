"""The 3D families: MMAction2's layouts from the shipped configs, the fast path equal to the plain model,
the refusals."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from helpers import ROOT, case_model_cfg, fast_path, randomize_, rel_error
from featx.config import read_config
from featx.errors import UserError
from featx.models import build_model
from featx.models.backbones.resnet2plus1d import Conv2plus1d
from featx.models.necks.tpn import TPN
from featx.registry import MODELS

ONE_BLOCK = (1, 1, 1, 1)  # one block a stage: the same kinds of layers, fewer of them
SLOWFAST_SMALL = {"model.backbone.slow_pathway.stage_blocks": ONE_BLOCK,
                  "model.backbone.fast_pathway.stage_blocks": ONE_BLOCK}


@pytest.mark.parametrize("case, changes, frames", [
    ("slowfast_r50_8x8_raw", SLOWFAST_SMALL, 16),
    ("r2plus1d_r34_video", {"model.backbone.stage_blocks": ONE_BLOCK}, 8),
    ("ircsn_r50_raw", {"model.backbone.stage_blocks": ONE_BLOCK}, 8),
    ("ipcsn_r50_raw", {"model.backbone.stage_blocks": ONE_BLOCK}, 8),
    ("x3d_s_raw", {}, 4),
    ("tpn_slowonly_raw", {"model.backbone.stage_blocks": ONE_BLOCK}, 8),
    ("c2d_r50_v1", {"model.backbone.depth": 18}, 4),  # 1.x's C2D: 2D convs on every frame, 3D max pools
])
@torch.no_grad()
def test_folded_channels_last_onednn_model_matches_the_plain_one(case: str, changes: dict[str, Any],
                                                                 frames: int) -> None:
    plain = randomize_(build_model(case_model_cfg(case, **changes)))
    fast, onednn = fast_path(plain)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fast.modules())
    # R(2+1)D has no plain Conv3d ConvModule for oneDNN to run
    assert onednn == (torch.backends.mkldnn.is_available() and not case.startswith("r2plus1d"))
    x = torch.randn((1, 2, 3, frames, 32, 32), generator=torch.Generator().manual_seed(0))
    assert rel_error(fast(x), plain(x)) < 1e-5


@torch.no_grad()
def test_slowfast_pathways_see_every_nth_frame_and_are_concatenated() -> None:
    model = build_model(case_model_cfg("slowfast_r50_8x8_raw", **SLOWFAST_SMALL))
    backbone = model.backbone  # resample_rate 4, speed_ratio 4: the fast pathway sees every frame
    seen: dict[str, torch.Tensor] = {}

    def recording(name: str, stem: Any) -> Any:
        def stem_input_kept(x: torch.Tensor) -> torch.Tensor:
            seen[name] = x
            return stem(x)
        return stem_input_kept

    for name in ("slow_path", "fast_path"):
        path = getattr(backbone, name)
        path.stem = recording(name, path.stem)
    x = torch.arange(16.0).reshape(1, 1, 16, 1, 1).expand(1, 3, 16, 32, 32).contiguous()
    slow, fast = backbone(x)
    assert seen["slow_path"][0, 0, :, 0, 0].tolist() == [0.0, 4.0, 8.0, 12.0]
    assert torch.equal(seen["fast_path"], x)
    assert (slow.shape[1:3], fast.shape[1:3]) == ((2048, 4), (256, 16))
    assert model(x[None]).shape == (1, 2304)


def test_conv2plus1d_middle_width_and_folding() -> None:
    conv = Conv2plus1d(64, 128, (3, 3, 3), 2, 1, bias=False)
    assert conv.conv_s.out_channels == int(3 * 64 * 128 * 9 / (64 * 9 + 3 * 128)) == 230
    assert (conv.conv_s.stride, conv.conv_t.stride, conv.conv_t.padding) == ((1, 2, 2), (2, 1, 1), (1, 0, 0))
    assert conv.bn_s.eps == 1e-5  # its own norm_cfg, not the backbone's
    assert conv.output_conv is conv.conv_t


@torch.no_grad()
def test_tpn_neck_returns_the_fused_pyramid() -> None:
    neck = MODELS.build(case_model_cfg("tpn_slowonly_raw")["neck"]).eval()
    assert isinstance(neck, TPN)
    out = neck((torch.randn(1, 1024, 8, 4, 4), torch.randn(1, 2048, 8, 2, 2)))
    assert out.shape == (1, 2048, 1, 2, 2)
    with pytest.raises(ValueError, match="several backbone stages"):
        neck(torch.randn(1, 2048, 8, 2, 2))


SLOWFAST = "slowfast_r50_4x16_video"
TPN_CASE = "tpn_slowonly_raw"


@pytest.mark.parametrize("case, changes, message", [
    (SLOWFAST, {"model.backbone.fast_pathway.type": "bninception"}, "fast_pathway type 'bninception'"),
    (SLOWFAST, {"model.backbone.slow_pathway.with_pool1": False}, "with_pool1=False"),
    (SLOWFAST, {"model.backbone.slow_pathway.unknown_arg": 1}, "unknown_arg"),
    (SLOWFAST, {"model.backbone.speed_ratio": 16}, "resample_rate=8 must be a multiple of speed_ratio=16"),
    ("slowonly_r50_8x8_raw", {"model.backbone.lateral": True}, "lateral=True"),
    ("i3d_r50_video", {"model.backbone.act_cfg.type": "LeakyReLU"}, "act_cfg"),
    ("r2plus1d_r34_video", {"model.backbone.conv_cfg.type": "Conv3d"}, "Conv2plus1d"),
    ("ircsn_r50_raw", {"model.backbone.depth": 34}, "depth=34"),
    ("ircsn_r50_raw", {"model.backbone.bottleneck_mode": "xy"}, "bottleneck_mode='xy'"),
    ("x3d_s_raw", {"model.backbone.se_style": "third"}, "se_style='third'"),
    ("x3d_s_raw", {"model.backbone.se_ratio": 0}, "se_ratio=0"),
    ("x3d_s_raw", {"model.backbone.act_cfg.type": "Swish"}, "act_cfg"),
    ("x3d_s_raw", {"model.backbone.num_stages": 5}, "num_stages=5"),
    ("x3d_s_raw", {"model.backbone.spatial_strides": (2, 2)}, "spatial_strides"),
    (TPN_CASE, {"model.neck.flow_type": "sideways"}, "flow_type='sideways'"),
    (TPN_CASE, {"model.neck.level_fusion_cfg": None}, "level_fusion_cfg=None"),
    (TPN_CASE, {"model.neck.temporal_modulation_cfg.downsample_scales": (8,)}, "downsample_scales"),
    (TPN_CASE, {"model.neck.level_fusion_cfg.mid_channels": (1024,)}, "one entry per level"),
    (TPN_CASE, {"model.neck.downsample_cfg.downsample_position": "during"}, "downsample_position='during'"),
    (TPN_CASE, {"model.neck.upsample_cfg.size_factor": 2}, "upsample_cfg: .*size_factor"),
    (TPN_CASE, {"model.neck.spatial_modulation_cfg.channels": 2}, "spatial_modulation_cfg: .*channels"),
])
def test_refusals(case: str, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message), torch.device("meta"):
        build_model(case_model_cfg(case, **changes))


@torch.no_grad()
def test_c2d_halves_time_after_its_first_stage_and_gives_the_last_stage_only() -> None:
    model = build_model(case_model_cfg("c2d_r50_v1", **{"model.backbone.depth": 18}))
    out = model.backbone(torch.randn(2, 3, 8, 64, 64))
    assert tuple(out.shape) == (2, 512, 4, 2, 2)  # 64 px: /2 stem, 3x3 pool of stride 2 without padding (32 -> 15), /8 stages
    with pytest.raises(UserError, match="C2D: out_indices=.*last stage only"):
        build_model(case_model_cfg("c2d_r50_v1", **{"model.backbone.out_indices": (2, 3)}))


OMNI_CONFIG = "mmaction2-1.x/recognition/omnisource/slowonly_r50_8xb16-8x8x1-256e_imagenet-kinetics400-rgb.py"


def omni_resnet_layout() -> dict[str, tuple[int, ...]]:
    """1.2.0's ``OmniResNet()`` parameter and buffer names and shapes, as its ``resnet_omni.py`` builds them:
    ``conv1``/``bn1`` stem; per stage ``layerN.i.conv1..3``/``bn1..3``, a ``downsample`` (conv, BN) on each
    stage's first block; temporal kernel 1 in ``layer1``/``layer2``, 3 in ``layer3``/``layer4``."""
    layout: dict[str, tuple[int, ...]] = {}

    def bn(name: str, channels: int) -> None:
        for buffer in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{name}.{buffer}"] = (channels,)
        layout[f"{name}.num_batches_tracked"] = ()

    layout["conv1.weight"] = (64, 3, 1, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for stage, (blocks, kernel) in enumerate(zip((3, 4, 6, 3), (1, 1, 3, 3))):
        planes = 64 * 2**stage
        for i in range(blocks):
            block = f"layer{stage + 1}.{i}"
            layout[f"{block}.conv1.weight"] = (planes, inplanes, kernel, 1, 1)
            layout[f"{block}.conv2.weight"] = (planes, planes, 1, 3, 3)
            layout[f"{block}.conv3.weight"] = (planes * 4, planes, 1, 1, 1)
            for n, channels in ((1, planes), (2, planes), (3, planes * 4)):
                bn(f"{block}.bn{n}", channels)
            if i == 0:
                layout[f"{block}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1, 1)
                bn(f"{block}.downsample.1", planes * 4)
            inplanes = planes * 4
    return {f"backbone.{k}": v for k, v in layout.items()}


@torch.no_grad()
def test_omni_resnet_has_1x_names_and_is_a_slowonly_resnet_on_video(tmp_path) -> None:
    """RecognizerOmni + OmniResNet from the shipped config: 1.2.0's names and shapes, a checkpoint of them
    loads as it is (OmniHead's keys unused), and on video it computes what featx's SlowOnly ResNet-50 (held
    to 1.x's by the golden case) computes with the same weights under ConvModule names."""
    from featx.extraction import prepare_model
    from featx.models.backbones.resnet import torchvision_resnet_to_mmaction

    model_cfg = read_config(ROOT / "configs" / OMNI_CONFIG).model
    assert model_cfg["type"] == "RecognizerOmni" and model_cfg["backbone"] == {"type": "OmniResNet"}
    plain = randomize_(build_model(model_cfg))
    assert {k: tuple(t.shape) for k, t in plain.state_dict().items()} == omni_resnet_layout()
    state = {**plain.state_dict(), "cls_head.fc3d.2.weight": torch.zeros(400, 2048)}
    torch.save({"state_dict": state}, tmp_path / "omni.pth")
    model, loaded = prepare_model(model_cfg, str(tmp_path / "omni.pth"), torch.device("cpu"), dialect="1.x")
    assert loaded.unused == ("cls_head.fc3d.2.weight",)

    slowonly = build_model(case_model_cfg("slowonly_r50_v1")).eval()
    backbone = {k.removeprefix("backbone."): v for k, v in plain.state_dict().items()}
    slowonly.backbone.load_state_dict(torchvision_resnet_to_mmaction(backbone))
    x = torch.randn((1, 2, 3, 4, 32, 32), generator=torch.Generator().manual_seed(0))
    assert model(x).shape == (1, 2048)
    assert rel_error(model(x), slowonly(x)) < 1e-5
    assert rel_error(plain(x), slowonly(x)) < 1e-6
