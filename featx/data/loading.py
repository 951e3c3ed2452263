"""The steps that open a video and decode its sampled frames, under MMAction2's names for each backend.

``DecordInit`` / ``PyAVInit`` / ``OpenCVInit`` open ``results['filename']`` with their backend
(``use_decoder`` replaces it: ``--decoder``) and set ``video_reader``, ``total_frames``, ``avg_fps``
(with ``fps=`` (``--fps``) those of the video on that time grid: :mod:`featx.data.grid`);
``DecordDecode`` / ``PyAVDecode`` / ``OpenCVDecode`` decode ``results['frame_inds']`` in exactly that
order into ``results['imgs']`` (N, H, W, 3) uint8 RGB. The reference reads the file into memory
through mmcv's FileClient first; opening by path gives the same frames. Only ``io_backend='disk'``
is supported; other FileClient kwargs are accepted and ignored.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from featx.data.decoders import open_video
from featx.data.grid import presentation_times, time_grid
from featx.data.pipeline import Role
from featx.errors import UserError, VideoError
from featx.registry import DECODERS, TRANSFORMS

MODES = ("accurate", "efficient")


class VideoInit:
    """Open the video with ``backend``: the step's own, unless the run chose another (:meth:`use_decoder`)."""

    role: ClassVar[Role] = Role.OPEN
    default_backend: ClassVar[str]

    def __init__(self, io_backend: str = "disk", num_threads: int = 1, **kwargs: Any) -> None:
        if io_backend != "disk":
            raise UserError(f"{type(self).__name__}: io_backend={io_backend!r} is not supported (only 'disk')")
        self.use_decoder(self.default_backend)
        self.num_threads = num_threads
        self.fps: float | None = None

    def use_time_grid(self, fps: float) -> None:
        """Give the video's frames on a grid of ``fps`` frames per second (``--fps``: :mod:`featx.data.grid`)."""
        if not fps > 0:
            raise UserError(f"--fps {fps:g}: must be more than 0 frames per second")
        self.fps = fps

    def use_decoder(self, name: str) -> None:
        """Open with the decoder registered as ``name`` (``--decoder``) instead of the step's own."""
        if name not in DECODERS:
            raise UserError(f"unknown decoder {name!r} (known: {', '.join(DECODERS.names())})")
        DECODERS.get(name).library()  # a missing library is one line now, not a failure per video
        self.backend = name

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        reader = open_video(self.backend, results["filename"], num_threads=self.num_threads)
        results["video_reader"] = reader
        results["total_frames"] = len(reader)
        results["avg_fps"] = reader.avg_fps
        if self.fps is not None:
            times = presentation_times(results["filename"])
            if len(times) != len(reader):
                raise VideoError(f"{results['filename']}: its container stamps {len(times)} frames but "
                                 f"{self.backend} decodes {len(reader)}: --fps needs them to agree (try --decoder pyav)")
            results["grid_frames"] = time_grid(times, self.fps)
            results["total_frames"] = len(results["grid_frames"])
            results["avg_fps"] = self.fps
        return results


class VideoDecode:
    """Decode the sampled frames in the sampler's order, never sorted or de-duplicated by default:
    decord 0.6.0's frames can depend on the request order on damaged files, and parity means asking
    as the reference does. :meth:`decode_in_order` (``--decode-order sorted``) asks in frame order, for speed.
    ``mode='efficient'`` seeks to key frames only (MMAction2's approximate mode)."""

    role: ClassVar[Role] = Role.DECODE

    def __init__(self, mode: str = "accurate") -> None:
        if mode not in MODES:
            raise UserError(f"{type(self).__name__}: mode must be 'accurate' or 'efficient', got {mode!r}")
        self.accurate = mode == "accurate"
        self.in_order = False

    def decode_in_order(self) -> None:
        """Ask the reader for the sorted, de-duplicated frames, then rearrange (``--decode-order sorted``)."""
        self.in_order = True

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        reader = results.pop("video_reader")
        inds = np.asarray(results["frame_inds"], dtype=np.int64)
        total = results["total_frames"]
        shown = (inds >= 0) & (inds < total)  # a padded window's frames outside the video are not
        wanted = np.clip(inds, 0, total - 1)
        if "grid_frames" in results:
            wanted = results["grid_frames"][wanted]
        imgs = reader.get_frames(wanted, accurate=self.accurate, in_order=self.in_order)
        if not shown.all():
            if results.get("pad") == "zero":
                imgs[~shown] = 0
            elif results.get("pad") != "repeat":
                raise VideoError(f"{results['filename']}: frame index out of range for its {total} frames")
        results["imgs"] = imgs
        results["original_shape"] = imgs.shape[1:3]
        results["img_shape"] = imgs.shape[1:3]
        return results


@TRANSFORMS.register()
class DecordInit(VideoInit):
    default_backend = "decord"


@TRANSFORMS.register()
class PyAVInit(VideoInit):
    default_backend = "pyav"


@TRANSFORMS.register()
class OpenCVInit(VideoInit):
    default_backend = "opencv"


@TRANSFORMS.register()
class DecordDecode(VideoDecode):
    pass


@TRANSFORMS.register()
class PyAVDecode(VideoDecode):
    """``multi_thread`` is accepted (it changes speed, not frames)."""

    def __init__(self, multi_thread: bool = False, mode: str = "accurate") -> None:
        super().__init__(mode)


@TRANSFORMS.register()
class OpenCVDecode(VideoDecode):
    """Takes no arguments in MMAction2 (no ``mode``)."""

    def __init__(self) -> None:
        super().__init__()
