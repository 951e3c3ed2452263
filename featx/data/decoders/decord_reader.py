"""decord, the reference's decoder (``DecordInit`` / ``DecordDecode``)."""
from __future__ import annotations

import logging
from types import ModuleType
from typing import ClassVar, Sequence

import numpy as np

from featx.data.decoders import first_line, import_backend, library_noise_hidden
from featx.data.decoders.probe import check_video_file, container_frame_count, why_unopenable
from featx.errors import VideoError
from featx.registry import DECODERS

log = logging.getLogger(__name__)
EDIT_LIST_CONTAINERS = (".mp4", ".m4v", ".mov", ".3gp")


@DECODERS.register("decord")
class DecordReader:
    """A video opened with ``decord.VideoReader``; frames come back in the order asked for."""

    frames_on: ClassVar[str] = "host"
    forks: ClassVar[bool] = True

    @staticmethod
    def library() -> ModuleType:
        return import_backend("decord", "decord==0.6.0")

    def __init__(self, path: str, num_threads: int = 1) -> None:
        decord = self.library()
        self._errors = (decord.DECORDError, RuntimeError, IndexError)
        self.path = path
        check_video_file(path)
        try:
            with library_noise_hidden():
                self._reader = decord.VideoReader(path, num_threads=num_threads)
            self.num_frames = len(self._reader)
            self.avg_fps = float(self._reader.get_avg_fps())
        except self._errors:
            # decord's exception only says "Error reading <path>"; FFmpeg's cause goes to stderr.
            raise VideoError(f"{path}: decord cannot open it: {why_unopenable(path)}") from None
        if self.num_frames == 0:
            raise VideoError(f"{path}: the video has no frames")
        if path.lower().endswith(EDIT_LIST_CONTAINERS):
            self._warn_on_edit_list()

    def _warn_on_edit_list(self) -> None:
        """decord 0.6.0 ignores mp4 edit lists (files trimmed with ``ffmpeg -c copy``): it counts the
        hidden frames too and returns frames shifted by the trimmed amount. Compare with the container."""
        shown = container_frame_count(self.path)
        if shown is not None and shown != self.num_frames:
            log.warning(
                "%s: decord counts %d frames but the container shows %d (an edit list?); decord's frames "
                "may be shifted: --decoder pyav decodes such files as players show them",
                self.path, self.num_frames, shown,
            )

    def __len__(self) -> int:
        return self.num_frames

    def get_frames(self, indices: Sequence[int] | np.ndarray, accurate: bool = True,
                   in_order: bool = False) -> np.ndarray:
        """``accurate``: ``get_batch`` (the reference's default); otherwise each frame after a fast seek
        to its nearest key frame (MMAction2's ``mode='efficient'``)."""
        inds = np.asarray(indices, dtype=np.int64).reshape(-1)
        try:
            with library_noise_hidden():
                return self._decode(inds, accurate, in_order)
        except self._errors as exc:
            raise VideoError(f"{self.path}: decord failed to decode frames ({first_line(exc)})") from None

    def _decode(self, inds: np.ndarray, accurate: bool, in_order: bool) -> np.ndarray:
        if accurate and in_order:
            unique, where = np.unique(inds, return_inverse=True)
            return self._reader.get_batch(unique).asnumpy()[where]
        if accurate:
            return self._reader.get_batch(inds).asnumpy()
        frames = []
        self._reader.seek(0)
        for idx in inds.tolist():
            self._reader.seek(idx)
            frames.append(self._reader.next().asnumpy())
        return np.stack(frames)
