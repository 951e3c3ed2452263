"""What a reader asks before and after opening a file: is it there at all and a video at all, and, when
a decoder cannot open it, why (not a video, a truncated MP4, FFmpeg's complaint); the frames its
container shows. Every reader asks the same, so a file gets the same plain reason whatever its suffix
and whichever decoder reads it."""
from __future__ import annotations

import os

from featx.data.decoders import import_backend
from featx.errors import VideoError

CONTAINER_SIGNATURES = (  # (offset, magic bytes, name)
    (4, b"ftyp", "MP4/MOV"), (0, b"RIFF", "AVI"), (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"FLV", "FLV"), (0, b"\x00\x00\x01\xba", "MPEG-PS"), (0, b"OggS", "Ogg"),
    (0, b"\x47", "MPEG-TS"), (188, b"\x47", "MPEG-TS"),  # two 188-byte packets: both must match
)


NOT_A_VIDEO = "not a video file"
UNREADABLE = f"{NOT_A_VIDEO} (its first bytes match no video container, and FFmpeg reads no video from it)"
# FFmpeg demuxers that read a text file as "video" (the tty demuxer renders .txt/.ans/.nfo files as frames)
TEXT_DEMUXERS = frozenset({"tty"})


def check_video_file(path: str) -> None:
    """Raise VideoError when ``path`` is not a non-empty readable file, or not a video at all."""
    if not os.path.exists(path):
        raise VideoError(f"{path}: file not found")
    if not os.path.isfile(path):
        raise VideoError(f"{path}: not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise VideoError(f"{path}: not readable (permission denied)")
    if container_of(path) is None:  # rare for real videos: only then is FFmpeg asked
        reason = _ffmpeg_sees_no_video(path)
        if reason is not None:
            raise VideoError(f"{path}: {reason}")


def container_of(path: str) -> str | None:
    """The video container the file's first bytes show (``MP4/MOV``, ``AVI``, ...), None if none."""
    with open(path, "rb") as f:
        head = f.read(189)
    matches = [name for at, magic, name in CONTAINER_SIGNATURES if head[at:at + len(magic)] == magic]
    return next((name for name in matches if name != "MPEG-TS" or matches.count(name) == 2), None)


def _ffmpeg_sees_no_video(path: str) -> str | None:
    """:data:`UNREADABLE` for a file whose first bytes match no container when FFmpeg cannot open it,
    reads it as text (whatever its suffix) or finds no video stream in it; None when it reads a video."""
    av = import_backend("av", "av")
    try:
        with av.open(path) as container:
            if container.format.name in TEXT_DEMUXERS or not container.streams.video:
                return UNREADABLE
    except av.FFmpegError:
        return UNREADABLE
    return None


def container_frame_count(path: str) -> int | None:
    """Frames the container shows, counted from its packets without decoding (edit lists applied)."""
    av = import_backend("av", "av")
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            return sum(1 for p in container.demux(stream) if p.size and not p.is_discard)
    except (av.FFmpegError, IndexError):
        return None


def why_unopenable(path: str) -> str:
    """A specific reason for a file that a decoder cannot open: not a video at all, a truncated MP4, or
    FFmpeg's own complaint about a damaged one."""
    container = container_of(path)
    if container == "MP4/MOV":
        cut = _mp4_box_past_end(path)
        if cut is not None:
            return f"truncated MP4: its {cut!r} box runs past the end of the file (an interrupted download or copy?)"
    av = import_backend("av", "av")
    try:
        with av.open(path):
            pass
    except av.FFmpegError as exc:
        if container is None:
            return UNREADABLE
        return f"a damaged {container} file (FFmpeg: {getattr(exc, 'strerror', None) or exc})"
    return f"a {container or 'video'} file that FFmpeg opens but this decoder does not: try --decoder pyav"


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
