"""The model index: every official MMAction2 checkpoint (0.x and 1.x) by its name, with the shipped config it
was trained with, the config's dialect, its feature size and views (``featx models``; ``featx NAME`` runs one)."""
from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featx.errors import UserError

CONFIGS = Path(__file__).resolve().parent / "configs"  # the shipped configs (the checkout's configs/)
INDEX = CONFIGS / "model_index.json"


@dataclass(frozen=True)
class ModelEntry:
    """One official checkpoint (``configs/model_index.json`` says how each field was read)."""

    name: str
    family: str
    config: str  # relative to the configs folder
    checkpoint: str  # its https URL
    sha256_prefix: str
    dataset: str
    top1: float | None
    backbone: str
    feature_dim: int
    views: dict[str, int]  # clips, crops, frames_per_clip
    input: str  # video, rawframes (read from videos by featx's rule) or flow
    unsupported: str | None  # why featx cannot run it, or None
    source: str
    dialect: str  # the config's: "0.x" (configs/recognition/) or "1.x" (configs/mmaction2-1.x/recognition/)

    @property
    def config_path(self) -> Path:
        return CONFIGS / self.config

    def describe_views(self) -> str:
        v = self.views
        return (f"{v['clips']} clip{'s' * (v['clips'] != 1)} x {v['crops']} crop{'s' * (v['crops'] != 1)}, "
                f"{v['frames_per_clip']} frame{'s' * (v['frames_per_clip'] != 1)}")


@functools.cache
def models() -> tuple[ModelEntry, ...]:
    """Every entry of the index, in family order."""
    return tuple(ModelEntry(**entry) for entry in json.loads(INDEX.read_text()))


def find_model(name: str) -> ModelEntry | None:
    """The entry called ``name``, if any."""
    return next((entry for entry in models() if entry.name == name), None)


def resolve_model(name: str) -> ModelEntry:
    """The entry called ``name``; an unknown name (with the nearest ones) or an unsupported model is a UserError."""
    entry = find_model(name)
    if entry is None:
        near = difflib.get_close_matches(name, [e.name for e in models()], n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else "; `featx models` lists them"
        raise UserError(f"{name!r} is neither a config file nor a model name{hint}")
    if entry.unsupported:
        raise UserError(f"model {name}: {entry.unsupported}")
    return entry


def table(entries: tuple[ModelEntry, ...] | list[ModelEntry]) -> str:
    """One line per model: name, config dialect, feature size, views, input, dataset and top-1, config and
    checkpoint."""
    rows: list[list[Any]] = [["name", "dialect", "dim", "views per video", "input", "dataset (top-1)", "config",
                              "checkpoint"]]
    for e in entries:
        reads = "video" if e.input == "video" else "raw-frame rule" if e.input == "rawframes" else e.input
        rows.append([e.name, e.dialect, e.feature_dim, e.describe_views(), f"not supported: {e.unsupported}" if e.unsupported
                     else reads, f"{e.dataset} ({e.top1:g})" if e.top1 is not None else e.dataset,
                     f"configs/{e.config}", e.checkpoint])
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]) - 2)]
    return "\n".join("  ".join([*(str(c).ljust(w) for c, w in zip(row, widths)), *map(str, row[-2:])]) for row in rows)
