"""Config dialects: a 0.x and a 1.x config read into one description, each by its own reader; 1.x's
data preprocessor as the device-side normalisation; what either refuses, in one line."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import ROOT, error_line, run_featx
from featx.config import read_config, use_tool_views
from featx.data.transforms import ActionDataPreprocessor
from featx.errors import UserError
from featx.models import build_model
from featx.registry import TRANSFORMS, TRANSFORMS_1X

V1 = ROOT / "configs/mmaction2-1.x/recognition"
TSN_1X = V1 / "tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb.py"
SLOWONLY_1X = V1 / "slowonly/slowonly_r50_8xb16-4x16x1-256e_kinetics400-rgb.py"
K710 = V1 / "slowonly/slowonly_imagenet-pretrained-r50_32xb8-8x8x1-steplr-150e_kinetics710-rgb.py"
RAW_1X = V1 / "trn/trn_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv1-rgb.py"
TSN_0X = ROOT / "configs/recognition/tsn/tsn_r50_clip_feature_extraction_1x1x3_rgb.py"


def test_a_1x_config_is_read_by_its_own_reader():
    config = read_config(TSN_1X, {"test_dataloader.dataset.pipeline.1.num_clips": 3})
    assert config.dialect == "1.x" and config.transforms is TRANSFORMS_1X
    assert config.pipeline_key == "test_dataloader.dataset.pipeline" and config.pipeline[1]["num_clips"] == 3
    assert [s["type"] for s in config.pipeline][-2:] == ["FormatShape", "PackActionInputs"]
    assert "data_preprocessor" not in config.model and config.model["backbone"]["pretrained"] is None
    assert isinstance(config.normalize, ActionDataPreprocessor) and config.normalize.format_shape == "NCHW"
    np.testing.assert_array_equal(config.normalize.mean, np.float32([123.675, 116.28, 103.53]))
    assert (config.loader.videos_per_gpu, config.loader.workers_per_gpu) == (1, 8)  # test_dataloader's
    assert not config.fp16 and not config.raw_frames and config.notes == ()
    marks = config.marks()  # the fingerprint keeps the preprocessor, by its key path
    assert marks["model.data_preprocessor"]["std"] == [58.395, 57.12, 57.375]
    assert marks["test_dataloader.dataset.pipeline"] == config.pipeline


def test_a_0x_config_keeps_its_reader():
    config = read_config(TSN_0X, {"data.test_dataloader.workers_per_gpu": 3})
    assert config.dialect == "0.x" and config.transforms is TRANSFORMS and config.normalize is None
    assert config.pipeline_key == "data.test.pipeline" and config.loader.workers_per_gpu == 3
    assert set(config.marks()) == {"model", "data.test.pipeline"}


def test_cfg_options_take_the_dialects_key_paths():
    with pytest.raises(UserError, match="the config has no key 'data'"):
        read_config(TSN_1X, {"data.test.pipeline.1.num_clips": 3})
    with pytest.raises(UserError, match="no key 'test_dataloader'"):
        read_config(TSN_0X, {"test_dataloader.dataset.pipeline.1.num_clips": 3})
    config = read_config(SLOWONLY_1X, {"model.test_cfg.max_testing_views": 2, "env_cfg.cudnn_benchmark": True})
    assert config.model["test_cfg"] == {"max_testing_views": 2} and config.cudnn_benchmark


def test_concat_test_set_takes_the_first_datasets_pipeline():
    config = read_config(K710)
    assert config.pipeline_key == "test_dataloader.dataset.datasets.0.pipeline"
    assert config.notes == ("its test set is a ConcatDataset of 3: the first one's pipeline "
                            "(test_dataloader.dataset.datasets.0)",)
    assert config.pipeline[1]["num_clips"] == 10


def test_1x_raw_frame_config_goes_through_the_raw_frame_rule():
    config = read_config(RAW_1X)
    assert config.raw_frames and [s["type"] for s in config.pipeline][:3] == ["DecordInit", "SampleFrames",
                                                                               "DecordDecode"]
    with pytest.raises(UserError, match="optical flow is not supported"):
        read_config(V1 / "tsn/tsn_imagenet-pretrained-r50_8xb32_5x1x3-110e_kinetics400-flow.py")


def test_preprocessor_layout_must_match_the_pipeline():
    with pytest.raises(UserError, match="format_shape='NCHW'.*makes 'NCTHW'"):
        read_config(SLOWONLY_1X, {"model.data_preprocessor.format_shape": "NCHW"})
    assert read_config(SLOWONLY_1X, {"model.data_preprocessor.format_shape": "MIX2d3d"}).normalize is not None


def test_preprocessor_normalises_as_1x_does():
    frames = torch.randint(0, 256, (2, 3, 3, 4, 5), dtype=torch.uint8)  # (B, V, C, H, W)
    mean, std = [10.0, 20.0, 30.0], [2.0, 3.0, 4.0]
    pre = ActionDataPreprocessor(mean=mean, std=std, to_rgb=True)
    bgr = frames[:, :, [2, 1, 0]]
    want = (bgr - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(pre.normalize_tensor(frames, channel_dim=2), want, rtol=0, atol=0)
    plain = ActionDataPreprocessor().normalize_tensor(frames, channel_dim=2)
    assert plain.dtype == torch.float32 and torch.equal(plain, frames.float())
    with pytest.raises(UserError, match="both mean and std"):
        ActionDataPreprocessor(mean=mean)


def test_recognizer_refuses_what_it_does_not_take():
    model = read_config(TSN_1X).model
    with pytest.raises(UserError, match="data_preprocessor"):
        build_model({**model, "data_preprocessor": {"type": "ActionDataPreprocessor"}})


def test_tool_views_reduce_as_the_1x_tool_does():
    tsn = use_tool_views(read_config(TSN_1X))
    assert [s["type"] for s in tsn.pipeline][4] == "CenterCrop" and tsn.pipeline[1]["num_clips"] == 25
    slowonly = use_tool_views(read_config(SLOWONLY_1X))
    assert slowonly.pipeline[1]["num_clips"] == 1 and slowonly.pipeline[4]["type"] == "ThreeCrop"


def test_neither_dialect_is_refused_in_one_line(tmp_path):
    config = tmp_path / "not_a_test_config.py"
    config.write_text("model = dict(type='Recognizer2D')\n")
    proc = run_featx(config, tmp_path / "none.pth", "--video-root", tmp_path, "--out", tmp_path / "o.pkl")
    assert proc.returncode == 2
    assert "is not an MMAction2 test config (MMAction2 0.x: data.test.pipeline" in error_line(proc)


def test_a_0x_checkpoint_of_another_model_with_a_1x_config_is_one_line(golden_checkpoint, tmp_path):
    state = torch.load(golden_checkpoint("slowonly_clip"), weights_only=True)["state_dict"]
    torch.save({"meta": {"mmcv_version": "1.7.0"}, "state_dict": state}, tmp_path / "slowonly_0x.pth")
    proc = run_featx(TSN_1X, tmp_path / "slowonly_0x.pth", "--video-root", ROOT / "tests/data/videos",
                     "--out", tmp_path / "out" / "o.pkl", "--device", "cpu")
    assert proc.returncode == 2
    assert "an MMAction2 0.x checkpoint of another model than this MMAction2 1.x config's" in error_line(proc)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
