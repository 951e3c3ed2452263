"""What decoding gives the model: one chunk of one video's model input, or the reason there is none."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sample:
    """Chunk ``chunk`` of ``num_chunks`` of video ``index`` (``key`` as listed), through the pipeline.

    ``imgs``: (views, ...) model input, uint8 when the device normalises it, else float32; views
    are crop-major (all clips of crop 1, then crop 2, ...). ``frame_inds``: this chunk's sampled
    frames, clip after clip. ``timings``: seconds per pipeline step.
    """

    index: int
    key: str
    imgs: np.ndarray
    frame_inds: np.ndarray
    clip_len: int
    num_crops: int
    total_frames: int
    avg_fps: float
    chunk: int = 0
    num_chunks: int = 1
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_clips(self) -> int:
        return len(self.frame_inds) // self.clip_len


@dataclass
class Failure:
    """Video ``index`` (or its chunk ``chunk``) cannot be used: ``error`` says why, naming the file."""

    index: int
    key: str
    error: str
    chunk: int = 0
