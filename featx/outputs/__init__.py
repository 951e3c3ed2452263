"""Output formats: chosen by ``--out``'s suffix or ``--out-format``, written atomically (complete or absent).

Every format is a class in ``FORMATS``. A format writes the whole file at the end of a run
(``write``), except ``dir``, which writes each video's ``.npy`` as it finishes (``add``). Beside
every output lie ``<out>.meta.json`` (provenance) and, when videos failed, ``<out>.errors.json``.
"""
from __future__ import annotations

import functools
import json
import os
import pickle
import posixpath
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any, Callable, ClassVar, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from featx.errors import UserError
from featx.registry import FORMATS

Features = dict[str, np.ndarray]
INDEX = "__featx_index__"  # npz / h5 member holding [listed key, member name] rows, in list order


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
    """One way of writing ``{listed key: array}``; ``keys`` are all listed videos, in list order."""

    suffixes: ClassVar[tuple[str, ...]] = ()
    streams: ClassVar[bool] = False  # True: ``add`` stores each array, the partial store keeps none

    def __init__(self, path: Path, keys: list[str]) -> None:
        self.path = path
        self.keys = keys

    def add(self, key: str, array: np.ndarray) -> None:
        """One finished video (only formats that stream write anything here)."""

    def entry(self, key: str) -> dict[str, Any]:
        """What the meta sidecar records of where ``key``'s array went (nothing, unless files are per video)."""
        return {}

    def write(self, features: Features) -> None:
        """The whole output, in list order, atomically."""
        atomic_write(self.path, lambda f: self.dump(features, f))

    def dump(self, features: Features, f: IO[bytes]) -> None:
        raise NotImplementedError

    @classmethod
    def read(cls, path: Path, meta: dict[str, Any] | None) -> Features:
        """The dict a ``write`` wrote (``meta``: the sidecar, for formats without keys)."""
        raise NotImplementedError

    def reusable(self, meta: dict[str, Any]) -> dict[str, np.ndarray | None]:
        """What the output at this path, written as its sidecar ``meta`` says, holds for a rerun to keep."""
        return FORMATS.get(meta["format"]).read(self.path, meta)

    def remove(self, entries: Iterable[dict[str, Any]]) -> None:
        """Remove what videos no longer listed left beside the output (their sidecar entries): only a folder has any."""


@FORMATS.register("pkl")
class PickleFormat(OutputFormat):
    """A pickle of ``{key: float32 array}`` (the default)."""

    suffixes = (".pkl", ".pickle")

    def dump(self, features: Features, f: IO[bytes]) -> None:
        pickle.dump(features, f, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def read(cls, path: Path, meta: dict[str, Any] | None) -> Features:
        with open(path, "rb") as f:
            return pickle.load(f)


@FORMATS.register("json")
class JsonFormat(OutputFormat):
    """``{key: (nested) list of floats}``."""

    suffixes = (".json",)

    def dump(self, features: Features, f: IO[bytes]) -> None:
        """Video by video, so the text of one vector at a time is in memory, not of all of them."""
        f.write(b"{")
        for n, (key, array) in enumerate(features.items()):
            f.write(f"{', ' if n else ''}{json.dumps(key)}: {json.dumps(array.tolist())}".encode())
        f.write(b"}")

    @classmethod
    def read(cls, path: Path, meta: dict[str, Any] | None) -> Features:
        return {k: np.asarray(v, dtype=np.float32) for k, v in json.loads(path.read_text()).items()}


@FORMATS.register("list")
class ListFormat(OutputFormat):
    """MMAction2's own output: a list in list order (pickle, or JSON for a ``.json`` name); a video
    that failed is ``None`` there, so positions still match the video list."""

    suffixes = ()

    def dump(self, features: Features, f: IO[bytes]) -> None:
        rows = [features.get(k) for k in self.keys]
        if self.path.suffix.lower() == ".json":
            f.write(json.dumps([None if r is None else r.tolist() for r in rows]).encode())
        else:
            pickle.dump(rows, f, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def read(cls, path: Path, meta: dict[str, Any] | None) -> Features:
        if path.suffix.lower() == ".json":
            rows = [None if r is None else np.asarray(r, dtype=np.float32) for r in json.loads(path.read_text())]
        else:
            with open(path, "rb") as f:
                rows = pickle.load(f)
        if meta is None:
            raise UserError(f"{path}: a list output needs its {meta_path(path).name} to know which video is which")
        return dict(zip(meta["videos"], (r for r in rows if r is not None)))


@FORMATS.register("npz")
class NpzFormat(OutputFormat):
    """A numpy ``.npz``: one array per video under a safe name, and an index of the listed keys."""

    suffixes = (".npz",)

    def dump(self, features: Features, f: IO[bytes]) -> None:
        names = safe_names(features)
        index = np.array([[k, names[k]] for k in features], dtype=str).reshape(-1, 2)
        # The members written one by one, as np.savez would: its keyword arguments cannot be named "file".
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as npz:
            for name, array in [*((names[k], v) for k, v in features.items()), (INDEX, index)]:
                with npz.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)

    @classmethod
    def read(cls, path: Path, meta: dict[str, Any] | None) -> Features:
        with np.load(path, allow_pickle=False) as npz:
            # by the members' full names: npz["x.npy"] alone would open video "x"'s member
            return {key: npz[name + ".npy"] for key, name in npz[INDEX + ".npy"].tolist()}


@FORMATS.register("h5")
class H5Format(OutputFormat):
    """HDF5 (``pip install 'featx[h5]'``): one dataset per video under its safe name (slashes become groups)."""

    suffixes = (".h5", ".hdf5")

    def __init__(self, path: Path, keys: list[str]) -> None:
        import_h5py()  # before any work, not at the end
        super().__init__(path, keys)

    def dump(self, features: Features, f: IO[bytes]) -> None:
        h5py = import_h5py()
        names = safe_names(features, tree=True)
        with h5py.File(f, "w") as h5:
            for key, array in features.items():
                h5.create_dataset(names[key], data=array)
            h5.create_dataset(INDEX, data=np.array([[k, names[k]] for k in features], dtype=object).reshape(-1, 2),
                              dtype=h5py.string_dtype())

    @classmethod
    def read(cls, path: Path, meta: dict[str, Any] | None) -> Features:
        h5py = import_h5py()
        with h5py.File(path, "r") as h5:
            return {key.decode(): h5[name.decode()][()] for key, name in h5[INDEX][()].tolist()}


def import_h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise UserError("the h5 format needs h5py: pip install 'featx[h5]'") from None
    return h5py


@FORMATS.register("dir")
class DirFormat(OutputFormat):
    """A folder with one ``<listed path>.npy`` per video, each written (atomically) as the video finishes."""

    streams = True

    def __init__(self, path: Path, keys: list[str]) -> None:
        super().__init__(path, keys)
        self.names = safe_names(keys, tree=True, suffix=".npy")

    def entry(self, key: str) -> dict[str, Any]:
        return {"file": self.names[key] + ".npy"}

    def add(self, key: str, array: np.ndarray) -> None:
        target = self.path / self.entry(key)["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda f: np.save(f, array))

    def write(self, features: Features) -> None:
        """Nothing left to write: every array went to its file in ``add``."""

    def reusable(self, meta: dict[str, Any]) -> dict[str, np.ndarray | None]:
        """The listed videos whose file is there, where this list puts it; their arrays stay on disk (None)."""
        return {key: None for key, video in meta["videos"].items()
                if key in self.names and video.get("file") == self.entry(key)["file"]
                and (self.path / video["file"]).is_file()}

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


def format_for(path: Path, name: str | None) -> type[OutputFormat]:
    """``--out-format`` if given, else the format ``--out``'s suffix (or an existing folder) names."""
    if name is not None:
        return FORMATS.get(name)
    if path.is_dir():
        return DirFormat
    suffix = path.suffix.lower()
    for fmt in FORMATS.names():
        if suffix in FORMATS.get(fmt).suffixes:
            return FORMATS.get(fmt)
    known = ", ".join(s for fmt in FORMATS.names() for s in FORMATS.get(fmt).suffixes)
    raise UserError(f"--out {path}: unsupported suffix {suffix or '(none)'!r}; use one of {known}, "
                    "or --out-format dir for a folder of .npy files")


def open_output(out: str | Path, out_format: str | None, keys: list[str]) -> OutputFormat:
    """Validate ``--out`` before any work (format, folder that exists or can be made) and return its writer."""
    path = Path(out)
    if out_format is None and str(out).endswith(("/", os.sep)):
        out_format = "dir"
    fmt = format_for(path, out_format)
    if fmt is DirFormat and path.exists() and not path.is_dir():
        raise UserError(f"--out {path}: exists and is not a folder")
    if fmt is not DirFormat and path.is_dir():
        raise UserError(f"--out {path}: is a folder; the {FORMATS.name_of(fmt)} format writes a file")
    if fmt is ListFormat and path.suffix.lower() not in (".pkl", ".pickle", ".json"):
        raise UserError(f"--out {path}: the list format is written as .pkl, .pickle or .json")
    folder = path if fmt is DirFormat else path.parent
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
