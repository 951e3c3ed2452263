"""The steps that open a video and decode its sampled frames, under MMAction2's names for each backend.

``DecordInit`` / ``PyAVInit`` / ``OpenCVInit`` open ``results['filename']`` with their backend
(``backend=`` overrides it: ``--decoder``) and set ``video_reader``, ``total_frames``, ``avg_fps``;
``DecordDecode`` / ``PyAVDecode`` / ``OpenCVDecode`` decode ``results['frame_inds']`` in exactly that
order into ``results['imgs']`` (N, H, W, 3) uint8 RGB. The reference reads the file into memory
through mmcv's FileClient first; opening by path gives the same frames. Only ``io_backend='disk'``
is supported; other FileClient kwargs are accepted and ignored.
"""
from __future__ import annotations

from typing import Any, ClassVar

from featx.data.decoders import open_video
from featx.errors import UserError
from featx.registry import DECODERS, TRANSFORMS

MODES = ("accurate", "efficient")


class VideoInit:
    """Open the video with ``backend`` (the step's own unless overridden)."""

    role: ClassVar[str] = "open"
    default_backend: ClassVar[str]

    def __init__(self, io_backend: str = "disk", num_threads: int = 1, backend: str | None = None,
                 **kwargs: Any) -> None:
        if io_backend != "disk":
            raise UserError(f"{type(self).__name__}: io_backend={io_backend!r} is not supported (only 'disk')")
        self.backend = backend or self.default_backend
        if self.backend not in DECODERS:
            raise UserError(f"unknown decoder {self.backend!r} (known: {', '.join(DECODERS.names())})")
        DECODERS.get(self.backend).library()  # a missing library is one line now, not a failure per video
        self.num_threads = num_threads

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        reader = open_video(self.backend, results["filename"], num_threads=self.num_threads)
        results["video_reader"] = reader
        results["total_frames"] = len(reader)
        results["avg_fps"] = reader.avg_fps
        return results


class VideoDecode:
    """Decode the sampled frames in the sampler's order, never sorted or de-duplicated by default:
    decord 0.6.0's frames can depend on the request order on damaged files, and parity means asking
    as the reference does. ``in_order=True`` (``--decode-order sorted``) asks in frame order, for speed.
    ``mode='efficient'`` seeks to key frames only (MMAction2's approximate mode)."""

    role: ClassVar[str] = "decode"

    def __init__(self, mode: str = "accurate", in_order: bool = False) -> None:
        if mode not in MODES:
            raise UserError(f"{type(self).__name__}: mode must be 'accurate' or 'efficient', got {mode!r}")
        self.accurate = mode == "accurate"
        self.in_order = in_order

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        reader = results.pop("video_reader")
        imgs = reader.get_frames(results["frame_inds"], accurate=self.accurate, in_order=self.in_order)
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

    def __init__(self, multi_thread: bool = False, mode: str = "accurate", in_order: bool = False) -> None:
        super().__init__(mode, in_order)


@TRANSFORMS.register()
class OpenCVDecode(VideoDecode):
    """Takes no arguments in MMAction2 (``in_order`` is featx's)."""

    def __init__(self, in_order: bool = False) -> None:
        super().__init__(in_order=in_order)
