"""Parity with MMAction2 0.x: the command line (its ``main``, called in the test's process: the interpreter's
start adds nothing here), with each golden case's shipped config, options and checkpoint, gives the
reference's frames and vectors on the golden videos.

The heavy cases run on two of the five videos here (their test pipeline, as featx reads the shipped config,
meets the golden model inputs on the other three); ``pytest -m slow`` runs them on all five.
"""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import featx
from featx.config import read_config
from featx.data import build_pipeline
from helpers import (CASE_CONFIGS, GOLDEN, ROOT, VIDEOS, assert_input_stats, case_config, golden_features, call_featx,
                     rel_error, write_list)

TOLERANCE = 1e-4
# Cases that would take CI over its budget on all five videos: two there (the shortest video, and the
# non-round resize), or only the latter for the heaviest (240 views of a ResNet-50 a video).
HEAVY = {"tsn_k400_10crop", "slowonly_k400_3crop", "i3d_r50_video", "timesformer_divst_raw", "slowfast_r50_8x8_raw",
         "ipcsn_r50_raw", "ircsn_r50_raw", "tsm_mobilenetv2_dense_raw", "tsn_r50_dense_video", "tanet_r50_dense_raw"}
# These took 20 to 50 s each on all five videos (a ResNet-50 or -34 3D model, or TRN's 8 segments): on the two
# videos in CI, with their pipeline checked on the other three (test_the_pipeline_meets_the_golden_inputs_...).
HEAVY_PIPELINE_CHECKED = {"slowonly_clip", "slowonly_r50_nl_raw", "slowonly_r50_8x8_raw", "slowfast_r50_4x16_video",
                          "tpn_slowonly_raw", "r2plus1d_r34_video", "c3d_raw", "trn_r50_raw"}
HEAVY |= HEAVY_PIPELINE_CHECKED
CI_VIDEOS = ["h264_176x144_18frames.mp4", "h264_426x240_24fps.mp4"]
HEAVIEST = {"tanet_r50_dense_raw": CI_VIDEOS[1:]}
# 800 views of a ResNet-50 in one forward (a minute and up to 17 GB of RSS a video on a 2-core CPU): pytest -m slow only;
# CI covers dense sampling with tsm_mobilenetv2_dense_raw and tanet_r50_dense_raw.
SLOW_ONLY = {"tsn_r50_dense_video"}


def case_command(case: str) -> tuple[str, list[str]]:
    """The config a case was made with (shipped under configs/) and its --cfg-options."""
    config, options = case_config(case)
    cfg_options = [f"{k}={v}" for k, v in options.items()]
    return config, ["--cfg-options", *cfg_options] if cfg_options else []


ALL_CASES = sorted(p.name.split(".")[0] for p in GOLDEN.glob("*.seed0.features.pkl"))
PARAMS = [pytest.param(case, False, id=case) for case in ALL_CASES if case not in SLOW_ONLY] + [
    pytest.param(case, True, id=f"{case}-all-videos", marks=pytest.mark.slow) for case in sorted(HEAVY)]


@pytest.mark.parametrize("case, all_videos", PARAMS)
def test_cli_matches_mmaction2(case, all_videos, golden_checkpoint, tmp_path):
    expected = golden_features(case)
    videos = sorted(expected) if all_videos or case not in HEAVY else HEAVIEST.get(case, CI_VIDEOS)
    views_file = GOLDEN / f"{case}.seed0.views.pkl"
    config, cfg_options = case_command(case)
    out = tmp_path / "out" / "features.pkl"
    proc = call_featx(config, golden_checkpoint(case), "--video-list", write_list(tmp_path / "videos.txt", videos),
                      "--video-root", VIDEOS, "--out", out, "--device", "cpu", *cfg_options,
                      *(["--per-view"] if views_file.exists() else []))
    failed = [name for name in videos if expected[name] is None]  # the reference itself fails on these
    assert proc.returncode == (1 if failed else 0), proc.stderr
    got, meta = featx.load(out)
    assert list(got) == [name for name in videos if name not in failed]
    assert [f["video"] for f in meta["failed"]] == failed
    frame_inds = json.loads((GOLDEN / f"{case}.frame_inds.json").read_text())
    rows = pickle.loads(views_file.read_bytes()) if views_file.exists() else None
    for name, vector in got.items():
        assert meta["videos"][name]["frame_inds"] == frame_inds[name], name
        if rows is not None:  # (clips, crops, D) -> the reference's crop-major rows (views, D)
            vector = vector.transpose(1, 0, 2).reshape(-1, vector.shape[-1])
            assert rel_error(vector, rows[name]) <= TOLERANCE, name
            vector = vector.mean(0)
        assert vector.dtype == np.float32 and vector.shape == expected[name].shape
        assert rel_error(vector, expected[name]) <= TOLERANCE, name
    assert "keys not used by the feature model" in proc.stderr  # the head's keys are reported, not silently dropped


@pytest.mark.parametrize("case", sorted(HEAVY_PIPELINE_CHECKED))
def test_the_pipeline_meets_the_golden_inputs_on_the_videos_ci_leaves_out(case):
    """The model input of a heavy case (its shipped config's test pipeline as featx reads it, cfg options and the
    raw-frame rule applied) on the videos its CI parity run leaves out: the golden shape and per-view statistics,
    what a vector computed from it would carry; the frame indices are test_data's
    test_shipped_configs_sample_the_golden_indices. With the parity run above, every video's path through the
    case is checked in CI, its model on two of them."""
    config, options = case_config(case)
    config = read_config(ROOT / config, options)
    pipeline = build_pipeline(config.pipeline, transforms=config.transforms)
    stats = json.loads((GOLDEN / f"{case}.input_stats.json").read_text())
    left_out = sorted(set(stats) - set(HEAVIEST.get(case, CI_VIDEOS)))
    assert len(left_out) == 3
    for name in left_out:
        assert_input_stats(pipeline({"filename": str(VIDEOS / name), "start_index": 0})["imgs"], stats[name], name)
