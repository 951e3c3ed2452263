"""``--decoder torchcodec``: the exact frames of a lossless clip, decord's frames on every golden video, the
golden vectors through the real CLI, and one sentence when it cannot run."""
from __future__ import annotations

import os
import subprocess
import sys

import decord
import numpy as np
import pytest

import featx
from featx.errors import UserError
from featx.registry import DECODERS
from helpers import ROOT, VIDEOS, case_config, encode_video, error_line, golden_features, gradient_frames, rel_error, \
    call_featx, write_list


def torchcodec_usable() -> bool:
    try:
        DECODERS.get("torchcodec")(str(VIDEOS / "h264_176x144_18frames.mp4"))
    except UserError:  # torchcodec or FFmpeg's shared libraries missing
        return False
    return True


# `make test` installs FFmpeg's libraries where it can; CI must run these tests, a bare machine may skip them
pytestmark = pytest.mark.skipif(not os.environ.get("CI") and not torchcodec_usable(),
                                reason="torchcodec cannot load FFmpeg's shared libraries here (see the Makefile)")


def test_exact_frames_of_a_lossless_clip_in_request_order(tmp_path):
    frames = gradient_frames()
    path = encode_video(tmp_path / "lossless.mkv", frames, "libx264rgb", "rgb24", {"qp": "0"}, fps=10)
    reader = DECODERS.get("torchcodec")(str(path))
    assert len(reader) == 20 and reader.avg_fps == 10.0
    inds = np.array([5, 3, 3, 19, 0, 12, 5, 17, 1])  # unsorted, with repeats
    for accurate in (True, False):  # torchcodec seeks exactly in both modes
        got = reader.get_frames(inds, accurate=accurate)
        assert got.dtype == np.uint8 and np.array_equal(got, frames[inds])


@pytest.mark.parametrize("name", sorted(p.name for p in VIDEOS.iterdir()))
def test_every_frame_of_the_golden_videos_equals_decords(name):
    path = str(VIDEOS / name)
    reader, reference = DECODERS.get("torchcodec")(path), decord.VideoReader(path)
    assert len(reader) == len(reference) and reader.avg_fps == pytest.approx(reference.get_avg_fps())
    inds = np.arange(len(reader))
    assert np.array_equal(reader.get_frames(inds), reference.get_batch(inds).asnumpy())


def test_golden_vectors_with_decoder_torchcodec(golden_checkpoint, tmp_path):
    """Two videos (the frames of all five are compared above): the short one and the non-round resize."""
    case = "tsm_r50_video"
    expected = {name: golden_features(case)[name] for name in ("h264_176x144_18frames.mp4", "h264_426x240_24fps.mp4")}
    config, cfg_options = case_config(case)
    out = tmp_path / "feats.pkl"
    proc = call_featx(config, golden_checkpoint(case), "--video-list", write_list(tmp_path / "l.txt", sorted(expected)),
                     "--video-root", VIDEOS, "--out", out, "--device", "cpu", "--decoder", "torchcodec",
                     *(["--cfg-options", *(f"{k}={v}" for k, v in cfg_options.items())] if cfg_options else []))
    assert proc.returncode == 0, proc.stderr
    got, meta = featx.load(out)
    assert meta["decoder"] == "torchcodec"
    for name, vector in expected.items():
        assert rel_error(got[name], vector) <= 1e-4, name


def test_a_non_video_gets_the_probes_reason(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_bytes(b"not a video at all" * 20)
    with pytest.raises(featx.errors.VideoError, match="not a video file"):
        DECODERS.get("torchcodec")(str(path))


def test_missing_torchcodec_is_one_sentence(tmp_path):
    """What a user without the extra sees: how to install it, exit 2, no traceback."""
    list_file = write_list(tmp_path / "l.txt", ["h264_176x144_18frames.mp4"])
    code = ("import sys; sys.modules['torchcodec'] = None; from featx.cli import main; "  # as if not installed
            f"sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "configs/recognition/tsn/tsn_r50_clip_feature_extraction_1x1x3_rgb.py",
                           str(tmp_path / "missing.pth"), "--video-list", str(list_file), "--video-root", str(VIDEOS),
                           "--out", str(tmp_path / "o.pkl"), "--decoder", "torchcodec"],
                          cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'featx[torchcodec]'" in error_line(proc)
