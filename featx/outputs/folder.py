"""``--out feats/`` (``--out-format dir``): a folder with one ``<listed path>.npy`` per video, each written
(atomically) as the video finishes, so the partial store keeps no array; a rerun keeps the files already
there, and ``featx merge`` links a folder shard's files instead of copying them."""
from __future__ import annotations

import os
import posixpath
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from featx.outputs import Features, OutputFormat, Row, atomic_write, safe_names
from featx.registry import FORMATS


@FORMATS.register("dir")
class DirFormat(OutputFormat):
    """A folder with one ``<listed path>.npy`` per video; the meta entry's ``file`` says which."""

    streams = True
    folder = True
    entry_fields = ("file",)

    def __init__(self, path: Path, keys: list[str]) -> None:
        super().__init__(path, keys)
        self.names = safe_names(keys, tree=True, suffix=".npy")

    def entry(self, key: str) -> dict[str, Any]:
        return {"file": self.names[key] + ".npy"}

    def add(self, key: str, array: np.ndarray) -> None:
        target = self.path / self.entry(key)["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda f: np.save(f, array))

    def write(self, rows: Iterable[Row]) -> None:
        """Files for the arrays that ``add`` has not stored yet (a merge's); None: stored already."""
        for key, array, _ in rows:
            if array is not None:
                self.add(key, array)

    def reusable(self, meta: dict[str, Any]) -> dict[str, np.ndarray | None]:
        """The listed videos whose file is there, where this list puts it; their arrays stay on disk (None)."""
        return {key: None for key, video in meta["videos"].items()
                if key in self.names and video.get("file") == self.entry(key)["file"]
                and (self.path / video["file"]).is_file()}

    def taken(self, source: Path, meta: dict[str, Any], keys: Sequence[str]) -> Iterator[Row]:
        """From a folder, each file hard-linked (copied across file systems); from a file, its arrays."""
        if meta["format"] != FORMATS.name_of(DirFormat):
            yield from super().taken(source, meta, keys)
            return
        for key in keys:
            _link(source / meta["videos"][key]["file"], self.path / self.entry(key)["file"])
            yield Row(key, None, self.relocated(key, meta["videos"][key]))

    def remove(self, entries: Iterable[dict[str, Any]]) -> None:
        listed = {self.entry(key)["file"] for key in self.keys}  # a name a listed video now has stays
        for entry in entries:
            if entry.get("file") and entry["file"] not in listed:
                (self.path / entry["file"]).unlink(missing_ok=True)

    @classmethod
    def read(cls, path: Path, meta: dict[str, Any] | None) -> Features:
        if meta is not None:
            return {key: np.load(path / video["file"]) for key, video in meta["videos"].items()}
        files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*.npy") if p.is_file())
        return {posixpath.splitext(name)[0]: np.load(path / name) for name in files}


def _link(source: Path, target: Path) -> None:
    """``target`` becomes a hard link to ``source`` (a copy across file systems), atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.merge")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)
