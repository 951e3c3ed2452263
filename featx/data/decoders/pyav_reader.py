"""PyAV (FFmpeg), as MMAction2's ``PyAVInit`` / ``PyAVDecode``, and featx's ``--decoder pyav``."""
from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np

from featx.data.decoders import import_backend
from featx.data.decoders.probe import check_video_file
from featx.errors import VideoError
from featx.registry import DECODERS


@DECODERS.register("pyav")
class PyAVReader:
    """A video decoded with PyAV, edit lists honoured: exact on files where decord is not, slower (it
    decodes once to count the frames, then again up to the last frame asked for)."""

    frames_on: ClassVar[str] = "host"
    forks: ClassVar[bool] = True

    @staticmethod
    def library() -> ModuleType:
        return import_backend("av", "av")

    def __init__(self, path: str, num_threads: int = 1) -> None:
        self._av = self.library()
        self.path = path
        self.num_threads = num_threads
        check_video_file(path)
        try:
            with self._av.open(path) as container:
                self.avg_fps = float(container.streams.video[0].average_rate or 0)
        except (self._av.FFmpegError, IndexError) as exc:
            raise VideoError(f"{path}: PyAV cannot open it as a video ({exc})") from None
        self.num_frames = sum(1 for _ in self._frames())
        if self.num_frames == 0:
            raise VideoError(f"{path}: the video has no frames")

    def _frames(self) -> Iterator[Any]:
        try:
            with self._av.open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_count = self.num_threads
                yield from container.decode(stream)
        except self._av.FFmpegError as exc:
            raise VideoError(f"{self.path}: PyAV failed to decode ({exc})") from None

    def __len__(self) -> int:
        return self.num_frames

    @staticmethod
    def _rgb(frame: Any) -> np.ndarray:
        """(H, W, 3) uint8, converted in this thread alone. PyAV keeps one converter per thread (by default with
        threads of its own), and a converter with threads cannot be freed in a forked child: it waits forever
        for the threads the fork did not copy. So the processes featx forks find none."""
        return frame.to_ndarray(format="rgb24", threads=1)

    def get_frames(self, indices: Sequence[int] | np.ndarray, accurate: bool = True,
                   in_order: bool = False) -> np.ndarray:
        """``accurate``: decoded sequentially up to the last index (exact on every file, in any order);
        otherwise MMAction2's ``mode='efficient'``: a backward seek to each index's time, the first
        frame decoded there (a key frame; the previous one when none comes)."""
        inds = np.asarray(indices, dtype=np.int64).reshape(-1)
        if inds.size and (inds.min() < 0 or inds.max() >= self.num_frames):
            raise VideoError(f"{self.path}: frame index out of range (the video has {self.num_frames} frames)")
        if not accurate:
            return self._key_frames(inds)
        wanted = set(inds.tolist())
        frames: dict[int, np.ndarray] = {}
        for i, frame in enumerate(self._frames()):
            if i in wanted:
                frames[i] = self._rgb(frame)
                if len(frames) == len(wanted):
                    break
        return np.stack([frames[i] for i in inds.tolist()])

    def _key_frames(self, inds: np.ndarray) -> np.ndarray:
        backup = self._rgb(next(self._frames()))
        frames = []
        try:
            with self._av.open(self.path) as container:
                stream = container.streams.video[0]
                pts_scale = stream.average_rate * stream.time_base
                for idx in inds.tolist():
                    container.seek(int(idx / pts_scale), any_frame=False, backward=True, stream=stream)
                    frame = next((f for packet in container.demux(stream) for f in packet.decode()), None)
                    if frame is not None:
                        backup = self._rgb(frame)
                    frames.append(backup)
        except self._av.FFmpegError as exc:
            raise VideoError(f"{self.path}: PyAV failed to decode ({exc})") from None
        return np.stack(frames)
