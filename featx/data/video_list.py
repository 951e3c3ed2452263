"""The video list: one video per line, as MMAction2's feature extraction reads it."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from featx.errors import UserError


@dataclass(frozen=True)
class VideoItem:
    """One listed video: ``key`` is the line as listed (the output is keyed by it), ``path`` the file."""

    key: str
    path: str


def _parse_key(line: str) -> str:
    """The line minus an optional trailing integer label (``name.mp4 3`` -> ``name.mp4``)."""
    parts = line.rsplit(maxsplit=1)
    if len(parts) == 2:
        try:
            int(parts[1])
        except ValueError:
            return line
        return parts[0]
    return line


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp")


def find_videos(video_root: str | Path, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> list[VideoItem]:
    """Every file under ``video_root`` whose suffix is in ``extensions`` (any case), sorted by relative path."""
    root = Path(video_root)
    if not root.is_dir():
        raise UserError(f"--video-root {video_root}: no such folder")
    wanted = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    keys = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix.lower() in wanted and p.is_file())
    if not keys:
        raise UserError(f"--video-root {video_root}: no video files ({', '.join(sorted(wanted))}) in it")
    return [VideoItem(key=key, path=os.path.join(video_root, key)) for key in keys]


def read_video_list(list_file: str | Path, video_root: str | Path) -> list[VideoItem]:
    """Read ``list_file``: one video per line, blank lines and ``#`` comments skipped.

    Each key is joined to ``video_root`` (an absolute key stays absolute). Raises UserError when
    the list is missing, unreadable, empty, or names a video twice.
    """
    try:
        text = Path(list_file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"video list {list_file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read video list {list_file}: {exc}") from None

    first_line: dict[str, int] = {}
    items: list[VideoItem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key = _parse_key(line)
        if key in first_line:
            raise UserError(f"video list {list_file}: {key!r} is listed twice (lines {first_line[key]} and {number})")
        first_line[key] = number
        items.append(VideoItem(key=key, path=os.path.join(video_root, key)))
    if not items:
        raise UserError(f"video list {list_file} lists no videos")
    return items
