"""``--out-format list``: MMAction2's own output, a list in list order (pickle, or JSON for a ``.json`` name)."""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np

from featx.errors import UserError
from featx.outputs import Features, OutputFormat, meta_path
from featx.registry import FORMATS


@FORMATS.register("list")
class ListFormat(OutputFormat):
    """A list in list order; a video that failed is ``None`` there, so positions still match the video list."""

    suffixes = ()  # chosen by --out-format only: its .pkl and .json names are the dict formats'

    @classmethod
    def check_path(cls, path: Path) -> None:
        if path.suffix.lower() not in (".pkl", ".pickle", ".json"):
            raise UserError(f"--out {path}: the list format is written as .pkl, .pickle or .json")

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
