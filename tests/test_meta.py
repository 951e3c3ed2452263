"""The meta sidecar's schema: sidecars an earlier featx wrote still read, whole, and round-trip."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

import featx
from helpers import DATA
from featx.merge import merge
from featx.meta import SCHEMA, Failure, Fingerprint, Meta, ShardSection, VideoEntry, read_meta
from featx.options import RunOptions

OLD = DATA / "meta_0.1.0"  # written by featx 0.1.0 before the schema (README.md there)
OUTPUTS = ["feats.shard-0000-of-0001.pkl", "feats", "merged.npz"]


@pytest.mark.parametrize("name", OUTPUTS)
def test_an_old_sidecar_reads_whole(name):
    raw = json.loads((OLD / f"{name}.meta.json").read_text())
    meta = Meta.from_json(raw)
    assert meta.to_json() == {**raw, "schema": SCHEMA}  # nothing lost, nothing renamed
    assert list(meta.videos) == ["a.mp4", "b.avi"] and meta.failed[0].video == "broken.mp4"
    assert meta.videos["a.mp4"].frame_inds == [9] and meta.videos["b.avi"].total_frames == 125
    assert meta.fingerprint.checkpoint_sha256 == meta.checkpoint_sha256 and meta.fingerprint.option("per") == "video"
    fingerprinted = {f.name for f in dataclasses.fields(RunOptions) if f.metadata["option"].fingerprint}
    recorded = {"video_root", "per", "fuse_conv_bn", "precision", "decoder", "decode_order"}
    assert recorded <= fingerprinted and all(meta.fingerprint.option(name) is not None for name in recorded)


def test_old_outputs_load_alike():
    loaded = {name: featx.load(OLD / name) for name in OUTPUTS}
    shard = loaded[OUTPUTS[0]].features
    assert list(shard) == ["a.mp4", "b.avi"] and shard["a.mp4"].shape == (512,)
    for got in loaded.values():
        assert list(got.features) == list(shard) and all(np.array_equal(got.features[k], shard[k]) for k in shard)
    assert loaded["feats"].meta["videos"]["a.mp4"]["file"] == "a.mp4.npy"
    assert loaded["merged.npz"].meta["merged"][0]["shard"] == "0/1"


def test_an_old_shard_merges(tmp_path):
    for path in OLD.glob("feats.shard-*"):
        shutil.copy(path, tmp_path)
    out = tmp_path / "merged.pkl"
    assert merge([str(tmp_path / OUTPUTS[0])], str(out)) == 1  # broken.mp4 failed in its shard
    merged, shard = read_meta(out), read_meta(tmp_path / OUTPUTS[0])
    assert merged.shard is None and merged.merged[0].shard == "0/1" and merged.failed == shard.failed
    assert merged.videos == shard.videos and merged.fingerprint == shard.fingerprint
    assert merged.schema == SCHEMA and merged.created >= shard.created
    features = featx.load(out).features
    assert all(np.array_equal(features[k], v) for k, v in featx.load(tmp_path / OUTPUTS[0]).features.items())


def test_each_record_round_trips_and_refuses_unknown_names():
    marks = {"model": {"type": "Recognizer2D"}, "data.test.pipeline": [{"type": "DecordInit"}]}
    fingerprint = Fingerprint.of(marks, "ab" * 32, {"per": "clip", "video_root": "/data"}, folder_output=True)
    entry = VideoEntry(18, 15.0, 1, [9], 1.2, [[0.6, 0.67]], "a.mp4.npy")
    section = ShardSection(2, 4, "size", 10, 20, 40, "cd" * 32, None, ["a.mp4"])
    meta = Meta("dir", per="clip", fingerprint=fingerprint, shard=section, videos={"a.mp4": entry},
                failed=[Failure("b.mp4", "not a video file")])
    assert Meta.from_json(json.loads(json.dumps(meta.to_json()))) == meta
    assert fingerprint.to_json()["video root"] == "/data" and section.to_json()["list sha256"] == "cd" * 32
    assert fingerprint.shared() == Fingerprint.of(marks, "ab" * 32, {"per": "clip"})
    with pytest.raises(ValueError, match="unknown VideoEntry field 'colour'"):
        VideoEntry.from_json({"total_frames": 3, "colour": "red"})
    with pytest.raises(ValueError, match="newer featx"):
        Meta.from_json({**meta.to_json(), "schema": SCHEMA + 1})


def test_an_old_fingerprint_equals_one_with_the_options_added_since_at_their_defaults():
    """Options added after a sidecar was written (--fps, --pad, --layer, --pool, ...) did not exist: the run that
    wrote it ran as their defaults do, so its output is still reused; another value is a difference, named."""
    old = Meta.from_json(json.loads((OLD / f"{OUTPUTS[0]}.meta.json").read_text())).fingerprint
    assert old.option("fps") is None and "fps" not in old.to_json()  # read as recorded
    current = Fingerprint({**old.marks, "fps": None, "pad": "none", "layer": None, "pool": None}, old.folder_output)
    assert old == current and old.differences(current) == "none recorded"
    gridded = Fingerprint({**current.marks, "fps": 25.0}, old.folder_output)
    assert old != gridded and old.differences(gridded) == "fps: null -> 25.0"
    assert old != Fingerprint({**current.marks, "per": "clip"}, old.folder_output)  # what it recorded still counts
