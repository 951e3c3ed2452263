"""The partial store: every finished video appended to ``<out>.partial`` as it is done, so a crash,
``kill -9`` or Ctrl-C loses nothing and a rerun computes only what is missing.

Layout: a magic line, then records. Each record is ``<u32 length><u32 crc32>`` and a body of
``<u32 header length>``, a JSON header and the raw array bytes (no pickle). The first record holds
the run's fingerprint; a torn or corrupt tail (the process died mid-write) is cut off on reopening.
"""
from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import re
import struct
import time
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from featx.errors import UserError
from featx.result import VideoResult

log = logging.getLogger(__name__)

MAGIC = b"featx-partial 1\n"
FRAME = struct.Struct("<II")
HEADER_LEN = struct.Struct("<I")
FSYNC_EVERY_S = 5.0
SHA256 = re.compile(r"[0-9a-f]{64}")


def _encode(header: dict[str, Any], payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    body = HEADER_LEN.pack(len(head)) + head + payload
    return FRAME.pack(len(body), zlib.crc32(body)) + body


def _decode(body: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = HEADER_LEN.unpack_from(body)
    return json.loads(body[HEADER_LEN.size:HEADER_LEN.size + n]), body[HEADER_LEN.size + n:]


def _read_bodies(f: Any, *, headers_only: bool = False) -> Iterator[tuple[int, bytes]]:
    """(offset, body) of each intact record from the current position; stops at a torn or corrupt one.

    ``headers_only``: each body's header part alone, its array skipped unread and unchecked: for a store
    this run opened (its torn tail was cut off then) and has written since.
    """
    while True:
        offset = f.tell()
        frame = f.read(FRAME.size)
        if len(frame) < FRAME.size:
            return
        length, crc = FRAME.unpack(frame)
        if headers_only:
            head = f.read(_header_size(f))
            f.seek(offset + FRAME.size + length)
            yield offset, head
            continue
        body = f.read(length)
        if len(body) < length or zlib.crc32(body) != crc:
            return
        yield offset, body


class PartialStore:
    """Append-only store of finished videos for one output, tied to a fingerprint of what made them."""

    def __init__(self, path: Path, fingerprint: dict[str, Any], *, restart: bool = False) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.done: set[str] = set()  # keys with a vector (failed keys are retried on a rerun)
        self.discarded = 0  # earlier results dropped by ``restart``
        self._file = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o666), "r+b")  # one inode for every run
        self._lock()
        if restart or os.fstat(self._file.fileno()).st_size == 0:  # new, or emptied by a crash at its start
            self.discarded = len(_done_keys(self._file)) if restart else 0
            self._file.truncate(0)
            self._file.seek(0)
            self._file.write(self._header())
            self._sync()
        else:
            try:
                self._reopen()
            except UserError:
                self._file.close()
                raise
        self._file.seek(0, os.SEEK_END)
        self._last_sync = time.monotonic()

    def _lock(self) -> None:
        """Hold the store for this run: a second run on the same output is refused, not interleaved."""
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise UserError(f"another featx run is writing {self.path} (same --out); wait for it or use another --out") from None
        except OSError as exc:  # a file system without locks (Lustre with noflock, some NFS)
            log.warning("cannot lock %s (%s): make sure no other run writes the same --out", self.path, exc.strerror)

    def _header(self) -> bytes:
        return MAGIC + _encode({"fingerprint": self.fingerprint})

    def _reopen(self) -> None:
        """Read back what an earlier run stored, and cut off a record torn by a crash."""
        f = self._file
        if f.read(len(MAGIC)) != MAGIC:
            raise UserError(f"{self.path} is not a featx partial store; move it away or pass --restart")
        bodies = _read_bodies(f)
        first = next(bodies, None)
        stored = _decode(first[1])[0].get("fingerprint", {}) if first else {}
        if stored != self.fingerprint:
            kept = len(_done_keys(f))
            raise UserError(f"{self.path} holds {kept} results made with other settings "
                            f"({differences(stored, self.fingerprint)}); pass --restart to discard them, "
                            "or use another --out")
        end = f.tell()
        for _, body in bodies:
            header, _ = _decode(body)
            (self.done.discard if header.get("error") else self.done.add)(header["key"])
            end = f.tell()
        f.truncate(end)

    def add(self, record: VideoResult) -> None:
        """Append one video's outcome; flushed at once, fsynced every few seconds."""
        header: dict[str, Any] = {"key": record.key, "error": record.error, "info": record.info or {}}
        payload = b""
        if record.feature is not None:
            array = np.ascontiguousarray(record.feature)
            header.update(dtype=array.dtype.str, shape=list(array.shape))
            payload = array.tobytes()
        self._file.write(_encode(header, payload))
        self._file.flush()
        if record.error is None:
            self.done.add(record.key)
        if time.monotonic() - self._last_sync > FSYNC_EVERY_S:
            self._sync()

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._last_sync = time.monotonic()

    def offsets(self) -> dict[str, int]:
        """Where the latest record of every key starts (a retried key's latest try wins), found by reading the
        records' headers only; :meth:`read` gives a record back."""
        self._sync()
        f = self._file
        f.seek(len(MAGIC))
        latest: dict[str, int] = {}
        for offset, head in itertools.islice(_read_bodies(f, headers_only=True), 1, None):  # after the fingerprint
            latest[_decode(head)[0]["key"]] = offset
        return latest

    def read(self, offset: int, *, array: bool = True) -> VideoResult:
        """The record at ``offset`` (from :meth:`offsets`); ``array=False`` leaves its array unread."""
        f = self._file
        f.seek(offset)
        length, _ = FRAME.unpack(f.read(FRAME.size))
        header, payload = _decode(f.read(length if array else _header_size(f)))
        return _record(header, payload if array else None)

    def close(self) -> None:
        if not self._file.closed:
            self._sync()
            self._file.close()

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def _header_size(f: Any) -> int:
    """The length of a record body's header part (its length field and JSON), read at the body's start; the
    file is left where it was."""
    (n,) = HEADER_LEN.unpack(f.read(HEADER_LEN.size))
    f.seek(-HEADER_LEN.size, os.SEEK_CUR)
    return HEADER_LEN.size + n


def _record(header: dict[str, Any], payload: bytes | None) -> VideoResult:
    """The record a header and its array's bytes (None: left unread) make."""
    array = None
    if header.get("dtype") and payload is not None:
        array = np.frombuffer(payload, dtype=np.dtype(header["dtype"])).reshape(header["shape"]).copy()
    return VideoResult(-1, header["key"], array, header.get("error"), header.get("info") or {})


def _done_keys(f: Any) -> set[str]:
    """The keys with a vector in the partial store open as ``f`` (nothing if it is not one); reads from the start."""
    f.seek(0)
    done: set[str] = set()
    if f.read(len(MAGIC)) == MAGIC:
        for _, body in itertools.islice(_read_bodies(f), 1, None):  # after the fingerprint
            header, _ = _decode(body)
            (done.discard if header.get("error") else done.add)(header["key"])
    return done


def read_records(path: Path) -> dict[str, VideoResult]:
    """The latest record of every key in a partial store (a retried key's success wins); read-only."""
    latest: dict[str, VideoResult] = {}
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise UserError(f"{path} is not a featx partial store")
        bodies = _read_bodies(f)
        next(bodies, None)  # the fingerprint
        for _, body in bodies:
            header, payload = _decode(body)
            latest[header["key"]] = _record(header, payload)
    return latest


def fingerprint(config_marks: Mapping[str, Any], checkpoint_sha256: str, **options: Any) -> dict[str, Any]:
    """What decides the vectors: the config values that do (model, test pipeline, ..., by their key path), the
    weights, and vector-changing options, as JSON gives them back (so that one read from a file compares equal)."""
    marks = {**config_marks, "checkpoint sha256": checkpoint_sha256,
             **{name.replace("_", " "): value for name, value in options.items()}}
    return json.loads(json.dumps(marks, default=repr))


def differences(old: Mapping[str, Any], new: Mapping[str, Any], most: int = 4) -> str:
    """``name: old -> new`` for the settings that differ between two fingerprints (config values by their
    dotted path, as ``--cfg-options`` names them; sha256 digests shortened), the first ``most`` of them."""
    before, after = _leaves(old), _leaves(new)
    names = [*after, *(name for name in before if name not in after)]
    changed = [f"{name}: {_show(before.get(name, ABSENT))} -> {_show(after.get(name, ABSENT))}"
               for name in names if before.get(name, ABSENT) != after.get(name, ABSENT)]
    more = f", and {len(changed) - most} more" if len(changed) > most else ""
    return ", ".join(changed[:most]) + more if changed else "none recorded"


ABSENT = object()  # a setting one fingerprint has and the other lacks


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists flattened to ``{dotted path: value}``."""
    if isinstance(node, Mapping):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return {prefix: node}
    leaves: dict[str, Any] = {}
    for key, value in items:
        leaves.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return leaves


def _show(value: Any) -> str:
    if value is ABSENT:
        return "(not set)"
    if isinstance(value, str):
        return value[:12] + ".." if SHA256.fullmatch(value) else value
    return json.dumps(value)
