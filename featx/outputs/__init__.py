"""Output formats: chosen by ``--out``'s suffix or ``--out-format``, written atomically (complete or absent).

This module is the protocol every format follows (:class:`OutputFormat`), the choice of a format for
``--out``, and what lies beside every output: ``<out>.meta.json`` (provenance) and, when videos failed,
``<out>.errors.json``. Each format is one module of this package, registered in ``FORMATS`` by name: a
format writes its file from the videos in list order at the end of a run (``write``), except one that
``streams`` (a folder), which stores each video's array as it finishes (``add``).
"""
from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, ClassVar, Iterable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from featx.errors import UserError
from featx.registry import FORMATS

Features = dict[str, np.ndarray]
INDEX = "__featx_index__"  # npz / h5 member holding [listed key, member name] rows, in list order


class Row(NamedTuple):
    """One written video, as ``write`` takes it: its listed key, its array (None where ``add`` stored it
    already) and its meta entry (the sidecar's; a format may keep some of it, as Parquet keeps clip times)."""

    key: str
    array: np.ndarray | None
    entry: Mapping[str, Any]


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through a temporary file in the same folder, then rename: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _new_file_mode())  # as an ordinary open() would make it, not mkstemp's 0600
        with os.fdopen(fd, "w+b") as f:  # readable too: h5py reads what it writes
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@functools.cache
def _new_file_mode() -> int:
    """0o666 less the process's umask, read once (a later change of the umask is not seen)."""
    try:
        status = Path("/proc/self/status").read_text()
        mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration):  # not Linux: read it by setting it, strictly for the instant it takes
        mask = os.umask(0o077)
        os.umask(mask)
    return 0o666 & ~mask


def safe_names(keys: Iterable[str], *, tree: bool = False, suffix: str = "") -> dict[str, str]:
    """A relative, ``..``-free, unique member name for each listed key (``/abs/a.mp4`` -> ``abs/a.mp4``).

    ``tree``: the names are paths in a tree where a file cannot also be a folder (HDF5's groups, a
    folder of files), so with keys ``a`` and ``a/b.mp4`` the first is named ``a~2``. ``suffix``: what
    the writer appends to each name to make its file name.
    """
    bases = {}
    for key in keys:
        parts = [p for p in key.replace("\\", "/").split("/") if p not in ("", ".", "..")]
        if tree and len(parts) > 1 and parts[0] == INDEX:
            parts[0] += "~"  # the index's name cannot be a folder
        bases[key] = "/".join(parts) or "video"
    taken = {INDEX}
    for base in bases.values() if tree else ():
        parts = base.split("/")
        taken.update("/".join(parts[:i]) for i in range(1, len(parts)))
    names: dict[str, str] = {}
    for key, base in bases.items():
        name, n = base, 1
        while name + suffix in taken:
            n += 1
            name = f"{base}~{n}"
        taken.add(name + suffix)
        names[key] = name
    return names


class OutputFormat:
    """One way of writing ``{listed key: array}``; ``keys`` are all listed videos, in list order.

    A format module subclasses it and registers it (``@FORMATS.register("name")``); what it must give:
    ``suffixes`` (the ``--out`` names it is chosen by), ``write`` (or ``dump``, for one file written at
    once) and ``read``. The rest has defaults that suit a single file.
    """

    suffixes: ClassVar[tuple[str, ...]] = ()
    streams: ClassVar[bool] = False  # True: ``add`` stores each array, the partial store keeps none
    folder: ClassVar[bool] = False  # True: ``--out`` is a folder (an existing folder or a name ending in /)
    entry_fields: ClassVar[tuple[str, ...]] = ()  # the meta entry's fields ``entry`` gives (where it went)

    def __init__(self, path: Path, keys: list[str]) -> None:
        self.path = path
        self.keys = keys

    @classmethod
    def check_path(cls, path: Path) -> None:
        """Refuse (UserError) an ``--out`` this format cannot be written as, before any work."""

    def add(self, key: str, array: np.ndarray) -> None:
        """One finished video (only formats that stream write anything here)."""

    def entry(self, key: str) -> dict[str, Any]:
        """What the meta sidecar records of where ``key``'s array went (nothing, unless files are per video)."""
        return {}

    def relocated(self, key: str, entry: Mapping[str, Any]) -> dict[str, Any]:
        """``key``'s meta entry from another output (of any format), saying where this output keeps it."""
        theirs = {name for fmt in FORMATS.names() for name in FORMATS.get(fmt).entry_fields}
        return {**self.entry(key), **{name: value for name, value in entry.items() if name not in theirs}}

    def write(self, rows: Iterable[Row]) -> None:
        """The whole output from the written videos in list order, atomically; ``rows`` is read once, as it
        comes (a format that can write video by video holds one at a time)."""
        atomic_write(self.path, lambda f: self.dump({row.key: row.array for row in rows}, f))

    def dump(self, features: Features, f: IO[bytes]) -> None:
        """The output's bytes, for a format that writes all videos at once."""
        raise NotImplementedError

    @classmethod
    def read(cls, path: Path, meta: dict[str, Any] | None) -> Features:
        """The dict a ``write`` wrote (``meta``: the sidecar, for formats without keys)."""
        raise NotImplementedError

    def reusable(self, meta: dict[str, Any]) -> dict[str, np.ndarray | None]:
        """What the output at this path, written as its sidecar ``meta`` says, holds for a rerun to keep."""
        return FORMATS.get(meta["format"]).read(self.path, meta)

    def taken(self, source: Path, meta: dict[str, Any], keys: Sequence[str]) -> Iterator[Row]:
        """``keys``' rows from the featx output at ``source`` (``meta``: its sidecar), for ``write``: what
        ``featx merge`` gives this output from one shard (read whole, held until the last key is taken)."""
        features = FORMATS.get(meta["format"]).read(source, meta)
        for key in keys:
            yield Row(key, features[key], self.relocated(key, meta["videos"][key]))

    def remove(self, entries: Iterable[dict[str, Any]]) -> None:
        """Remove what videos no longer listed left beside the output (their sidecar entries): only a folder has any."""


def format_for(path: Path, name: str | None) -> type[OutputFormat]:
    """``--out-format`` if given, else the format ``--out``'s suffix (or an existing folder) names."""
    if name is not None:
        return FORMATS.get(name)
    formats = [FORMATS.get(fmt) for fmt in FORMATS.names()]
    if path.is_dir():
        return next(fmt for fmt in formats if fmt.folder)
    suffix = path.suffix.lower()
    for fmt in formats:
        if suffix in fmt.suffixes:
            return fmt
    known = ", ".join(s for fmt in formats for s in fmt.suffixes)
    folders = ", ".join(FORMATS.name_of(fmt) for fmt in formats if fmt.folder)
    raise UserError(f"--out {path}: unsupported suffix {suffix or '(none)'!r}; use one of {known}, "
                    f"or --out-format {folders} for a folder of .npy files")


def open_output(out: str | Path, out_format: str | None, keys: list[str]) -> OutputFormat:
    """Validate ``--out`` before any work (format, folder that exists or can be made) and return its writer."""
    path = Path(out)
    if out_format is None and str(out).endswith(("/", os.sep)):
        out_format = next(fmt for fmt in FORMATS.names() if FORMATS.get(fmt).folder)
    fmt = format_for(path, out_format)
    if fmt.folder and path.exists() and not path.is_dir():
        raise UserError(f"--out {path}: exists and is not a folder")
    if not fmt.folder and path.is_dir():
        raise UserError(f"--out {path}: is a folder; the {FORMATS.name_of(fmt)} format writes a file")
    fmt.check_path(path)
    folder = path if fmt.folder else path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {path}: cannot create its folder: {exc.strerror}") from exc
    for where in {folder, path.parent}:  # the output and its sidecars (.partial, .meta.json)
        check_writable(where, path)
    return fmt(path, keys)


def check_writable(folder: Path, out: Path) -> None:
    """Create and remove a file in ``folder``: permissions alone do not tell (``/proc``, a read-only mount)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".featx-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write in folder {folder}: {exc.strerror}") from exc


def sidecar(out: Path, what: str) -> Path:
    """``<out>.<what>``: the partial store, meta and error report lie beside the output."""
    return out.with_name(out.name + "." + what)


def meta_path(out: Path) -> Path:
    return sidecar(out, "meta.json")


def error_report_path(out: Path) -> Path:
    return sidecar(out, "errors.json")


def write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1)
    atomic_write(path, lambda f: f.write(text.encode()))


def write_meta(out: Path, header: Mapping[str, Any], videos: Iterable[tuple[str, Mapping[str, Any]]],
               failures: Sequence[tuple[str, str]]) -> None:
    """``<out>.meta.json``: ``header``'s fields, then ``videos`` (``{key: entry}``) one a line as they come, so
    that no more than one video's entry need be in memory, then the failures; written atomically."""
    head = json.dumps({**header, "videos": None}, indent=1)

    def dump(f: IO[bytes]) -> None:
        f.write(head[:head.rindex('"videos": null')].encode() + b'"videos": {')
        _rows(f, (f"{json.dumps(key)}: {json.dumps(entry, separators=(',', ':'))}" for key, entry in videos))
        f.write(b'\n },\n "failed": [')
        _rows(f, (json.dumps({"video": key, "reason": reason}) for key, reason in failures))
        f.write(b"\n ]\n}\n")

    atomic_write(meta_path(out), dump)


def _rows(f: IO[bytes], rows: Iterable[str]) -> None:
    """JSON members or items, one a line, comma-separated."""
    for n, row in enumerate(rows):
        f.write((",\n  " if n else "\n  ").encode() + row.encode())


def write_error_report(out: Path, failures: list[tuple[str, str]]) -> Path | None:
    """``<out>.errors.json``: ``[{"video", "reason"}, ...]``, written atomically; removed when nothing failed."""
    path = error_report_path(out)
    if not failures:
        path.unlink(missing_ok=True)
        return None
    write_json(path, [{"video": key, "reason": reason} for key, reason in failures])
    return path


class FeatureFile(NamedTuple):
    """What ``load`` returns: ``features, meta = featx.load(path)``."""

    features: Features  # {listed key: float32 array}, in list order
    meta: dict[str, Any] | None  # the <out>.meta.json sidecar, None when there is none


def load(path: str | Path) -> FeatureFile:
    """Read a featx output in any format (told by its meta sidecar, else by its suffix) and its metadata."""
    path = Path(path)
    sidecar_file = meta_path(path)
    meta = json.loads(sidecar_file.read_text()) if sidecar_file.exists() else None
    fmt = FORMATS.get(meta["format"]) if meta else format_for(path, None)
    return FeatureFile(fmt.read(path, meta), meta)
