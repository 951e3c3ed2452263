"""torchcodec, PyTorch's own FFmpeg decoder: ``--decoder torchcodec`` (CPU) and ``--decoder torchcodec-cuda``
(NVDEC). An optional extra (``pip install 'featx[torchcodec]'``) that needs FFmpeg's shared libraries
(4 to 8) on the system; it seeks exactly, by a frame table built from the file's packets when opened."""
from __future__ import annotations

from types import ModuleType
from typing import ClassVar, Sequence

import numpy as np

from featx.data.decoders import first_line, import_backend
from featx.data.decoders.probe import check_video_file, why_unopenable
from featx.errors import UserError, VideoError
from featx.registry import DECODERS

INSTALL = "'featx[torchcodec]'` (it also needs FFmpeg's shared libraries: `apt-get install ffmpeg`"


@DECODERS.register("torchcodec")
class TorchCodecReader:
    """A video opened with ``torchcodec.decoders.VideoDecoder`` in exact seek mode; frames in the order asked.

    torchcodec always returns the exact frames asked for: ``accurate=False`` (MMAction2's key-frame
    ``mode='efficient'``) decodes them exactly too. Frames are decoded once each and rearranged."""

    frames_on: ClassVar[str] = "host"
    forks: ClassVar[bool] = True
    device: ClassVar[str] = "cpu"

    @staticmethod
    def library() -> ModuleType:
        """``torchcodec.decoders``; when torchcodec cannot load FFmpeg, one sentence saying so."""
        torchcodec = import_backend("torchcodec", INSTALL)
        # torchcodec imports without FFmpeg (its image decoders do not need it) and fails only when a video
        # is opened; it sets ``ffmpeg_major_version`` to None when it could not load FFmpeg's libraries
        if torchcodec.ffmpeg_major_version is None:
            raise UserError("torchcodec cannot load FFmpeg's shared libraries (install FFmpeg 4 to 8, e.g. "
                            "`apt-get install ffmpeg`)")
        return import_backend("torchcodec.decoders", INSTALL)

    def __init__(self, path: str, num_threads: int = 1) -> None:
        decoders = self.library()
        self.path = path
        check_video_file(path)
        try:
            self._decoder = decoders.VideoDecoder(path, seek_mode="exact", device=self.device,
                                                  num_ffmpeg_threads=num_threads, dimension_order="NHWC")
        except (RuntimeError, ValueError) as exc:
            if self.device != "cpu" and "cuda" in str(exc).lower():
                raise UserError(f"--decoder torchcodec-cuda: {first_line(exc)}") from None
            raise VideoError(f"{path}: torchcodec cannot open it: {why_unopenable(path)}") from None
        meta = self._decoder.metadata
        self.num_frames = int(meta.num_frames or 0)
        self.avg_fps = float(meta.average_fps or 0.0)
        if self.num_frames == 0:
            raise VideoError(f"{path}: the video has no frames")

    def __len__(self) -> int:
        return self.num_frames

    def get_frames(self, indices: Sequence[int] | np.ndarray, accurate: bool = True,
                   in_order: bool = False) -> np.ndarray:
        inds = np.asarray(indices, dtype=np.int64).reshape(-1)
        if inds.size and (inds.min() < 0 or inds.max() >= self.num_frames):
            raise VideoError(f"{self.path}: frame index out of range (the video has {self.num_frames} frames)")
        unique, where = np.unique(inds, return_inverse=True)
        try:
            batch = self._decoder.get_frames_at(unique.tolist())
        except (RuntimeError, ValueError, IndexError) as exc:
            raise VideoError(f"{self.path}: torchcodec failed to decode frames ({first_line(exc)})") from None
        return batch.data.cpu().numpy()[where]


@DECODERS.register("torchcodec-cuda")
class TorchCodecCUDAReader(TorchCodecReader):
    """torchcodec decoding on the GPU (NVDEC); the frames are copied to the host for the CPU transforms. It
    decodes in the main process: a worker forked after the model is on the GPU cannot use CUDA."""

    forks: ClassVar[bool] = False
    device: ClassVar[str] = "cuda"
