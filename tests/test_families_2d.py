"""2D backbones that mix neighbouring views (TSM, MobileNetV2-TSM, TANet) and TRN's plain ResNet:
MMAction2 layouts from the shipped configs, the temporal shift's arithmetic, the fast path, the
view-group rule and the refusals."""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from helpers import ROOT, case_model_cfg, encode_video, fast_path, gradient_frames, randomize_, rel_error
from featx.config import read_config
from featx.errors import UserError
from featx.models import build_model, fuse_conv_bn
from featx.models.backbones.mobilenet_v2 import make_divisible
from featx.models.backbones.resnet_tsm import temporal_shift
from featx.runner import RunOptions, extract_features



def shipped_model_cfg(config: str) -> dict[str, Any]:
    return read_config(ROOT / "configs" / "recognition" / config).model


def with_backbone(model: dict[str, Any], **changes: Any) -> dict[str, Any]:
    model = copy.deepcopy(model)
    model["backbone"].update(changes)
    return model


def test_temporal_shift_moves_channels_between_frames() -> None:
    x = torch.arange(2 * 3 * 8 * 2 * 1, dtype=torch.float32).reshape(6, 8, 2, 1)  # 2 clips of 3 frames
    out = temporal_shift(x, num_segments=3, shift_div=4).reshape(2, 3, 8, 2, 1)
    clips = x.reshape(2, 3, 8, 2, 1)
    assert torch.equal(out[:, :2, :2], clips[:, 1:, :2])  # first fold: from the next frame
    assert torch.equal(out[:, 1:, 2:4], clips[:, :2, 2:4])  # second fold: from the previous frame
    assert torch.equal(out[:, :, 4:], clips[:, :, 4:])
    assert not out[:, 2, :2].any() and not out[:, 0, 2:4].any()  # a clip's ends: zeros, not a neighbour clip's
    # the ends are made as v - v from the clip's first (or last) frame, as MMAction2 does: an infinite
    # value there gives NaN, not 0
    x[0, 0] = float("inf")
    assert temporal_shift(x, 3, 4)[2, 0].isnan().all()


# BatchNorms folded; ConvModules run by oneDNN (ReLU or no activation, and not behind a temporal shift)
@pytest.mark.parametrize("case, folded, onednn", [("tsm_r50_video", 53, 37), ("tsm_r50_nl_raw", 58, 57),
                                                  ("tsm_mobilenetv2_dense_raw", 52, 17),
                                                  ("tanet_r50_dense_raw", 69, 53)])
@torch.no_grad()
def test_folded_channels_last_model_matches_the_plain_one(case: str, folded: int, onednn: int) -> None:
    model = randomize_(build_model(case_model_cfg(case)))
    for value in model.state_dict().values():
        if value.dim() > 1:  # halved: activations stay small, so no softmax, sigmoid or ReLU6 saturates and
            value.mul_(0.5)  # amplifies float32 rounding (with these weights plain float32 is within 3e-7 of float64)
    norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    fast, with_onednn = fast_path(model)
    assert norms - sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fast.modules()) == folded
    if with_onednn:
        assert sum(getattr(m, "onednn", False) for m in fast.modules()) == onednn
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last)
               for m in fast.modules() if isinstance(m, nn.Conv2d))
    x = torch.randn(1, 8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert rel_error(fast.forward_views(x), model.forward_views(x)) < 1e-5


def test_tanet_folds_the_local_branch_only() -> None:
    tam = fuse_conv_bn(build_model(case_model_cfg("tanet_r50_dense_raw"))).backbone.layer1[0].tam
    assert isinstance(tam.L[1], nn.Identity) and tam.L[0].bias is not None
    assert isinstance(tam.G[1], nn.BatchNorm1d)  # Linear + BatchNorm1d: not a conv, left as it is


@torch.no_grad()
def test_views_must_come_in_whole_groups_and_chunks_keep_them() -> None:
    cfg = with_backbone(case_model_cfg("tsm_r50_video"), depth=18)
    whole = randomize_(build_model(cfg))
    assert whole.view_group == 8
    x = torch.randn(1, 16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with pytest.raises(UserError, match="not whole groups of 8"):
        whole.forward_views(x[:, :12])
    expected = whole.forward_views(x)
    for views, rounded in ((3, 8), (10, 8)):  # smaller than a group: rounded up; else down to whole groups
        cfg["test_cfg"]["max_testing_views"] = views
        chunked = build_model(cfg)
        chunked.load_state_dict(whole.state_dict())
        assert chunked.max_testing_views == rounded
        assert rel_error(chunked.forward_views(x), expected) < 1e-6


def test_view_group_follows_what_mixes_views() -> None:
    tsm = case_model_cfg("tsm_r50_video")
    assert build_model(with_backbone(tsm, is_shift=False)).view_group == 1
    assert build_model(with_backbone(tsm, num_segments=4)).view_group == 4
    assert build_model(case_model_cfg("tanet_r50_dense_raw")).view_group == 8
    assert build_model(case_model_cfg("trn_r50_raw")).view_group == 1


def test_shift_places_and_deep_resnets() -> None:
    tsm = case_model_cfg("tsm_r50_video")
    keys = build_model(with_backbone(tsm, shift_place="block")).state_dict()
    assert "backbone.layer1.0.net.conv1.conv.weight" in keys
    deep = build_model(with_backbone(tsm, depth=101)).state_dict()  # from depth 101: every second block
    assert "backbone.layer3.0.conv1.conv.net.weight" in deep and "backbone.layer3.1.conv1.conv.weight" in deep
    assert "backbone.layer1.1.conv1.conv.weight" in deep


@pytest.mark.parametrize("widen_factor, channels", [(1.0, (32, 16, 24, 32, 64, 96, 160, 320, 1280)),
                                                    (0.5, (16, 8, 16, 16, 32, 48, 80, 160, 1280)),
                                                    (1.4, (48, 24, 32, 48, 88, 136, 224, 448, 1792))])
def test_mobilenet_v2_widths(widen_factor: float, channels: tuple[int, ...]) -> None:
    backbone = build_model(with_backbone(case_model_cfg("tsm_mobilenetv2_dense_raw"),
                                         widen_factor=widen_factor)).backbone
    outs = [backbone.conv1.conv.out_channels] + [
        getattr(backbone, f"layer{i}")[-1].conv[-1].conv.out_channels for i in range(1, 8)]
    assert tuple(outs + [backbone.conv2.conv.out_channels]) == channels
    assert make_divisible(10, 8) == 16  # 8 would lose more than 10 %


@pytest.mark.parametrize(
    "model, message",
    [
        (lambda: shipped_model_cfg("tin/tin_r50_1x1x8_40e_sthv1_rgb.py"), "TIN needs mmcv's CUDA-only tin_shift op"),
        (lambda: shipped_model_cfg("tpn/tpn_tsm_r50_1x1x8_150e_sthv1_rgb.py"),
         "TPN neck is not supported: MMAction2 0.x cannot extract features with TPN on a 2D backbone"),
        (lambda: shipped_model_cfg("tsm/tsm_temporal_pool_r50_1x1x8_50e_kinetics400_rgb.py"),
         "temporal_pool=True .* changes the batch inside the backbone"),
        (lambda: with_backbone(case_model_cfg("tsm_r50_video"), shift_place="stage"), "shift_place='stage'"),
        (lambda: with_backbone(case_model_cfg("tsm_r50_video"), num_segments=0), "num_segments=0"),
        (lambda: with_backbone(case_model_cfg("tsm_r50_video"), num_stages=3, out_indices=(2,),
                                           strides=(1, 2, 2), dilations=(1, 1, 1)),
         "num_stages=4"),
        (lambda: with_backbone(case_model_cfg("tsm_r50_nl_raw"), non_local=(0, 0, 0, 0)), "one flag per block"),
        (lambda: with_backbone(case_model_cfg("tsm_r50_nl_raw"), shift_place="block"), "non-local blocks need"),
        (lambda: with_backbone(case_model_cfg("tsm_r50_nl_raw"), non_local_cfg=dict(mode="cosine")), "mode='cosine'"),
        (lambda: with_backbone(case_model_cfg("tsm_r50_nl_raw"), non_local_cfg=dict(size=3)), "non_local_cfg=.*size"),
        (lambda: with_backbone(case_model_cfg("tsm_mobilenetv2_dense_raw"), out_indices=(8,)), "out_indices"),
        (lambda: with_backbone(case_model_cfg("tanet_r50_dense_raw"), depth=18), "bottleneck"),
        (lambda: with_backbone(case_model_cfg("tanet_r50_dense_raw"), num_segments=2), "at least 3"),
        (lambda: with_backbone(case_model_cfg("tanet_r50_dense_raw"), tam_cfg=dict(gamma=1)), "tam_cfg=.*gamma"),
        (lambda: with_backbone(case_model_cfg("tanet_r50_dense_raw"), tam_cfg=dict(adaptive_convolution_stride=2)),
         "number of frames must stay the same"),
    ],
)
def test_refusals_are_one_line_user_errors(model: Any, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        build_model(model())
    assert "\n" not in str(info.value)


# (golden case whose checkpoint it loads, a shipped config with SampleFrames, its cfg_options: 64 px frames)
DENSE_CASES = {
    "ResNetTSM": ("tsm_r50_video", "tsm/tsm_r50_video_1x1x8_50e_kinetics400_rgb.py",
                  {"data.test.pipeline.3.scale": (-1, 64), "data.test.pipeline.4.crop_size": 56}),
    "TANet": ("tanet_r50_dense_raw", "tanet/tanet_r50_1x1x8_50e_sthv1_rgb.py",  # ThreeCrop: 3 crops a window
              {"data.test.pipeline.0.twice_sample": False, "data.test.pipeline.2.scale": (-1, 64),
               "data.test.pipeline.3.crop_size": 64}),
}


@pytest.mark.parametrize("backbone", sorted(DENSE_CASES))
def test_dense_stride_gives_a_window_of_num_segments_every_stride(backbone, golden_checkpoint, tmp_path) -> None:
    """--dense-stride 7 with a backbone that mixes its 8 segments: one vector per window of 8 consecutive
    frames starting every 7, each the vector the config's own sampling gives a video of just those frames."""
    case, config, cfg_options = DENSE_CASES[backbone]
    frames = gradient_frames(16)  # windows start at 0 and 7 (a window at 14 would run past the end)
    lossless = ("libx264rgb", "rgb24", {"qp": "0"})
    encode_video(tmp_path / "long.mkv", frames, *lossless)
    for start in (0, 7):
        encode_video(tmp_path / f"from{start}.mkv", frames[start:start + 8], *lossless)
    common = dict(config=str(ROOT / "configs/recognition" / config), checkpoint=str(golden_checkpoint(case)),
                  video_root=str(tmp_path), cfg_options=cfg_options, workers=0)
    dense = extract_features(RunOptions(videos=["long.mkv"], dense_stride="7", per="clip", **common))
    assert not dense.failed
    windows = dense.features["long.mkv"]
    assert windows.shape == (2, 2048)
    cut = extract_features(RunOptions(videos=["from0.mkv", "from7.mkv"], **common)).features
    assert rel_error(windows[0], cut["from0.mkv"]) < 1e-5 and rel_error(windows[1], cut["from7.mkv"]) < 1e-5


def test_views_that_are_not_whole_groups_are_the_users_error(golden_checkpoint) -> None:
    """TSM sampling 7 segments for a backbone of 8: one line naming the group (exit 2), not a ValueError."""
    case, config, cfg_options = DENSE_CASES["ResNetTSM"]
    options = RunOptions(config=str(ROOT / "configs/recognition" / config), checkpoint=str(golden_checkpoint(case)),
                         videos=["h264_176x144_18frames.mp4"], video_root=str(ROOT / "tests/data/videos"),
                         cfg_options={**cfg_options, "data.test.pipeline.1.num_clips": 7}, workers=0)
    with pytest.raises(UserError, match="7 views per video are not whole groups of 8: ResNetTSM mixes"):
        extract_features(options)



def torchvision_resnext101_32x4d_stages(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """torchvision's ResNet up to its last stage (before its pooling and ``fc``)."""
    return nn.Sequential(*list(model.children())[:-2])(x)


# Backbones 1.x takes from another library: the config, the reference model (the names 1.x's checkpoint has
# under ``backbone.``: torchvision's own densenet161, which 1.x builds; torchvision's ResNeXt for mmcls's,
# whose ResNet names its layers as torchvision does), what 1.x pools of it, its classifier's keys (removed).
OTHER_LIBRARIES = {
    "torchvision.densenet161": ("tsn_imagenet-pretrained-dense161_8xb32-1x1x3-100e_kinetics400-rgb.py",
                                lambda: torchvision.models.densenet161(),
                                lambda x, model: model.features(x), 2208, "classifier."),
    "mmcls.ResNeXt": ("tsn_imagenet-pretrained-rn101-32x4d_8xb32-1x1x3-100e_kinetics400-rgb.py",
                      lambda: torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [3, 4, 23, 3],
                                                               groups=32, width_per_group=4),
                      torchvision_resnext101_32x4d_stages, 2048, "fc."),
}


@pytest.mark.parametrize("backbone", sorted(OTHER_LIBRARIES))
@torch.no_grad()
def test_other_libraries_backbones_load_1x_checkpoints_and_give_the_reference_s_pooled_features(backbone, tmp_path):
    """A 1.x checkpoint of the reference's names (with its TSN head) loads as it is, and featx's model, folded
    and channels-last as it runs, gives what 1.x's Recognizer2D pools: for torchvision's densenet161 its
    ``features`` (the last BatchNorm, no final ReLU), for mmcls's ResNeXt its last stage; averaged per view."""
    from featx.extraction import prepare_model

    config, make_reference, pooled, dim, classifier = OTHER_LIBRARIES[backbone]
    reference = randomize_(make_reference()).eval()
    state = {f"backbone.{k}": v for k, v in reference.state_dict().items() if not k.startswith(classifier)}
    state.update({"cls_head.fc_cls.weight": torch.zeros(400, dim), "cls_head.fc_cls.bias": torch.zeros(400)})
    torch.save({"state_dict": state, "meta": {"mmaction2_version": "1.2.0"}}, tmp_path / "checkpoint.pth")
    model_cfg = read_config(ROOT / "configs" / "mmaction2-1.x" / "recognition" / "tsn" / "custom_backbones" / config).model
    assert model_cfg["backbone"]["type"] == backbone
    model, loaded = prepare_model(model_cfg, str(tmp_path / "checkpoint.pth"), torch.device("cpu"), dialect="1.x")
    assert sorted(loaded.unused) == ["cls_head.fc_cls.bias", "cls_head.fc_cls.weight"]
    x = torch.randn((1, 3, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    assert model(x).shape == (1, dim)
    assert rel_error(model(x), pooled(x[0], reference).mean((2, 3)).mean(0, keepdim=True)) < 1e-5
