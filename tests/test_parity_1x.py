"""Parity with MMAction2 1.2.0: the real CLI, with each golden-1x case's 1.x config (shipped under
configs/mmaction2-1.x/), its cfg options in 1.x key paths and its checkpoint, gives the reference's frame
indices, vectors and ``--multi-view`` rows on the golden videos; ``--views tool`` gives the 1.x tool's
default reduction where the case has it.

Every case present in tests/data/golden-1x/ runs. One CLI process a case (two with a tool default);
the heavy cases run on one or two of the five videos here, all five with ``pytest -m slow``; on the others,
their test pipeline and data preprocessor meet the golden model inputs.
"""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import featx
from helpers import GOLDEN_1X, VIDEOS, assert_input_stats, call_featx, model_input, rel_error, write_list

TOLERANCE = 1e-4
CONFIGS = "configs/mmaction2-1.x/recognition"
CI_VIDEOS = ["h264_176x144_18frames.mp4", "h264_426x240_24fps.mp4"]
# Cases that would take CI over its budget on all five videos, and the videos CI runs them on (TSM: 80 views of
# a ResNet-50 a video; TSN: 30, 99 s for the five here, and its tool-default run besides). Seconds a video through the CLI on this shared 2-core machine: Swin-T (6 views of 32
# frames) 96, MViT-S (1 view of 16 frames, 25k tokens in its first blocks) 37, UniFormer-S (2 views) 19.
# The ViT-size ones (6 views of 8-16 frames at 224 px) run on one video each, each case another kind (18
# frames, non-round resize, portrait): UniFormerV2-B 182, VideoMAE ViT-B 162 (+69 for --views tool), VideoMAE V2
# ViT-S 57.
# In CI on 2026-12-08: SlowOnly-50 (6 views) 12 and C2D-50 11 on all five, TSM-50 13 and UniFormer-S 11 on two.
HEAVY = {"tsm_r50_v1": CI_VIDEOS[1:], "tsn_r50_v1": CI_VIDEOS, "uniformer_s_v1": CI_VIDEOS[:1], "swin_t_v1": CI_VIDEOS[1:],
         "mvit_s_v1": CI_VIDEOS[1:], "uniformerv2_b_v1": CI_VIDEOS[:1], "videomae_vitb_v1": CI_VIDEOS[1:],
         "videomaev2_vits_v1": ["h264_portrait_240x320.mp4"], "slowonly_r50_v1": CI_VIDEOS[1:],
         "c2d_r50_v1": CI_VIDEOS[:1]}
CASES = sorted(p.name.split(".")[0] for p in GOLDEN_1X.glob("*.seed0.features.pkl"))
PARAMS = [pytest.param(case, False, id=case) for case in CASES] + [
    pytest.param(case, True, id=f"{case}-all-videos", marks=pytest.mark.slow) for case in sorted(set(HEAVY) & set(CASES))]


def golden(case: str, what: str):
    path = GOLDEN_1X / f"{case}.{what}"
    return pickle.loads(path.read_bytes()) if path.suffix == ".pkl" else json.loads(path.read_text())


def featx_1x(case: str, checkpoint, videos: list[str], tmp_path, *extra: str) -> tuple[dict, dict]:
    """Run the CLI (its main, in this process) on the case's config with its cfg options; its output and meta."""
    options = golden(case, "options.json")
    assert options["dialect"] == "1.x"
    cfg_options = [f"{k}={v}" for k, v in options["cfg_options"].items()]
    out = tmp_path / f"out{len(extra)}" / "features.pkl"
    proc = call_featx(f"{CONFIGS}/{options['config']}", checkpoint, "--video-list",
                      write_list(tmp_path / "videos.txt", videos), "--video-root", VIDEOS, "--out", out,
                      "--device", "cpu", "--workers", "1", *(["--cfg-options", *cfg_options] if cfg_options else []),
                      *extra)
    assert proc.returncode == 0, proc.stderr
    assert "MMAction2 1.x" in proc.stderr  # the start line names the dialect it read
    return featx.load(out)


def tool_rows(per_view: np.ndarray, rows: int) -> np.ndarray:
    """featx's ``--per-view`` (clips, crops, D) -> the 1.x tool's ``--multi-view`` rows: the views crop-major
    (view = crop * clips + clip), averaged in ``rows`` equal consecutive groups (a 3D recognizer: one view a
    row; TSN: all views in one row; TSM: the ``num_segments`` clips of each crop)."""
    views = per_view.transpose(1, 0, 2).reshape(-1, per_view.shape[-1])
    return views.reshape(rows, -1, views.shape[-1]).mean(1)


@pytest.mark.parametrize("case, all_videos", PARAMS)
def test_cli_matches_mmaction2_1x(case, all_videos, golden_checkpoint, tmp_path):
    expected, rows = golden(case, "seed0.features.pkl"), golden(case, "seed0.views.pkl")
    videos = sorted(expected) if all_videos or case not in HEAVY else HEAVY[case]
    got, meta = featx_1x(case, golden_checkpoint(case), videos, tmp_path, "--per-view")
    assert list(got) == videos and meta["config_dialect"] == "1.x"
    frame_inds = golden(case, "frame_inds.json")
    for name, per_view in got.items():
        assert meta["videos"][name]["frame_inds"] == frame_inds[name], name
        want = np.asarray(rows[name]).reshape(-1, per_view.shape[-1])
        assert rel_error(tool_rows(per_view, len(want)), want) <= TOLERANCE, name
        vector = per_view.mean((0, 1))
        assert vector.dtype == np.float32 and vector.shape == expected[name].shape
        assert rel_error(vector, expected[name]) <= TOLERANCE, name


TOOL_DEFAULT = sorted(p.name.split(".")[0] for p in GOLDEN_1X.glob("*.seed0.tool_default.pkl"))


@pytest.mark.parametrize("case", TOOL_DEFAULT)
def test_tool_views_match_the_1x_tools_default(case, golden_checkpoint, tmp_path):
    expected = golden(case, "seed0.tool_default.pkl")
    videos = sorted(expected) if case not in HEAVY else HEAVY[case]
    got, _ = featx_1x(case, golden_checkpoint(case), videos, tmp_path, "--views", "tool")
    for name, vector in got.items():
        assert rel_error(vector, np.asarray(expected[name]).reshape(vector.shape)) <= TOLERANCE, name


@pytest.mark.parametrize("case", sorted(set(HEAVY) & set(CASES)))
def test_the_pipeline_meets_the_golden_inputs_on_the_videos_ci_leaves_out(case):
    """A heavy case's model input on the golden videos its model does not run on in CI: its 1.x config's test
    pipeline and data preprocessor (cfg options applied) give the golden shape and per-view statistics."""
    options, stats = golden(case, "options.json"), golden(case, "input_stats.json")
    left_out = sorted(set(stats) - set(HEAVY[case]))
    assert left_out
    for name in left_out:
        assert_input_stats(model_input(f"{CONFIGS}/{options['config']}", options["cfg_options"], VIDEOS / name),
                           stats[name], name)
