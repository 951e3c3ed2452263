"""Forwards bounded in memory, and short videos sharing forwards, give every video the vector of one
forward per video: views per forward are whole view groups, results split back to their videos."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import ROOT, VIDEOS, error_line, featx_exits, randomize_
from featx.errors import UserError
from featx.data import Sample
from featx.extraction import FeatureExtractor, view_chunks
from featx.memory import ForwardSize, parse_size
from featx.models import build_model
from featx.config import read_config
from featx.runner import Extraction, RunOptions, listed_videos

# A TSM ResNet-18 mixing groups of 4 views (temporal shift), 8 views a video, on 32x32 crops.
TSM_SMALL = """
model = dict(type='Recognizer2D', backbone=dict(type='ResNetTSM', pretrained=None, depth=18, num_segments=4),
             test_cfg=dict(feature_extraction=True))
norm = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_bgr=False)
data = dict(videos_per_gpu=1, workers_per_gpu=0, test=dict(type='VideoDataset', ann_file=None, data_prefix=None, pipeline=[
    dict(type='DecordInit'), dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=8, test_mode=True),
    dict(type='DecordDecode'), dict(type='Resize', scale=(-1, 40)), dict(type='CenterCrop', crop_size=32),
    dict(type='Normalize', **norm), dict(type='FormatShape', input_format='NCHW'),
    dict(type='Collect', keys=['imgs'], meta_keys=[]), dict(type='ToTensor', keys=['imgs'])]))
"""
VIDEO_NAMES = ["h264_320x240_30fps.mp4", "h264_426x240_24fps.mp4", "h264_176x144_18frames.mp4"]


@pytest.fixture(scope="module")
def tsm_small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    config = tmp_path_factory.mktemp("tsm_small") / "tsm_small.py"
    config.write_text(TSM_SMALL)
    model = randomize_(build_model(read_config(config).model))
    torch.save({"state_dict": model.state_dict()}, config.with_suffix(".pth"))
    return config, config.with_suffix(".pth")


def vectors(options: RunOptions, fill_forwards: bool = True) -> tuple[dict[str, np.ndarray], ForwardSize]:
    extraction = Extraction.prepare(options)
    extraction.fill_forwards = fill_forwards
    results = {r.key: r.feature for r in extraction.results(listed_videos(options))}
    assert all(v is not None for v in results.values())
    return results, extraction.extractor.forward_size


@pytest.mark.parametrize("max_memory", ["1K", None])
def test_bounded_and_shared_forwards_give_each_video_its_own_vector(tsm_small, max_memory) -> None:
    config, checkpoint = tsm_small
    options = RunOptions(str(config), str(checkpoint), videos=VIDEO_NAMES, video_root=str(VIDEOS), device="cpu",
                         workers=0, max_memory=max_memory)
    alone, _ = vectors(replace(options, max_memory="1T"), fill_forwards=False)  # one forward per video
    got, size = vectors(options)
    assert size.group == 4 and size.views % 4 == 0
    if max_memory == "1K":  # one view group a forward: each video's 8 views in two
        assert size.views == 4
    else:  # sized from the memory available: the three videos' 24 views share forwards
        assert size.views >= 8
    assert list(got) == VIDEO_NAMES
    for key, vector in alone.items():
        np.testing.assert_allclose(got[key], vector, rtol=0, atol=1e-6 * np.abs(vector).max())


def test_view_chunks_cut_the_stream_of_views_into_forwards() -> None:
    assert list(view_chunks([8, 8, 4], 12)) == [[(0, 0, 8), (1, 0, 4)], [(1, 4, 8), (2, 0, 4)]]
    assert list(view_chunks([3], 1)) == [[(0, 0, 1)], [(0, 1, 2)], [(0, 2, 3)]]
    assert list(view_chunks([2, 2], 100)) == [[(0, 0, 2), (1, 0, 2)]]


def test_halving_keeps_whole_groups_and_stops_at_one() -> None:
    size = ForwardSize(40, 8, "")
    halved = [size.views]
    while (size := size.halved()) is not None:
        halved.append(size.views)
    assert halved == [40, 16, 8]


@pytest.mark.parametrize("text, expected", [("4G", 4 * 2**30), ("512M", 512 * 2**20), ("1.5GiB", 3 * 2**29),
                                            ("2048", 2048), ("64k", 64 * 1024)])
def test_sizes(text, expected) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "4X", "-1G", "0", "G"])
def test_bad_sizes_are_refused(text) -> None:
    with pytest.raises(UserError, match=r"^--max-memory .*: give a size such as 4G"):
        parse_size(text)


def test_bad_max_memory_is_one_line_before_anything_is_read(tmp_path) -> None:
    proc = featx_exits(ROOT / "configs/recognition/tsn/tsn_r50_clip_feature_extraction_1x1x3_rgb.py", "none.pth",
                       "--video-root", VIDEOS, "--out", tmp_path / "f.pkl", "--max-memory", "lots", expect=2)
    assert error_line(proc) == "featx: error: --max-memory lots: give a size such as 4G, 512M or 1.5G (bytes without a unit)"
    assert not list(tmp_path.iterdir())


def test_the_run_says_its_views_per_forward(tsm_small, tmp_path) -> None:
    config, checkpoint = tsm_small
    proc = featx_exits(config, checkpoint, "--video-root", VIDEOS, "--out", tmp_path / "f.pkl", "--max-memory", "1K",
                       "--device", "cpu")
    assert "views per forward sized at the first video to 1 KiB" in proc.stderr  # the start line
    assert "featx: views per forward: 4 (" in proc.stderr


class SmallDevice(torch.nn.Module):
    """A real model on a device that runs out of memory past ``room`` views a forward."""

    def __init__(self, model: torch.nn.Module, room: int) -> None:
        super().__init__()
        self.model, self.room, self.view_group = model, room, model.view_group

    def forward_views(self, imgs: torch.Tensor) -> torch.Tensor:
        if imgs.shape[1] > self.room:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory ({imgs.shape[1]} views)")
        return self.model.forward_views(imgs)


@pytest.fixture(scope="module")
def tsm_model(tsm_small) -> torch.nn.Module:
    config, checkpoint = tsm_small
    model = build_model(read_config(config).model)
    model.load_state_dict(torch.load(checkpoint)["state_dict"])
    return model.eval()


def random_samples(*views: int) -> list[Sample]:
    """One sample of random 32x32 views per count."""
    imgs = [np.random.default_rng(n).standard_normal((v, 3, 32, 32)).astype(np.float32) for n, v in enumerate(views)]
    return [Sample(n, f"v{n}.mp4", x, np.arange(len(x)), clip_len=1, num_crops=1, total_frames=len(x), avg_fps=25.0)
            for n, x in enumerate(imgs)]


def assert_same_vectors(got, expected) -> None:
    for a, b in zip(got, expected, strict=True):
        assert a.error is None
        np.testing.assert_allclose(a.feature, b.feature, rtol=0, atol=1e-6 * np.abs(b.feature).max())


def test_the_sizing_forwards_are_the_first_views_and_none_is_computed_twice(tsm_model) -> None:
    samples = random_samples(16, 8)  # the first video: four groups of 4 views
    one_group = FeatureExtractor(tsm_model, torch.device("cpu"))
    one_group.forward_size = ForwardSize(4, 4, "one group a forward")
    sized = FeatureExtractor(tsm_model, torch.device("cpu"), max_memory=2**40)
    got = sized(samples)
    assert "a view measured, --max-memory" in sized.forward_size.how
    assert sized.views_computed == 24  # the probes took the first video's four groups, then the other 8 views
    assert_same_vectors(got, one_group(samples))


def test_out_of_memory_halves_the_views_per_forward_and_computes_the_same(tsm_model, caplog) -> None:
    samples = random_samples(8, 8, 8)
    expected = FeatureExtractor(tsm_model, torch.device("cpu"), max_memory=2**40)(samples)
    extractor = FeatureExtractor(SmallDevice(tsm_model, room=8), torch.device("cpu"), max_memory=2**40)
    extractor.forward_size = ForwardSize(24, 4, "all three videos")
    got = extractor(samples)
    assert extractor.forward_size.views == 4  # 24 -> 12 (3 groups), too many -> 4 (1 group), said once
    assert [r.message for r in caplog.records if "ran out of memory" in r.message] == [
        "cpu ran out of memory at 24 views per forward: 4 from now on"]
    assert_same_vectors(got, expected)
