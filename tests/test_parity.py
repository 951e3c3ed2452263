"""Parity with MMAction2 0.x: the command line (its ``main``, called in the test's process: the interpreter's
start adds nothing here), with each golden case's shipped config, options and checkpoint, gives the
reference's frames and vectors on the golden videos.

The heavy cases run on one of the five videos here (two for c3d_raw), their test pipeline on the others they
ran on before (HEAVY, PIPELINE_ONLY); ``pytest -m slow`` runs them on all five.
"""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import featx
from helpers import (GOLDEN, ROOT, VIDEOS, assert_input_stats, case_config, golden_features, call_featx,
                     model_input, rel_error, write_list)

TOLERANCE = 1e-4
VIDEO = "h264_426x240_24fps.mp4"  # the non-round resize (short side 240 -> 256)
SHORT = "h264_176x144_18frames.mp4"  # fewer frames than most clips span: indices wrap around
# Cases that would take CI over its budget on all five videos: their model runs there on VIDEO alone (c3d_raw's
# reference fails on it: frames smaller than the crop; its model runs on SHORT), all five videos with -m slow.
# On the videos of PIPELINE_ONLY (those CI ran them on before, or every other for the cases that ran on all
# five) their shipped test pipeline meets the golden model inputs instead: the input a vector is computed from,
# whose model is held to the reference's on VIDEO (test_the_pipeline_meets_the_golden_inputs_...).
# Seconds a case took in CI on its earlier videos on the shared 2-core machine: all five: slowonly_r50_nl_raw 48,
# slowonly_r50_8x8_raw 42, slowfast_r50_4x16_video 39, tpn_slowonly_raw 33, slowonly_clip 32, r2plus1d_r34_video
# 27, c3d_raw 26, trn_r50_raw 23; SHORT and VIDEO: slowonly_k400_3crop 37, timesformer_divst_raw 34,
# tsn_k400_10crop 31, slowfast_r50_8x8_raw 29, ipcsn_r50_raw 12, i3d_r50_video 11, tsm_mobilenetv2_dense_raw 11,
# ircsn_r50_raw 10; VIDEO alone: tanet_r50_dense_raw (240 views of a ResNet-50) 89. In CI on 2026-12-08, all five:
# tsn_clip 16, tsm_r50_nl_raw 15, tsm_r50_video 10, x3d_s_raw 8.
ON_ALL_FIVE_BEFORE = {"slowonly_clip", "slowonly_r50_nl_raw", "slowonly_r50_8x8_raw", "slowfast_r50_4x16_video",
                      "tpn_slowonly_raw", "r2plus1d_r34_video", "c3d_raw", "trn_r50_raw", "tsn_clip", "tsm_r50_nl_raw",
                      "tsm_r50_video", "x3d_s_raw"}
ON_TWO_BEFORE = {"tsn_k400_10crop", "slowonly_k400_3crop", "i3d_r50_video", "timesformer_divst_raw",
                 "slowfast_r50_8x8_raw", "ipcsn_r50_raw", "ircsn_r50_raw", "tsm_mobilenetv2_dense_raw"}
HEAVY = {case: [VIDEO] for case in ON_ALL_FIVE_BEFORE | ON_TWO_BEFORE | {"tanet_r50_dense_raw", "tsn_r50_dense_video"}}
HEAVY["c3d_raw"] = [SHORT, VIDEO]
PIPELINE_ONLY = {**{case: [SHORT] for case in ON_TWO_BEFORE},
                 **{case: sorted(set(golden_features(case)) - set(HEAVY[case])) for case in ON_ALL_FIVE_BEFORE}}
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
    videos = sorted(expected) if all_videos or case not in HEAVY else HEAVY[case]
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


@pytest.mark.parametrize("case", sorted(PIPELINE_ONLY))
def test_the_pipeline_meets_the_golden_inputs_on_the_videos_of_pipeline_only(case):
    """The model input of a heavy case (its shipped config's test pipeline as featx reads it, cfg options and the
    raw-frame rule applied) on its PIPELINE_ONLY videos: the golden shape and per-view statistics, what a vector
    computed from it would carry; its frame indices are test_data's test_shipped_configs_sample_the_golden_indices."""
    config, options = case_config(case)
    stats = json.loads((GOLDEN / f"{case}.input_stats.json").read_text())
    assert PIPELINE_ONLY[case] and not set(PIPELINE_ONLY[case]) & set(HEAVY[case])
    for name in PIPELINE_ONLY[case]:
        assert_input_stats(model_input(ROOT / config, options, VIDEOS / name), stats[name], name)
