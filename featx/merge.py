"""``featx merge``: the outputs of one list's shards (``--shard K/N``) joined into one output, in list order,
one shard's arrays in memory at a time.

The shards must share one fingerprint (the config, checkpoint and options that decide the vectors; not the
video root, which differs between machines, nor the output format) and one video list. The merged output,
its meta sidecar and its error report are written as a run writes them (atomically); a video that no shard
holds is reported with the shard that should have held it, and the command exits 1, as for failed videos.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from featx.data.video_list import read_video_list
from featx.errors import UserError
from featx.outputs import OutputFormat, Row, meta_path, open_output, write_error_report, write_meta
from featx.registry import FORMATS
from featx.shards import Shard, list_digest
from featx.store import differences
from featx.wording import count

log = logging.getLogger(__name__)

# fingerprint entries shards may differ in: where each machine mounts the videos, and how each stores its output
LOCAL = ("video root", "folder output")


@dataclass
class ShardOutput:
    """One shard's output: where it lies, in what format, and what its meta sidecar says (but its videos)."""

    path: Path
    meta: dict[str, Any]  # the sidecar without "videos" and "failed"; its "shard" section without "keys"
    keys: list[str]  # the shard's slice of the list
    failed: list[dict[str, str]]

    @classmethod
    def read(cls, path: Path) -> ShardOutput:
        """The shard output at ``path``; one that is not a featx shard output is bad input."""
        sidecar = meta_path(path)
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
        try:
            meta = json.loads(sidecar.read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: not a featx output (no {sidecar.name} beside it)") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: its meta sidecar {sidecar.name} cannot be read ({exc})") from None
        if not isinstance(meta, dict) or not {"shard", "fingerprint", "format", "videos", "failed"} <= meta.keys():
            raise UserError(f"{path}: not the output of a shard (its {sidecar.name} has no shard section: "
                            "made without --shard, or by an older featx)")
        del meta["videos"]
        return cls(path, meta, meta["shard"].pop("keys"), meta.pop("failed"))

    @property
    def shard(self) -> Shard:
        return Shard(self.meta["shard"]["index"], self.meta["shard"]["count"])

    @property
    def start(self) -> int:
        return self.meta["shard"]["start"]

    @property
    def end(self) -> int:
        return self.meta["shard"]["end"]

    def full_meta(self) -> dict[str, Any]:
        """The whole sidecar, read again (with every video's entry): for one shard at a time."""
        return json.loads(meta_path(self.path).read_text())

    def shared(self) -> dict[str, Any]:
        """What every shard of one run has alike: the fingerprint, less what is local to a machine."""
        return {name: value for name, value in self.meta["fingerprint"].items() if name not in LOCAL}


@dataclass
class Segment:
    """Positions ``[lo, hi)`` of the list: taken from ``source``, or, without one, in no shard given."""

    lo: int
    hi: int
    source: ShardOutput | None = None
    reason: str = ""  # why no shard has them
    keys: list[str] = field(default_factory=list)


def merge(paths: Sequence[str], out: str, out_format: str | None = None, video_list: str | None = None) -> int:
    """Merge the shard outputs at ``paths`` into ``out``; return the exit status (0 all written, 1 videos
    failed or in no shard). Shards that do not belong together are bad input (UserError)."""
    started = time.monotonic()
    shards = [ShardOutput.read(Path(p)) for p in paths]
    if any(Path(out).resolve() == s.path.resolve() for s in shards):
        raise UserError(f"--out {out}: is one of the shards; merge into another output")
    check_alike(shards)
    segments = plan(shards)
    gaps = [s for s in segments if s.source is None]
    names = whole_list(video_list, shards[0]) if gaps or video_list else None
    for gap in gaps:
        gap.keys = names[gap.lo:gap.hi] if names else [f"(video {i + 1} of the list)" for i in range(gap.lo, gap.hi)]
        log.warning("%s of the list: %s%s", _positions(gap.lo, gap.hi), gap.reason,
                    "" if names else ": pass --video-list to name them")
    output = open_output(out, out_format, [key for s in segments for key in s.keys])
    log.info("merging %s of %s -> %s", count(len(segments) - len(gaps), "shard"),
             count(shards[0].meta["shard"]["listed"], "listed video"), output.path)
    failures, written = write_arrays(output, segments)
    header = {**shards[0].meta, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "format": FORMATS.name_of(type(output)),
              "fingerprint": {**shards[0].meta["fingerprint"], "folder output": output.streams},
              "merged": [{"file": str(s.source.path), "shard": f"{s.source.shard.index}/{s.source.shard.count}",
                          "video_root": s.source.meta["video_root"]} for s in segments if s.source is not None]}
    del header["shard"]
    write_meta(output.path, header, entries(output, segments), failures)
    report = write_error_report(output.path, failures)
    log.info("%d written, %d failed (%d in no shard), in %.1f s -> %s%s", written, len(failures),
             sum(s.hi - s.lo for s in gaps), time.monotonic() - started, output.path,
             f"; failures listed in {report}" if report else "")
    return 1 if failures else 0


def check_alike(shards: list[ShardOutput]) -> None:
    """Refuse shards of other settings or of another list than the first's, naming the shard and what differs."""
    first = shards[0]
    for other in shards[1:]:
        if other.shared() != first.shared():
            raise UserError(f"{other.path} was made with other settings than {first.path} "
                            f"({differences(first.shared(), other.shared())}): merge the shards of one run")
        ours, theirs = (s.meta["shard"] for s in (first, other))
        if (ours["listed"], ours["list sha256"]) != (theirs["listed"], theirs["list sha256"]):
            raise UserError(f"{other.path} is a shard of another video list than {first.path} ({theirs['listed']} "
                            f"videos, sha256 {theirs['list sha256'][:12]}.., against {ours['listed']}, "
                            f"{ours['list sha256'][:12]}..): merge the shards of one list")


def plan(shards: list[ShardOutput]) -> list[Segment]:
    """The list, position by position, as the shards cover it: each shard's slice in list order (where shards
    overlap, as shards of different counts can, the earlier one's videos are taken) and the gaps between."""
    listed = shards[0].meta["shard"]["listed"]
    segments: list[Segment] = []
    at, before = 0, None
    for shard in sorted(shards, key=lambda s: (s.start, -s.end)):
        if shard.start < at and shard.end <= at:
            if shard.end > shard.start:
                log.info("%s: its videos are in an earlier shard already", shard.path)
            continue
        if shard.start > at:
            segments.append(Segment(at, shard.start, reason=_not_given(at, shard.start, before, shard)))
        lo = max(at, shard.start)
        segments.append(Segment(lo, shard.end, shard, keys=shard.keys[lo - shard.start:]))
        at, before = max(at, shard.end), shard
    if at < listed:
        segments.append(Segment(at, listed, reason=_not_given(at, listed, before, None)))
    return segments


def _not_given(lo: int, hi: int, before: ShardOutput | None, after: ShardOutput | None) -> str:
    """``in no shard (shard 3 of 8 was not given)``: which shards, of a neighbour's count, hold ``[lo, hi)``."""
    section = (after or before).meta["shard"]  # type: ignore[union-attr]  (a gap has a shard beside it)
    n, listed = section["count"], section["listed"]
    if section["by"] == "count":  # the first shard j whose end, (j + 1) * listed // n, is past the position
        first, last = (((p + 1) * n + listed - 1) // listed - 1 for p in (lo, hi - 1))
    elif before is not None and after is not None and before.shard.count != after.shard.count:
        return "in no shard given"
    else:  # by size: the shards between the neighbours
        first = before.shard.index + 1 if before is not None else 0
        last = after.shard.index - 1 if after is not None else n - 1
    return f"in no shard (shard {first} of {n} was not given)" if first == last else (
        f"in no shard (shards {first}-{last} of {n} were not given)")


def _positions(lo: int, hi: int) -> str:
    """Positions ``[lo, hi)`` as a reader counts videos in the list, from 1."""
    return f"video {hi}" if hi - lo == 1 else f"videos {lo + 1}-{hi}"


def whole_list(video_list: str | None, shard: ShardOutput) -> list[str] | None:
    """The keys of the list the shards were made from: ``--video-list``, else the list file the shards
    recorded when it is still there unchanged; None when neither can say (the shards hold their slices only)."""
    section = shard.meta["shard"]
    path = video_list or section["list file"]
    if path is None or (video_list is None and not os.path.isfile(path)):
        return None
    keys = [item.key for item in read_video_list(path, "")]
    if list_digest(keys) == section["list sha256"]:
        return keys
    if video_list is not None:
        raise UserError(f"--video-list {video_list}: not the list the shards were made from ({len(keys)} videos, "
                        f"the shards' list {section['listed']}, or another order)")
    log.warning("%s, the list the shards were made from, has changed since", path)
    return None


def write_arrays(output: OutputFormat, segments: list[Segment]) -> tuple[list[tuple[str, str]], int]:
    """Write the output from the shards, one shard's arrays read at a time (as ``output.taken`` gives them: a
    folder links a folder shard's files); return the failures, in list order, and how many videos were written."""
    failures: list[tuple[str, str]] = []
    written = 0

    def rows() -> Iterator[Row]:
        nonlocal written
        for segment in segments:
            source = segment.source
            if source is None:
                failures.extend((key, segment.reason) for key in segment.keys)
                continue
            taken = set(segment.keys)
            failures.extend((f["video"], f["reason"]) for f in source.failed if f["video"] in taken)
            meta = source.full_meta()
            held = [key for key in segment.keys if key in meta["videos"]]
            written += len(held)
            yield from output.taken(source.path, meta, held)

    output.write(rows())
    return failures, written


def entries(output: OutputFormat, segments: list[Segment]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each written video's meta entry, in list order, read from one shard's sidecar at a time, saying where
    the video is in this output."""
    for segment in segments:
        if segment.source is None:
            continue
        videos = segment.source.full_meta()["videos"]
        for key in segment.keys:
            if key in videos:
                yield key, output.relocated(key, videos[key])

