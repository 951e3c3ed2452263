"""What a rerun says: the settings that differ, by name; and progress inside a long video."""
from __future__ import annotations

import json

import numpy as np

from featx.extraction import Progress
from featx.result import VideoResult
from featx.meta import Fingerprint


def test_differences_name_each_setting():
    pipeline = [{"type": "SampleFrames", "num_clips": 25}]
    old = Fingerprint.of({"model": {"backbone": {"depth": 50}}, "data.test.pipeline": pipeline}, "ab" * 32,
                         {"precision": "fp32", "video_root": "/data"})
    new = Fingerprint.of({"model": {"backbone": {"depth": 101}}, "data.test.pipeline": pipeline}, "cd" * 32,
                         {"precision": "fp32", "video_root": "/data", "per": "clip"})
    # an option one side does not record reads as its default (how a featx without it ran): per=video
    assert old.differences(new) == ("model.backbone.depth: 50 -> 101, checkpoint sha256: abababababab.. -> "
                                    "cdcdcdcdcdcd.., per: video -> clip")
    assert old.differences(new, most=1) == "model.backbone.depth: 50 -> 101, and 2 more"
    assert Fingerprint.from_json(json.loads(json.dumps(old.to_json()))) == old  # equal once read back from a sidecar


def test_progress_moves_inside_a_video_and_never_back():
    with Progress(3) as progress:
        progress.chunk(VideoResult(0, "long.mp4", chunk=0, num_chunks=4))
        progress.chunk(VideoResult(0, "long.mp4", chunk=1, num_chunks=4))
        assert progress.bar.n == 0.5
        progress.video(VideoResult(5, "another rank's.mp4"))  # arrives while this process is inside long.mp4
        assert progress.bar.n == 1
        progress.chunk(VideoResult(0, "long.mp4", chunk=2, num_chunks=4))
        assert progress.bar.n == 1.75
        progress.video(VideoResult(0, "long.mp4", feature=np.zeros(2, np.float32)))
        assert progress.bar.n == 2
