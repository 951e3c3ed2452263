"""``--fps`` and ``--pad``: the frames each window receives are the ones the time grid names, on lossless
videos whose frames carry their own index, at a constant and at a variable frame rate."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import featx
from featx.data import Pipeline, build_pipeline
from featx.data.grid import presentation_times, time_grid
from featx.errors import UserError
from helpers import error_line, call_featx, write_list

DECODERS = ["decord", "pyav", "torchcodec"]


def coded_frame(k: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A frame that says it is frame ``k``: red ``k``, green ``255 - k``, blue ``7k mod 256``."""
    frame = np.empty((h, w, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = k, 255 - k, (7 * k) % 256
    return frame


def frame_numbers(imgs: np.ndarray) -> list[int]:
    """The index each decoded frame carries (-1 for a black frame)."""
    assert np.array_equal(imgs[:, 1:, 1:], np.broadcast_to(imgs[:, :1, :1], imgs[:, 1:, 1:].shape))  # uniform
    return [-1 if not f.any() else int(f[0, 0, 0]) for f in imgs]


def encode_coded(path: Path, times_ms: list[int]) -> Path:
    """Lossless H.264 (RGB) in Matroska, frame k shown from ``times_ms[k]`` on."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=30, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "rgb24"
        stream.time_base = Fraction(1, 1000)
        for k, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(coded_frame(k), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


# 10 frames: 30 fps at first, then a pause (frame 3 shown for 0.1 s), then irregular
VFR_MS = [0, 33, 67, 100, 200, 300, 333, 367, 500, 600]


def test_the_grid_takes_the_frame_shown_at_each_time():
    times = np.array(VFR_MS) / 1000
    # t = 0, .1, .., .6: the last frame is shown for the mean frame duration (0.067 s), so the video lasts 0.667 s
    assert time_grid(times, 10).tolist() == [0, 3, 4, 5, 7, 8, 9]
    assert time_grid(np.arange(90) / 30, 30).tolist() == list(range(90))  # the video's own rate: every frame
    assert time_grid(np.arange(90) / 30, 15).tolist() == list(range(0, 90, 2))
    assert time_grid(np.zeros(1), 25).tolist() == [0]


def test_presentation_times_from_the_container(tmp_path):
    path = encode_coded(tmp_path / "vfr.mkv", VFR_MS)
    assert np.allclose(presentation_times(str(path)), np.array(VFR_MS) / 1000)


def grid_pipeline(decoder: str, fps: float, **sampler) -> Pipeline:
    steps = [dict(type="DecordInit"), dict(type="StrideSampleFrames", **sampler), dict(type="DecordDecode")]
    return build_pipeline(steps, decoder=decoder, fps=fps)


@pytest.mark.parametrize("decoder", DECODERS)
def test_windows_receive_the_grid_frames_at_a_variable_rate(tmp_path, decoder):
    path = encode_coded(tmp_path / "vfr.mkv", VFR_MS)
    pipeline = grid_pipeline(decoder, 10.0, clip_len=2, stride=2)
    results = pipeline({"filename": str(path), "start_index": 0})
    assert results["total_frames"] == 7 and results["avg_fps"] == 10.0
    assert results["frame_inds"].tolist() == [0, 1, 2, 3, 4, 5]  # in grid frames: windows at 0, 2, 4
    assert frame_numbers(results["imgs"]) == [0, 3, 4, 5, 7, 8]


def test_windows_at_a_constant_rate_resampled(tmp_path):
    path = encode_coded(tmp_path / "cfr.mkv", [round(k * 1000 / 30) for k in range(60)])  # 2 s at 30 fps
    pipeline = grid_pipeline("decord", 10.0, clip_len=4, frame_interval=2, stride=5)
    results = pipeline({"filename": str(path), "start_index": 0})
    assert results["total_frames"] == 20
    grid = [5 * 0 + 2 * j for j in range(4)] + [5 + 2 * j for j in range(4)] + [10 + 2 * j for j in range(4)]
    assert results["frame_inds"].tolist() == grid  # windows of 7 grid frames that fit in 20, every 5
    assert frame_numbers(results["imgs"]) == [3 * g for g in grid]  # grid frame g is video frame 3g


@pytest.mark.parametrize("pad", ["repeat", "zero"])
def test_padded_windows_are_centred_on_the_stride(tmp_path, pad):
    path = encode_coded(tmp_path / "cfr.mkv", [round(k * 1000 / 30) for k in range(10)])
    pipeline = grid_pipeline("decord", 30.0, clip_len=4, stride=4, pad=pad)
    results = pipeline({"filename": str(path), "start_index": 0})
    # ceil(10 / 4) = 3 windows, window i centred on 4i + 2: frames 4i .. 4i + 3
    assert results["frame_inds"].tolist() == list(range(12))
    padded = 9 if pad == "repeat" else -1
    assert frame_numbers(results["imgs"]) == list(range(10)) + [padded, padded]

    pipeline = grid_pipeline("decord", 30.0, clip_len=8, stride=4, pad=pad)
    results = pipeline({"filename": str(path), "start_index": 0})
    # window i covers 4i + 2 - 4 .. 4i + 5: it starts before the video
    assert results["frame_inds"].tolist() == [i for w in range(3) for i in range(4 * w - 2, 4 * w + 6)]
    first = 0 if pad == "repeat" else -1
    assert frame_numbers(results["imgs"])[:8] == [first, first, 0, 1, 2, 3, 4, 5]


def test_bad_grid_settings_are_the_users_error():
    with pytest.raises(UserError, match="--fps 0: must be more than 0"):
        build_pipeline([dict(type="DecordInit")], fps=0.0)
    with pytest.raises(UserError, match="pad must be one of none, repeat, zero"):
        build_pipeline([dict(type="StrideSampleFrames", clip_len=4, stride=4, pad="mirror")])
    with pytest.raises(UserError, match="not in seconds"):
        build_pipeline([dict(type="StrideSampleFrames", clip_len=4, stride_seconds=0.5, pad="zero")])


def test_the_cli_puts_windows_on_the_grid_and_records_it(tmp_path, tiny_tsn):
    config, checkpoint = tiny_tsn
    encode_coded(tmp_path / "vfr.mkv", VFR_MS)
    out = tmp_path / "feats.pkl"
    proc = call_featx(config, checkpoint, "--video-list", write_list(tmp_path / "l.txt", ["vfr.mkv"]), "--video-root",
                     tmp_path, "--out", out, "--fps", "10", "--dense-stride", "3", "--pad", "repeat", "--per-clip")
    assert proc.returncode == 0, proc.stderr
    features, meta = featx.load(out)
    assert features["vfr.mkv"].shape == (3, 512)  # 7 grid frames: ceil(7 / 3) windows
    video = meta["videos"]["vfr.mkv"]
    # window i of 2 grid frames starts at 3i + 3 // 2 - 2 // 2 = 3i (the last one padded past grid frame 6)
    assert video["frame_inds"] == [0, 1, 3, 4, 6, 7] and video["avg_fps"] == 10.0
    assert np.allclose(video["clips"], [[0.0, 0.2], [0.3, 0.5], [0.6, 0.8]])
    # the middle of each window: stride 3 is odd and the span 2 even, half a grid frame before 0.15 + 0.3i
    assert np.allclose(video["centres"], [0.1, 0.4, 0.7])
    assert meta["grid"] == {"fps": 10.0, "stride": 3, "window": 2, "pad": "repeat"}
    assert meta["fingerprint"]["fps"] == 10.0 and meta["fingerprint"]["pad"] == "repeat"


@pytest.mark.parametrize("args, message", [
    (["--fps", "-5"], "--fps -5: must be more than 0 frames per second"),
    (["--pad", "zero"], "--pad zero: pads the windows of --dense-stride, so give --dense-stride too"),
])
def test_grid_mistakes_are_one_line(tmp_path, tiny_tsn, args, message):
    config, checkpoint = tiny_tsn
    proc = call_featx(config, checkpoint, "--video-list", write_list(tmp_path / "l.txt", ["x.mp4"]), "--out",
                     tmp_path / "o.pkl", *args)
    assert proc.returncode == 2 and message in error_line(proc)
