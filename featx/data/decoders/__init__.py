"""Video readers, one module per backend, registered in ``featx.registry.DECODERS`` by name.

Every reader is a :class:`VideoReader`: opened on a path, it knows its frame count and average
fps and returns the frames at any indices as one uint8 RGB array. Each backend imports its library
on first use, so a missing one fails in one clear sentence; any failure to open or decode a file
is a ``VideoError`` naming the reason, so one bad video is skipped, not the run.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from types import ModuleType
from typing import ClassVar, Iterator, Protocol, Sequence

import numpy as np

from featx.errors import UserError
from featx.registry import DECODERS


class VideoReader(Protocol):
    """An opened video."""

    path: str
    num_frames: int  # frames the reader counts (decord and OpenCV: the container's; PyAV: decoded)
    avg_fps: float  # 0.0 when the container does not say
    frames_on: ClassVar[str]  # where decoded frames land: "host" (numpy) for every reader so far
    forks: ClassVar[bool]  # may decode in forked worker processes (False: CUDA decoding, in the main process)

    @staticmethod
    def library() -> ModuleType:
        """The decoding library, imported; missing, a UserError saying how to install it (checked when
        a pipeline is built, before any model loads)."""
        ...

    def get_frames(self, indices: Sequence[int] | np.ndarray, accurate: bool = True,
                   in_order: bool = False) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB frames, one per index in the order given (repeats decoded as repeats).

        ``accurate=False`` is MMAction2's ``mode='efficient'`` (nearest key frames); ``in_order`` lets
        the reader decode the sorted, de-duplicated indices and rearrange (same frames on sound files)."""
        ...

    def __len__(self) -> int:
        ...


def import_backend(module: str, install: str) -> ModuleType:
    """Import a decoding library on first use; missing, it is one line saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{module} is not installed: install it with `pip install {install}`") from None


def open_video(backend: str, path: str, num_threads: int = 1) -> VideoReader:
    """``path`` opened with the reader registered as ``backend`` (``decord``, ``pyav``, ``opencv``)."""
    return DECODERS.get(backend)(path, num_threads=num_threads)


def first_line(exc: BaseException) -> str:
    """An exception's message, first line only (decord's C++ errors carry a long stack trace)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextlib.contextmanager
def library_noise_hidden() -> Iterator[None]:
    """Keep what a decoding library writes straight to the process's stderr (decord's own log lines,
    its FFmpeg's complaints about a damaged file) out of the user's terminal: the reason for a failure
    reaches the user as the video's one warning. With ``--debug`` (featx logging at debug level) it
    passes through as it is."""
    if logging.getLogger("featx").isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved, sink = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(sink, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(sink)
