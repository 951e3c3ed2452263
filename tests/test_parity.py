"""Parity with MMAction2 0.x: the command line (its ``main``, called in the test's process: the interpreter's
start adds nothing here), with each golden case's shipped config, options and checkpoint, gives the
reference's frames and vectors on the golden videos.

The heavy cases run on two of the five videos here; ``pytest -m slow`` runs them on all five.
"""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import featx
from helpers import CASE_CONFIGS, GOLDEN, VIDEOS, golden_features, call_featx, rel_error, write_list

TOLERANCE = 1e-4
# Cases that would take CI over its budget on all five videos: two there (the shortest video, and the
# non-round resize), or only the latter for the heaviest (240 views of a ResNet-50 a video).
HEAVY = {"tsn_k400_10crop", "slowonly_k400_3crop", "i3d_r50_video", "timesformer_divst_raw", "slowfast_r50_8x8_raw",
         "ipcsn_r50_raw", "ircsn_r50_raw", "tsm_mobilenetv2_dense_raw", "tsn_r50_dense_video", "tanet_r50_dense_raw"}
CI_VIDEOS = ["h264_176x144_18frames.mp4", "h264_426x240_24fps.mp4"]
HEAVIEST = {"tanet_r50_dense_raw": CI_VIDEOS[1:]}
# 800 views of a ResNet-50 in one forward (a minute and up to 17 GB of RSS a video on a 2-core CPU): pytest -m slow only;
# CI covers dense sampling with tsm_mobilenetv2_dense_raw and tanet_r50_dense_raw.
SLOW_ONLY = {"tsn_r50_dense_video"}


def case_command(case: str) -> tuple[str, list[str]]:
    """The config a case was made with (shipped under configs/) and its --cfg-options."""
    options_file = GOLDEN / f"{case}.options.json"
    if not options_file.exists():
        return CASE_CONFIGS[case], []
    options = json.loads(options_file.read_text())
    cfg_options = [f"{k}={v}" for k, v in options["cfg_options"].items()]
    return f"configs/recognition/{options['config']}", ["--cfg-options", *cfg_options] if cfg_options else []


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
