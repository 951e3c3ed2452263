"""Independent shards (--shard K/N, job arrays): which slice, which output, from the flag or Slurm's array."""
from __future__ import annotations

import pytest

from featx.data.video_list import VideoItem
from featx.errors import UserError
from featx.shards import Shard, bounds, parse_shard


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
