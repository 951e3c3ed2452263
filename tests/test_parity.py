"""Parity with MMAction2 0.x: the real CLI on the golden videos and checkpoints gives the golden vectors."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from conftest import CASE_CONFIGS, VIDEOS, golden_features, rel_error, run_featx, write_list

TOLERANCE = 1e-4


@pytest.mark.parametrize("case", sorted(CASE_CONFIGS))
def test_cli_matches_mmaction2(case, golden_checkpoint, tmp_path):
    expected = golden_features(case)
    video_list = write_list(tmp_path / "videos.txt", sorted(expected))
    out = tmp_path / "out" / "features.pkl"
    proc = run_featx(CASE_CONFIGS[case], golden_checkpoint(case), "--video-list", video_list,
                     "--video-root", VIDEOS, "--out", out, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    with open(out, "rb") as f:
        got = pickle.load(f)
    assert list(got) == sorted(expected)
    for name, vector in got.items():
        assert vector.dtype == np.float32 and vector.shape == (2048,)
        assert rel_error(vector, expected[name]) <= TOLERANCE, name
    assert "cls_head.fc_cls.weight" in proc.stderr  # the head keys are reported, not silently dropped
