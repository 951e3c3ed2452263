"""Writing the features file: chosen by suffix, written atomically (complete or absent)."""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import IO, Callable

import numpy as np

from featx.errors import UserError

Features = dict[str, np.ndarray]


def _write_pickle(features: Features, f: IO[bytes]) -> None:
    pickle.dump(features, f, protocol=pickle.HIGHEST_PROTOCOL)


def _write_json(features: Features, f: IO[bytes]) -> None:
    f.write(json.dumps({k: v.tolist() for k, v in features.items()}).encode())


WRITERS: dict[str, Callable[[Features, IO[bytes]], None]] = {
    ".pkl": _write_pickle,
    ".pickle": _write_pickle,
    ".json": _write_json,
}


def check_output_path(path: str | Path) -> Path:
    """Validate ``--out`` before any work: a known suffix and a folder that exists or can be made."""
    path = Path(path)
    if path.suffix.lower() not in WRITERS:
        raise UserError(f"--out {path}: unsupported suffix {path.suffix or '(none)'!r}; use one of {', '.join(WRITERS)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {path}: cannot create its folder: {exc.strerror}") from exc
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"--out {path}: folder {path.parent} is not writable")
    return path


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through a temporary file in the same folder, then rename: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_features(path: str | Path, features: Features) -> Path:
    """Write ``{key: float32 vector}`` to ``path`` in the format its suffix names."""
    path = check_output_path(path)
    writer = WRITERS[path.suffix.lower()]
    atomic_write(path, lambda f: writer(features, f))
    return path


def error_report_path(out: Path) -> Path:
    return out.with_name(out.name + ".errors.json")


def write_error_report(out: Path, failures: list[tuple[str, str]]) -> Path | None:
    """``<out>.errors.json``: ``[{"video", "reason"}, ...]``, written atomically; removed when nothing failed."""
    path = error_report_path(out)
    if not failures:
        path.unlink(missing_ok=True)
        return None
    text = json.dumps([{"video": key, "reason": reason} for key, reason in failures], indent=1)
    atomic_write(path, lambda f: f.write(text.encode()))
    return path
