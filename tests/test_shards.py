"""Independent shards (--shard K/N, job arrays) and `featx merge`: the same output as one run, or a clear refusal."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import featx
from helpers import (CASE_CONFIGS, VIDEOS, call_featx, error_line, featx_exits, golden_features, write_golden_checkpoint,
                     write_list)
from featx.data.video_list import VideoItem
from featx.errors import UserError
from featx.shards import Shard, bounds, parse_shard

TSN = CASE_CONFIGS["tsn_clip"]
FAST = ["--cfg-options", "data.test.pipeline.1.num_clips=3", "--device", "cpu", "--workers", "1"]
ALL = sorted(golden_features("tsn_clip"))  # the five sample videos


@pytest.mark.parametrize("text, env, shard", [
    ("0/1", {}, Shard(0, 1)), ("3/64", {}, Shard(3, 64)), (" 2/3 ", {}, Shard(2, 3)),
    ("auto", {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "8"}, Shard(5, 8)),
    ("auto", {"SLURM_ARRAY_TASK_ID": "64", "SLURM_ARRAY_TASK_COUNT": "64", "SLURM_ARRAY_TASK_MIN": "1"}, Shard(63, 64)),
    ("auto", {"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0",
              "SLURM_ARRAY_TASK_STEP": "2"}, Shard(3, 4)),
])
def test_shard_from_the_flag_or_slurms_array(text, env, shard):
    assert parse_shard(text, env) == shard


@pytest.mark.parametrize("text, env, words", [
    ("3/3", {}, "shard 3 of 3 does not exist"), ("1-4", {}, "give K/N"), ("auto", {}, "SLURM_ARRAY_TASK_ID"),
    ("auto", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"}, "shard 4 of 4 does not exist"),
    ("auto", {"SLURM_ARRAY_TASK_ID": "17", "SLURM_ARRAY_TASK_COUNT": "1", "SLURM_ARRAY_TASK_MIN": "17"},
     "give --shard 17/N"),
])
def test_bad_shards_are_refused(text, env, words):
    with pytest.raises(UserError, match=words):
        parse_shard(text, env)


def test_shard_outputs_lie_beside_out(tmp_path):
    assert Shard(3, 64).output("out/feats.pkl") == "out/feats.shard-0003-of-0064.pkl"
    assert Shard(0, 2).output("feats/") == "feats.shard-0000-of-0002/"
    assert Shard(1, 2).output(str(tmp_path)) == f"{tmp_path}.shard-0001-of-0002/"  # an existing folder


@pytest.mark.parametrize("n, k", [(5, 3), (10, 4), (2, 5), (0, 2), (1000, 64)])
@pytest.mark.parametrize("by", ["count", "size"])
def test_slices_are_contiguous_and_cover_the_list_once(n, k, by, tmp_path):
    sizes = [(i * 7919) % 1000 for i in range(n)]  # some empty, one missing
    items = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"{i}.mp4"
        if i != 3:
            path.write_bytes(b"x" * size)
        items.append(VideoItem(path.name, str(path)))
    cuts = [bounds(items, Shard(j, k), by) for j in range(k)]
    assert cuts[0][0] == 0 and cuts[-1][1] == n and all(a[1] == b[0] for a, b in zip(cuts, cuts[1:]))
    if by == "count":
        assert max(e - s for s, e in cuts) - min(e - s for s, e in cuts) <= 1
    elif n >= 10 * k:  # within a video's size of an even split
        loads = [sum(sizes[s:e]) - sizes[3] * (s <= 3 < e) for s, e in cuts]
        assert max(loads) - min(loads) <= 2 * max(sizes)


# --- real shard runs of the golden videos, merged ---------------------------------------------------------


@pytest.fixture(scope="module")
def runs(golden_checkpoint, tmp_path_factory):
    """The five videos in one run, and in shards: 0/3 and 1/3 (the latter through Slurm's array variables),
    then the last third as shards 4/6 and 5/6 into folders."""
    tmp = tmp_path_factory.mktemp("shards")
    video_list = write_list(tmp / "list.txt", ALL)
    common = [TSN, golden_checkpoint("tsn_clip"), "--video-list", video_list, "--video-root", VIDEOS, *FAST]
    featx_exits(*common, "--out", tmp / "whole.pkl")
    first = featx_exits(*common, "--out", tmp / "feats.pkl", "--shard", "0/3")
    assert f"featx: shard 0 of 3 (by count): video 1 of the 5 listed -> {tmp}/feats.shard-0000-of-0003.pkl" in (
        first.stderr)
    slurm = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"}
    assert call_featx(*common, "--out", tmp / "feats.pkl", "--shard", "auto", env=slurm).returncode == 0
    for k in (4, 5):
        featx_exits(*common, "--out", f"{tmp}/feats/", "--shard", f"{k}/6")
    return tmp


def _same(got: str, want: str) -> None:
    """Same keys, order, vectors and meta entries (a folder's entries say which file, too)."""
    (a, a_meta), (b, b_meta) = featx.load(got), featx.load(want)
    assert list(a) == list(b) == ALL
    assert all(np.array_equal(a[key], b[key]) for key in ALL)
    assert {key: {k: v for k, v in entry.items() if k != "file"} for key, entry in a_meta["videos"].items()} == (
        b_meta["videos"])
    assert a_meta["fingerprint"] == {**b_meta["fingerprint"], "folder output": got.endswith("/")}


@pytest.mark.parametrize("name", ["merged.pkl", "merged.npz", "merged/"])
def test_merged_shards_equal_one_run(name, runs):
    shards = [runs / "feats.shard-0000-of-0003.pkl", runs / "feats.shard-0001-of-0003.pkl",
              runs / "feats.shard-0004-of-0006", runs / "feats.shard-0005-of-0006"]
    out = f"{runs}/{name}"
    proc = featx_exits("merge", "--out", out, *reversed(shards))  # any order
    assert "featx: 5 written, 0 failed (0 in no shard)" in proc.stderr
    _same(out, runs / "whole.pkl")
    assert [m["shard"] for m in featx.load(out).meta["merged"]] == ["0/3", "1/3", "4/6", "5/6"]
    if name == "merged/":  # linked from the folder shards, not copied
        assert (runs / "merged" / f"{ALL[4]}.npy").stat().st_nlink == 2


def test_a_missing_shard_is_reported_by_name_and_exits_1(runs, tmp_path):
    out = tmp_path / "merged.pkl"
    proc = featx_exits("merge", "--out", out, runs / "feats.shard-0000-of-0003.pkl", runs / "feats.shard-0005-of-0006",
                expect=1)
    assert "featx: warning: videos 2-4 of the list: in no shard (shards 2-4 of 6 were not given)" in proc.stderr
    assert list(pickle.loads(out.read_bytes())) == [ALL[0], ALL[4]]
    report = json.loads(out.with_name("merged.pkl.errors.json").read_text())
    assert report == [{"video": key, "reason": "in no shard (shards 2-4 of 6 were not given)"} for key in ALL[1:4]]
    assert featx.load(out).meta["failed"] == report


def test_a_shard_of_another_checkpoint_is_refused_by_name(runs, golden_checkpoint, tmp_path):
    other = write_golden_checkpoint("tsn_clip", tmp_path / "other.pth", seed=1)
    featx_exits(TSN, other, "--video-list", runs / "list.txt", "--video-root", VIDEOS, *FAST, "--out",
         tmp_path / "other.pkl", "--shard", "2/3")
    out = tmp_path / "merged.pkl"
    proc = featx_exits("merge", "--out", out, runs / "feats.shard-0000-of-0003.pkl", tmp_path / "other.shard-0002-of-0003.pkl",
                expect=2)
    line = error_line(proc)
    assert f"{tmp_path}/other.shard-0002-of-0003.pkl was made with other settings than" in line
    assert "(checkpoint sha256: " in line and not out.exists()


BAD_MERGES = {  # name: (what is given beside a good shard, words the one error line must contain)
    "a whole run's output": (lambda runs, tmp: [runs / "whole.pkl"], "not the output of a shard"),
    "a file that is no output": (lambda runs, tmp: [runs / "list.txt"], "not a featx output"),
    "another list": (lambda runs, tmp: ["--video-list", write_list(tmp / "l.txt", ALL[:2])], "--video-list"),
    "the output is a shard": (lambda runs, tmp: ["--out", runs / "feats.shard-0000-of-0003.pkl"], "is one of the shards"),
}


@pytest.mark.parametrize("name", sorted(BAD_MERGES))
def test_bad_merge_input_is_one_line_and_exit_2(name, runs, tmp_path):
    given, words = BAD_MERGES[name]
    proc = featx_exits("merge", "--out", tmp_path / "m.pkl", runs / "feats.shard-0000-of-0003.pkl", *given(runs, tmp_path),
                expect=2)
    assert words in error_line(proc)
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "l.txt"])
