"""Video decoding with decord, as MMAction2 0.x's ``DecordInit`` / ``DecordDecode``.

A decoder is registered in ``DECODERS`` by name: an object opened on a path with ``len()``,
``avg_fps`` and ``get_frames(indices, accurate=True) -> uint8 (N, H, W, 3) RGB``. Any failure
to open or decode a file is a ``VideoError`` naming the reason, so one bad video is skipped.
"""
from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Any, Iterator, Sequence

import numpy as np

from featx.errors import UserError, VideoError
from featx.registry import DECODERS, TRANSFORMS

log = logging.getLogger(__name__)
EDIT_LIST_CONTAINERS = (".mp4", ".m4v", ".mov", ".3gp")


def import_decord() -> ModuleType:
    """Import decord on first use, with a clear message when it is missing."""
    try:
        import decord
    except ImportError:
        raise UserError("decord is not installed: install it with `pip install decord==0.6.0`") from None
    return decord


def import_av() -> ModuleType:
    """Import PyAV on first use, with a clear message when it is missing."""
    try:
        import av
    except ImportError:
        raise UserError("PyAV is not installed: install it with `pip install av`") from None
    return av


def container_frame_count(path: str) -> int | None:
    """Frames the container shows, counted from its packets without decoding (edit lists applied)."""
    av = import_av()
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            return sum(1 for p in container.demux(stream) if p.size and not p.is_discard)
    except (av.FFmpegError, IndexError):
        return None


CONTAINER_SIGNATURES = (  # (offset, magic bytes, name)
    (4, b"ftyp", "MP4/MOV"), (0, b"RIFF", "AVI"), (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"FLV", "FLV"), (0, b"\x00\x00\x01\xba", "MPEG-PS"), (0, b"OggS", "Ogg"),
    (0, b"\x47", "MPEG-TS"), (188, b"\x47", "MPEG-TS"),  # two 188-byte packets: both must match
)


def why_unopenable(path: str) -> str:
    """A specific reason for a file that a decoder cannot open: not a video at all, a truncated MP4, or
    FFmpeg's own complaint about a damaged one."""
    with open(path, "rb") as f:
        head = f.read(189)
    matches = [name for at, magic, name in CONTAINER_SIGNATURES if head[at:at + len(magic)] == magic]
    container = next((name for name in matches if name != "MPEG-TS" or matches.count(name) == 2), None)
    if container == "MP4/MOV":
        cut = _mp4_box_past_end(path)
        if cut is not None:
            return f"truncated MP4: its {cut!r} box runs past the end of the file (an interrupted download or copy?)"
    av = import_av()
    try:
        with av.open(path):
            pass
    except av.FFmpegError as exc:
        if container is None:
            return "not a video file (FFmpeg cannot read it, and its first bytes match no video container)"
        return f"a damaged {container} file (FFmpeg: {getattr(exc, 'strerror', None) or exc})"
    return f"a {container or 'video'} file that FFmpeg opens but decord does not: try --decoder pyav"


def _mp4_box_past_end(path: str) -> str | None:
    """The type of the first top-level MP4 box that ends past the end of the file, if any."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        at = 0
        while at + 8 <= size:
            f.seek(at)
            header = f.read(16)
            length, kind = int.from_bytes(header[:4], "big"), header[4:8].decode("latin-1")
            if length == 1 and len(header) == 16:
                length = int.from_bytes(header[8:16], "big")
            elif length == 0:  # the box runs to the end of the file
                return None
            if length < 8:
                return kind
            if at + length > size:
                return kind
            at += length
    return None


def check_video_file(path: str) -> None:
    """Raise VideoError when ``path`` is not a non-empty readable file."""
    if not os.path.exists(path):
        raise VideoError(f"{path}: file not found")
    if not os.path.isfile(path):
        raise VideoError(f"{path}: not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise VideoError(f"{path}: not readable (permission denied)")


@DECODERS.register("decord")
class DecordReader:
    """A video opened with ``decord.VideoReader``; frames come back in the order asked for."""

    def __init__(self, path: str, num_threads: int = 1) -> None:
        decord = import_decord()
        self._errors = (decord.DECORDError, RuntimeError, IndexError)
        self.path = path
        check_video_file(path)
        try:
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
        """Frames at ``indices``, one per index in the given order (repeats decoded as repeats).

        ``accurate`` uses ``get_batch`` (the reference's default); otherwise each frame is read
        after a fast seek to its nearest key frame (MMAction2's ``mode='efficient'``). ``in_order``
        asks decord for the sorted, de-duplicated indices (one pass forward, fewer seeks) and
        rearranges: the same frames on sound files, not always on damaged ones.
        """
        inds = np.asarray(indices, dtype=np.int64).reshape(-1)
        try:
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
        except self._errors as exc:
            raise VideoError(f"{self.path}: decord failed to decode frames ({_reason(exc)})") from None


@DECODERS.register("pyav")
class PyAVReader:
    """A video decoded with PyAV (FFmpeg), edit lists honoured: exact on files where decord is not,
    slower (it decodes once to count the frames, then again up to the last frame asked for)."""

    def __init__(self, path: str, num_threads: int = 1) -> None:
        self._av = import_av()
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

    def get_frames(self, indices: Sequence[int] | np.ndarray, accurate: bool = True,
                   in_order: bool = False) -> np.ndarray:
        """Frames at ``indices`` in the given order, decoded sequentially (exact on every file, in any order)."""
        inds = np.asarray(indices, dtype=np.int64).reshape(-1)
        if inds.size and (inds.min() < 0 or inds.max() >= self.num_frames):
            raise VideoError(f"{self.path}: frame index out of range (the video has {self.num_frames} frames)")
        wanted = set(inds.tolist())
        frames: dict[int, np.ndarray] = {}
        for i, frame in enumerate(self._frames()):
            if i in wanted:
                frames[i] = frame.to_ndarray(format="rgb24")
                if len(frames) == len(wanted):
                    break
        return np.stack([frames[i] for i in inds.tolist()])


def _reason(exc: Exception) -> str:
    """decord's message, first line only (its C++ errors carry a long stack trace)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@TRANSFORMS.register()
class DecordInit:
    """Open ``results['filename']``; set ``video_reader``, ``total_frames`` and ``avg_fps``.

    The reference reads the file into memory through mmcv's FileClient first; opening by path
    gives the same frames. Only ``io_backend='disk'`` is supported; other FileClient kwargs are
    accepted and ignored.
    """

    def __init__(self, io_backend: str = "disk", num_threads: int = 1, **kwargs: Any) -> None:
        if io_backend != "disk":
            raise UserError(f"DecordInit: io_backend={io_backend!r} is not supported (only 'disk')")
        self.num_threads = num_threads

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        reader = DECODERS.get(results.get("decoder", "decord"))(results["filename"], num_threads=self.num_threads)
        results["video_reader"] = reader
        results["total_frames"] = len(reader)
        results["avg_fps"] = reader.avg_fps
        return results


@TRANSFORMS.register()
class DecordDecode:
    """Decode ``results['frame_inds']`` in exactly that order into ``results['imgs']`` (N, H, W, 3) uint8.

    By default the order is never sorted or de-duplicated: decord 0.6.0's frames can depend on the
    request order on damaged files, and parity means asking as the reference does. ``--decode-order
    sorted`` (``results['decode_order']``) asks in frame order instead, for speed.
    """

    def __init__(self, mode: str = "accurate") -> None:
        if mode not in ("accurate", "efficient"):
            raise UserError(f"DecordDecode: mode must be 'accurate' or 'efficient', got {mode!r}")
        self.accurate = mode == "accurate"

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        reader = results.pop("video_reader")
        in_order = results.get("decode_order", "list") == "sorted"
        imgs = reader.get_frames(results["frame_inds"], accurate=self.accurate, in_order=in_order)
        results["imgs"] = imgs
        results["original_shape"] = imgs.shape[1:3]
        results["img_shape"] = imgs.shape[1:3]
        return results
