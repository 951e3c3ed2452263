"""OpenCV's ``VideoCapture``, as MMAction2's ``OpenCVInit`` / ``OpenCVDecode`` read it through mmcv."""
from __future__ import annotations

from types import ModuleType
from typing import ClassVar, Sequence

import numpy as np

from featx.data.decoders import import_backend, library_noise_hidden
from featx.data.decoders.probe import check_video_file, why_unopenable
from featx.errors import VideoError
from featx.registry import DECODERS


@DECODERS.register("opencv")
class OpenCVReader:
    """Frame count and fps as the container states them; a frame is read after a seek to it (checked and
    completed by reading forward, as mmcv's ``VideoReader`` does) or straight on when it is the next
    one; a frame OpenCV cannot return (the last ones, on some files) is replaced by the one before."""

    frames_on: ClassVar[str] = "host"
    forks: ClassVar[bool] = True

    @staticmethod
    def library() -> ModuleType:
        return import_backend("cv2", "opencv-python-headless")

    def __init__(self, path: str, num_threads: int = 1) -> None:
        self._cv2 = cv2 = self.library()
        del num_threads  # OpenCV decodes with its own threads
        self.path = path
        check_video_file(path)
        with library_noise_hidden():  # OpenCV's FFmpeg complains on stderr about a damaged file
            self._capture = cv2.VideoCapture(path)
        if not self._capture.isOpened():
            raise VideoError(f"{path}: OpenCV cannot open it: {why_unopenable(path)}")
        self.num_frames = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.avg_fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        if self.num_frames <= 0:
            raise VideoError(f"{path}: OpenCV finds no frames in it")
        self._position = 0  # the index of the frame the next read returns

    def __len__(self) -> int:
        return self.num_frames

    def _read(self, index: int) -> np.ndarray | None:
        cv2 = self._cv2
        if index != self._position:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            for _ in range(index - int(round(self._capture.get(cv2.CAP_PROP_POS_FRAMES)))):
                self._capture.read()
        ok, frame = self._capture.read()
        self._position = index + 1 if ok else -1
        return frame if ok else None

    def get_frames(self, indices: Sequence[int] | np.ndarray, accurate: bool = True,
                   in_order: bool = False) -> np.ndarray:
        """The frames at ``indices`` (``accurate`` and ``in_order`` change nothing here)."""
        decoded: dict[int, np.ndarray] = {}
        frames = []
        for index in np.asarray(indices, dtype=np.int64).reshape(-1).tolist():
            if not 0 <= index < self.num_frames:
                raise VideoError(f"{self.path}: frame index {index} out of range ({self.num_frames} frames)")
            at = index
            while at not in decoded:
                with library_noise_hidden():
                    frame = self._read(at)
                if frame is not None:
                    decoded[at] = frame
                elif at == 0:
                    raise VideoError(f"{self.path}: OpenCV returns no frame at all")
                else:
                    at -= 1
            frames.append(decoded[at])
        return np.ascontiguousarray(np.stack(frames)[..., ::-1])  # BGR -> RGB
