"""``.pkl``: a pickle of ``{listed key: float32 array}`` (the default format)."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import IO, Any

from featx.outputs import Features, OutputFormat
from featx.registry import FORMATS


@FORMATS.register("pkl")
class PickleFormat(OutputFormat):
    """A pickle of ``{key: float32 array}``."""

    suffixes = (".pkl", ".pickle")

    def dump(self, features: Features, f: IO[bytes]) -> None:
        pickle.dump(features, f, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def read(cls, path: Path, meta: dict[str, Any] | None) -> Features:
        with open(path, "rb") as f:
            return pickle.load(f)
