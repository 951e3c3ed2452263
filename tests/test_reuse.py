"""A finished output is reused: a rerun computes only the videos it lacks, and refuses other settings by name."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import featx
from helpers import CASE_CONFIGS, VIDEOS, error_line, featx_exits, golden_features, write_list

TSN = CASE_CONFIGS["tsn_clip"]
FAST = ["--cfg-options", "data.test.pipeline.1.num_clips=3", "--device", "cpu", "--workers", "1"]
ALL = sorted(golden_features("tsn_clip"))  # the five sample videos
SHORT = "h264_176x144_18frames.mp4"
OTHER = "h264_portrait_240x320.mp4"


def test_added_videos_alone_are_computed_and_the_file_equals_a_fresh_run(golden_checkpoint, tmp_path):
    out, fresh = tmp_path / "feats.pkl", tmp_path / "fresh.pkl"
    common = [TSN, golden_checkpoint("tsn_clip"), "--video-root", VIDEOS, *FAST]
    four, five = write_list(tmp_path / "four.txt", ALL[:4]), write_list(tmp_path / "five.txt", ALL)
    first = featx_exits(*common, "--video-list", four, "--out", out)
    assert f"featx: 4 videos to compute; config {TSN} (MMAction2 0.x, Recognizer2D, 3 clips x 1 crop, 1 frame per clip)" in (
        first.stderr)

    rerun = featx_exits(*common, "--video-list", five, "--out", out)
    assert "featx: 5 videos listed, 1 to compute (4 reused from feats.pkl);" in rerun.stderr
    assert "5 written, 0 failed (1 computed in this run, 4 reused from feats.pkl)" in rerun.stderr
    featx_exits(*common, "--video-list", five, "--out", fresh)
    got, want = pickle.loads(out.read_bytes()), pickle.loads(fresh.read_bytes())
    assert list(got) == list(want) == ALL
    assert all(np.array_equal(got[key], want[key]) for key in ALL)
    meta, fresh_meta = (json.loads(p.with_name(p.name + ".meta.json").read_text()) for p in (out, fresh))
    assert meta["videos"] == fresh_meta["videos"] and meta["fingerprint"] == fresh_meta["fingerprint"]

    for changed, words in [(["--precision", "bf16"], "(precision: fp32 -> bf16)"),
                           (["--cfg-options", "data.test.pipeline.1.num_clips=2"],
                            "(data.test.pipeline.1.num_clips: 3 -> 2)")]:
        refused = featx_exits(*common, "--video-list", five, "--out", out, *changed, expect=2)
        assert f"holds 5 videos made with other settings {words}; pass --restart" in error_line(refused)
    assert out.read_bytes() != b"" and list(pickle.loads(out.read_bytes())) == ALL  # untouched

    fewer = featx_exits(*common, "--video-list", write_list(tmp_path / "two.txt", ALL[3:]), "--out", out)
    assert "featx: 3 videos of feats.pkl no longer listed: left out of the new output" in fewer.stderr
    assert "2 written, 0 failed (0 computed in this run, 2 reused from feats.pkl)" in fewer.stderr
    assert list(pickle.loads(out.read_bytes())) == ALL[3:]


@pytest.mark.parametrize("name, flags", [("feats/", []), ("list.json", ["--out-format", "list"]), ("feats.npz", [])])
def test_every_format_is_reused(name, flags, golden_checkpoint, tmp_path):
    out = f"{tmp_path}/{name}"  # a string: "feats/" keeps its slash
    common = [TSN, golden_checkpoint("tsn_clip"), "--video-root", VIDEOS, "--out", out, *flags, *FAST]
    featx_exits(*common, "--video-list", write_list(tmp_path / "one.txt", [SHORT]))
    first = featx.load(out).features[SHORT]
    rerun = featx_exits(*common, "--video-list", write_list(tmp_path / "two.txt", [SHORT, OTHER]))
    assert f"(1 computed in this run, 1 reused from {name.rstrip('/')})" in rerun.stderr
    features, meta = featx.load(out)
    assert list(features) == list(meta["videos"]) == [SHORT, OTHER] and np.array_equal(features[SHORT], first)
    if name == "feats/":  # a video no longer listed leaves no file behind
        featx_exits(*common, "--video-list", write_list(tmp_path / "last.txt", [OTHER]))
        assert sorted(p.name for p in (tmp_path / "feats").iterdir()) == [f"{OTHER}.npy"]


def test_restart_says_what_it_discarded(golden_checkpoint, tmp_path):
    out = tmp_path / "feats.pkl"
    common = [TSN, golden_checkpoint("tsn_clip"), "--video-root", VIDEOS, "--out", out, *FAST,
              "--video-list", write_list(tmp_path / "one.txt", [SHORT])]
    featx_exits(*common)
    again = featx_exits(*common, "--precision", "bf16", "--restart")
    assert "featx: --restart: discarded 1 earlier result (1 in feats.pkl)" in again.stderr
    assert "(1 computed in this run)" in again.stderr
