"""What a run records, typed: the fingerprint (what decides the vectors), each video's entry, a shard's
section and the whole meta sidecar ``<out>.meta.json``. Each is a dataclass with ``to_json``/``from_json``;
this module is the only place their JSON names are written, so a field added later is added here, once
(a field with a default: sidecars written before it still read).

``schema`` counts changes of the layout: sidecars of featx 0.1.0 carry none and read as schema 0, whose
fields are schema 1's. The sidecar is written streamed (one video's entry at a time, :func:`write_meta`).
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, ClassVar, Iterable, Mapping, Sequence

from featx import __version__

SCHEMA = 1
SHA256 = re.compile(r"[0-9a-f]{64}")


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples as lists, other objects by their repr), so that a value read
    from a file compares equal to the one a run computes."""
    return json.loads(json.dumps(value, default=repr))


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """What decides the vectors, by the names a sidecar gives them: the config values that do (by their key
    path: ``model``, ``data.test.pipeline``, ...), ``checkpoint sha256``, the vector-changing options
    (:meth:`featx.options.RunOptions.fingerprinted`, as the run resolved them), and whether the output is a
    folder. The partial store and the meta sidecar record it; a rerun compares it. An option that one of
    two fingerprints lacks (an older featx had no such option) compares as its default, which is how that
    featx ran."""

    marks: Mapping[str, Any]
    folder_output: bool = False

    LOCAL: ClassVar[tuple[str, ...]] = ("video root",)  # what shards of one run may differ in (each machine's)

    @classmethod
    def of(cls, config_marks: Mapping[str, Any], checkpoint_sha256: str, options: Mapping[str, Any],
           folder_output: bool = False) -> Fingerprint:
        """From the config's marks, the weights' sha256 and the options by field name (``video_root`` is
        recorded as ``video root``)."""
        marks = {**config_marks, "checkpoint sha256": checkpoint_sha256,
                 **{name.replace("_", " "): value for name, value in options.items()}}
        return cls(_plain(marks), folder_output)

    @property
    def checkpoint_sha256(self) -> str | None:
        return self.marks.get("checkpoint sha256")

    def option(self, name: str) -> Any:
        """An option's recorded value, by its field name (None: not recorded)."""
        return self.marks.get(name.replace("_", " "))

    def to_json(self) -> dict[str, Any]:
        return {**self.marks, "folder output": self.folder_output}

    def completed(self) -> dict[str, Any]:
        """The marks, with the default of each fingerprinted option they do not record."""
        from featx.options import fingerprint_defaults  # noqa: PLC0415 (featx.options imports the run's modules)

        defaults = {name.replace("_", " "): value for name, value in fingerprint_defaults().items()}
        return {**self.marks, **{name: value for name, value in defaults.items() if name not in self.marks}}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Fingerprint):
            return NotImplemented
        return self.folder_output == other.folder_output and self.completed() == other.completed()

    __hash__ = None  # type: ignore[assignment]  (mutable marks: not hashable, as before)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Fingerprint:
        """The fingerprint a sidecar or partial store recorded."""
        return cls({name: value for name, value in obj.items() if name != "folder output"},
                   obj.get("folder output", False))

    def shared(self) -> Fingerprint:
        """What every shard of one run has alike: this fingerprint less what is local to a machine (where it
        mounts the videos, how it stores its output)."""
        return Fingerprint({name: value for name, value in self.marks.items() if name not in self.LOCAL})

    def differences(self, new: Fingerprint, most: int = 4) -> str:
        """``name: old -> new`` for the settings that differ from ``new`` (config values by their dotted path,
        as ``--cfg-options`` names them; sha256 digests shortened), the first ``most`` of them."""
        before = _leaves({**self.completed(), "folder output": self.folder_output})
        after = _leaves({**new.completed(), "folder output": new.folder_output})
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


@dataclass(frozen=True)
class VideoEntry:
    """A written video's entry: its frames and timing (from its result's ``info``), and where a folder output
    put its array. Add a field here (with a default) to record more of each video; one that only some
    outputs or runs have goes in ``UNSET_LEFT_OUT`` too."""

    total_frames: int | None = None
    avg_fps: float | None = None
    clip_len: int | None = None
    frame_inds: list[int] = field(default_factory=list)
    duration: float | None = None  # seconds; None when the video states no frame rate
    clips: list[list[float]] | None = None  # each clip's [start, end] in seconds
    centres: list[float] | None = None  # each clip's centre in seconds, the middle of its [start, end]
    file: str | None = None  # a folder output's file of the video, relative to the folder

    # fields not written when None (the others: null): a folder output's own, and one that sidecars of
    # earlier versions lack
    UNSET_LEFT_OUT: ClassVar[tuple[str, ...]] = ("file", "centres")

    def to_json(self) -> dict[str, Any]:
        return {name: value for name, value in dataclasses.asdict(self).items()
                if value is not None or name not in self.UNSET_LEFT_OUT}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> VideoEntry:
        """A recorded entry; a name this version does not know is a ValueError (the sidecar is not read)."""
        return _known(cls, obj)


@dataclass(frozen=True)
class Failure:
    """A listed video without a vector, and why."""

    video: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"video": self.video, "reason": self.reason}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Failure:
        return _known(cls, obj)


@dataclass(frozen=True)
class ShardSection:
    """A shard output's ``shard`` section: which slice ``[start, end)`` of which list (its length, the sha256
    of its keys, its file), and the slice's keys in list order."""

    index: int
    count: int
    by: str
    start: int
    end: int
    listed: int
    list_sha256: str
    list_file: str | None
    keys: list[str] = field(default_factory=list)

    NAMES: ClassVar[dict[str, str]] = {"list_sha256": "list sha256", "list_file": "list file"}

    def to_json(self) -> dict[str, Any]:
        return {self.NAMES.get(name, name): value for name, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ShardSection:
        names = {json_name: name for name, json_name in cls.NAMES.items()}
        return _known(cls, {names.get(name, name): value for name, value in obj.items()})


@dataclass(frozen=True)
class MergedShard:
    """One shard a merged output was made from."""

    file: str
    shard: str  # "K/N"
    video_root: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> MergedShard:
        return _known(cls, obj)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Meta:
    """The meta sidecar: how the output was made, each written video's entry and the videos that failed.
    A field added later goes here with a default (``None``: absent from the sidecar); a run sets them all."""

    format: str  # the FORMATS name of the output (all a reader of the features needs, with the videos)
    per: str | None = None
    config_file: str | None = None
    checkpoint: str | None = None  # as given (a path or URL)
    checkpoint_file: str | None = None
    checkpoint_sha256: str | None = None
    checkpoint_missing_keys: list[str] | None = None  # model keys the checkpoint lacked (--allow-partial-checkpoint)
    checkpoint_unused_keys: list[str] | None = None  # checkpoint keys the model has no place for (its head, usually)
    precision: str | None = None
    device: str | None = None
    processes: int | None = None
    decoder: str | None = None
    decode_order: str | None = None
    fuse_conv_bn: bool | None = None
    video_root: str | None = None
    config_dialect: str | None = None  # the config's dialect (MMAction2 0.x or 1.x)
    config: str | None = None  # the config as run (--cfg-options and featx's rules applied), as Python text
    fingerprint: Fingerprint | None = None  # None: a sidecar not written by a run (a rerun computes anew)
    grid: dict[str, Any] | None = None  # the time grid of the windows (--fps, --dense-stride, --pad)
    layer: dict[str, Any] | None = None  # the tapped layer and its pooling (--layer, --pool)
    shard: ShardSection | None = None  # a shard's output (--shard)
    merged: list[MergedShard] | None = None  # a merged output (featx merge): the shards it joined
    videos: dict[str, VideoEntry] = field(default_factory=dict)
    failed: list[Failure] = field(default_factory=list)
    featx_version: str = __version__
    created: str = field(default_factory=now)
    schema: int = SCHEMA

    FIRST: ClassVar[tuple[str, ...]] = ("schema", "featx_version", "created")  # written first, for a reader's eye
    NESTED: ClassVar[dict[str, Any]] = {"fingerprint": Fingerprint, "shard": ShardSection}
    LISTS: ClassVar[dict[str, Any]] = {"merged": MergedShard, "failed": Failure}

    def header(self) -> dict[str, Any]:
        """Every field but ``videos`` and ``failed``, as JSON: what :func:`write_meta` writes before them."""
        fields = [f.name for f in dataclasses.fields(self) if f.name not in ("videos", "failed")]
        order = [*self.FIRST, *(name for name in fields if name not in self.FIRST)]
        obj: dict[str, Any] = {}
        for name in order:
            value = getattr(self, name)
            if value is None:
                continue
            if name in self.NESTED:
                value = value.to_json()
            elif name in self.LISTS:
                value = [item.to_json() for item in value]
            obj[name] = value
        return obj

    def to_json(self) -> dict[str, Any]:
        return {**self.header(), "videos": {key: entry.to_json() for key, entry in self.videos.items()},
                "failed": [f.to_json() for f in self.failed]}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Meta:
        """A sidecar as read from its file (of this schema or an earlier one); one that is not a featx sidecar
        raises ValueError, KeyError or TypeError."""
        if not isinstance(obj, Mapping):
            raise TypeError("not a JSON object")
        values = dict(obj)
        schema = values.pop("schema", 0)  # featx 0.1.0 wrote none; once read, a sidecar is of this schema
        if schema > SCHEMA:
            raise ValueError(f"written by a newer featx (schema {schema}; this one reads up to {SCHEMA})")
        for name, kind in cls.NESTED.items():
            if values.get(name) is not None:
                values[name] = kind.from_json(values[name])
        for name, kind in cls.LISTS.items():
            if values.get(name) is not None:
                values[name] = [kind.from_json(item) for item in values[name]]
        values["videos"] = {key: VideoEntry.from_json(entry) for key, entry in values.get("videos", {}).items()}
        return _known(cls, values)


def _known(cls: Any, obj: Mapping[str, Any]) -> Any:
    """``cls(**obj)``; a name ``cls`` has no field for is a ValueError naming it."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [name for name in obj if name not in names]
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field {unknown[0]!r}")
    return cls(**obj)


def meta_path(out: Path) -> Path:
    """``<out>.meta.json``, beside the output."""
    return out.with_name(out.name + ".meta.json")


def read_meta(out: Path) -> Meta:
    """The meta sidecar of the output at ``out``: OSError when it cannot be read, ValueError, KeyError or
    TypeError when it is not a featx sidecar."""
    return Meta.from_json(json.loads(meta_path(out).read_text()))


def write_meta(out: Path, meta: Meta, videos: Iterable[tuple[str, VideoEntry]], failed: Sequence[Failure]) -> None:
    """``<out>.meta.json``: ``meta``'s header, then ``videos`` one a line as they come (so that no more than one
    video's entry need be in memory), then the failures; written atomically."""
    from featx.outputs import atomic_write  # which reads sidecars through this module

    head = json.dumps({**meta.header(), "videos": None}, indent=1)

    def dump(f: IO[bytes]) -> None:
        f.write(head[:head.rindex('"videos": null')].encode() + b'"videos": {')
        _rows(f, (f"{json.dumps(key)}: {json.dumps(entry.to_json(), separators=(',', ':'))}" for key, entry in videos))
        f.write(b'\n },\n "failed": [')
        _rows(f, (json.dumps(failure.to_json()) for failure in failed))
        f.write(b"\n ]\n}\n")

    atomic_write(meta_path(out), dump)


def _rows(f: IO[bytes], rows: Iterable[str]) -> None:
    """JSON members or items, one a line, comma-separated."""
    for n, row in enumerate(rows):
        f.write((",\n  " if n else "\n  ").encode() + row.encode())
