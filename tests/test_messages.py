"""What a rerun says: the settings that differ, by name; and progress inside a long video, on a terminal and
in a log file."""
from __future__ import annotations

import io
import json
import logging

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
        assert progress.position == 0.5
        progress.video(VideoResult(5, "another rank's.mp4"))  # arrives while this process is inside long.mp4
        assert progress.position == 1
        progress.chunk(VideoResult(0, "long.mp4", chunk=2, num_chunks=4))
        assert progress.position == 1.75
        progress.video(VideoResult(0, "long.mp4", feature=np.zeros(2, np.float32)))
        assert progress.position == 2


def test_progress_written_to_a_file_is_plain_lines(caplog):
    log_file = io.StringIO()  # not a terminal: a log file, Slurm's output
    with caplog.at_level(logging.INFO, logger="featx"), Progress(4, every=0, stream=log_file) as progress:
        progress.video(VideoResult(0, "a.mp4", feature=np.zeros(2, np.float32)))
        progress.video(VideoResult(1, "b.mp4", error="not a video file"))
    assert log_file.getvalue() == ""  # no bar: no carriage returns, no lines of spaces
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert lines[0].startswith("1/4 videos [") and "video/s]" in lines[0]
    assert lines[1].startswith("2/4 videos [") and lines[1].endswith(", 1 failed video")
