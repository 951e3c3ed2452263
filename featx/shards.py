"""Independent shards of one video list, for job arrays and machines that do not talk to each other.

Shard ``k`` of ``n`` is a contiguous slice of the list, the same on every machine: balanced by count
(sizes differ by at most one video) or by the videos' file sizes. Each shard is a whole run of its
own, writing ``<out stem>.shard-KKKK-of-NNNN<suffix>`` beside ``--out`` with its own sidecars; its
meta sidecar says which slice of which list it holds, so ``featx merge`` (:mod:`featx.merge`) can
join the shards in list order and name what no shard has.
"""
from __future__ import annotations

import bisect
import hashlib
import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from featx.data.video_list import VideoItem
from featx.errors import UserError
from featx.meta import ShardSection

SHARD_BY = ("count", "size")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (from 0) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"shard {self.index} of {self.count}"

    def output(self, out: str) -> str:
        """Where this shard writes: ``feats.pkl`` -> ``feats.shard-0003-of-0064.pkl``; a folder output
        ``feats/`` (or an existing folder) -> ``feats.shard-0003-of-0064/``."""
        tag = f".shard-{self.index:04d}-of-{self.count:04d}"
        if out.endswith(("/", os.sep)) or os.path.isdir(out):
            return out.rstrip("/" + os.sep) + tag + os.sep
        path = Path(out)
        return str(path.with_name(path.stem + tag + path.suffix))


def parse_shard(text: str, environ: Mapping[str, str] = os.environ) -> Shard:
    """``--shard K/N`` (K from 0), or ``auto``: Slurm's ``SLURM_ARRAY_TASK_ID`` of ``SLURM_ARRAY_TASK_COUNT``."""
    if text == "auto":
        try:
            task, count = int(environ["SLURM_ARRAY_TASK_ID"]), int(environ["SLURM_ARRAY_TASK_COUNT"])
            # A job array's ids need not start at 0 nor be consecutive (--array=1-64, --array=0-126:2).
            index = (task - int(environ.get("SLURM_ARRAY_TASK_MIN", 0))) // int(environ.get("SLURM_ARRAY_TASK_STEP", 1))
        except (KeyError, ValueError, ZeroDivisionError):
            raise UserError("--shard auto: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are not set "
                            "(run it as a Slurm job array, or give --shard K/N)") from None
        if count == 1:  # `sbatch --array=17` to rerun one task would otherwise take the whole list
            raise UserError(f"--shard auto: this job array has one task (SLURM_ARRAY_TASK_ID={task}); to rerun "
                            f"one shard of N, give --shard {task}/N")
    else:
        match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
        if not match:
            raise UserError(f"--shard {text}: give K/N (shard K of N, K from 0) or auto")
        index, count = int(match.group(1)), int(match.group(2))
    if not 0 <= index < count:
        raise UserError(f"--shard {text}: shard {index} of {count} does not exist (K runs from 0 to N-1)")
    return Shard(index, count)


def bounds(items: Sequence[VideoItem], shard: Shard, by: str = "count") -> tuple[int, int]:
    """``[start, end)`` of ``shard``'s slice of ``items``.

    ``by='count'``: slices differ by at most one video. ``by='size'``: a video belongs to the shard in
    whose ``1/n`` of the list's bytes its middle byte lies (a missing file counts as 0 bytes; exact
    integer arithmetic, so every machine that sees the same files cuts at the same places).
    """
    n, k = len(items), shard.count
    if by == "count":
        return shard.index * n // k, (shard.index + 1) * n // k
    sizes = [os.path.getsize(it.path) if os.path.isfile(it.path) else 0 for it in items]
    total = sum(sizes)
    # twice each video's middle byte, times k: video i is in shard j when j * 2 * total <= middles[i] < (j+1) * ...
    middles = [(2 * before + size) * k for before, size in zip(itertools.accumulate([0, *sizes]), sizes)]

    def cut(j: int) -> int:  # where shard j starts
        return bisect.bisect_left(middles, j * 2 * total) if total else j * n // k

    return cut(shard.index), cut(shard.index + 1) if shard.index + 1 < k else n


def list_digest(keys: Iterable[str]) -> str:
    """sha256 of the listed keys, one a line: shards of one list share it."""
    digest = hashlib.sha256()
    for key in keys:
        digest.update(key.encode() + b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class ShardSlice:
    """A shard's slice of the listed videos, and what its meta sidecar records of it."""

    shard: Shard
    by: str
    start: int
    end: int
    items: list[VideoItem]
    listed: int
    digest: str
    list_file: str | None

    @classmethod
    def of(cls, items: Sequence[VideoItem], shard: Shard, by: str, list_file: str | None) -> ShardSlice:
        start, end = bounds(items, shard, by)
        return cls(shard, by, start, end, list(items[start:end]), len(items), list_digest(it.key for it in items),
                   os.path.abspath(list_file) if list_file else None)

    def describe(self, out: str) -> str:
        """``shard 3 of 64 (by count): videos 47-62 of the 1000 listed -> feats.shard-0003-of-0064.pkl``"""
        videos = {0: "no videos", 1: f"video {self.end}"}.get(self.end - self.start, f"videos {self.start + 1}-{self.end}")
        return f"{self.shard} (by {self.by}): {videos} of the {self.listed} listed -> {out}"

    def section(self) -> ShardSection:
        """The meta sidecar's ``shard`` section: which slice of which list (its keys last, in list order)."""
        return ShardSection(self.shard.index, self.shard.count, self.by, self.start, self.end, self.listed,
                            self.digest, self.list_file, [it.key for it in self.items])
