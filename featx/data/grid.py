"""``--fps F``: a video's frames on a fixed time grid, by presentation timestamp.

Grid frame ``k`` is the frame shown at ``k / F`` seconds after the first frame: the last frame whose
timestamp is at or before that time. The grid runs while ``k / F`` is inside the video (up to the end of
the last frame's display), so a 10 s video has ``10 * F`` grid frames whatever its own rate, constant
or variable. Samplers then count in grid frames (``total_frames`` is the grid's length and ``avg_fps``
is ``F``), and the decoding step asks the decoder for the video frame behind each grid frame.
"""
from __future__ import annotations

import math

import numpy as np

from featx.data.decoders import import_backend
from featx.errors import VideoError

EPSILON = 1e-3  # seconds: containers stamp in milliseconds (Matroska) or finer; a frame stamped within this
# of a grid time counts as shown at it, and the grid ends within this of the video's end


def presentation_times(path: str) -> np.ndarray:
    """Each frame's presentation time in seconds from the first frame, in presentation order, read from
    the container's packets (nothing is decoded)."""
    av = import_backend("av", "av")
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stamps = [p.pts if p.pts is not None else p.dts for p in container.demux(stream) if p.size]
            time_base = float(stream.time_base)
    except (av.FFmpegError, IndexError) as exc:
        raise VideoError(f"{path}: cannot read its frame timestamps ({exc})") from None
    if not stamps or any(s is None for s in stamps):
        raise VideoError(f"{path}: its container gives no timestamps for its frames, which --fps needs")
    times = np.sort(np.asarray(stamps, dtype=np.float64)) * time_base
    return times - times[0]


def time_grid(times: np.ndarray, fps: float) -> np.ndarray:
    """The video frame shown at each grid time ``k / fps``: (grid frames,) int64 indices into ``times``.

    The last frame is shown for the video's mean frame duration (a single frame: one grid step)."""
    last = float(times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 1.0 / fps
    duration = float(times[-1]) + last
    count = max(1, math.ceil((duration - EPSILON) * fps))
    grid = np.arange(count, dtype=np.float64) / fps
    return np.searchsorted(times, grid + EPSILON, side="right").astype(np.int64) - 1
