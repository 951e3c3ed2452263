"""``.json``: ``{listed key: (nested) list of floats}``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Iterable

import numpy as np

from featx.outputs import Features, OutputFormat, Row, atomic_write
from featx.registry import FORMATS


@FORMATS.register("json")
class JsonFormat(OutputFormat):
    """``{key: (nested) list of floats}``."""

    suffixes = (".json",)

    def write(self, rows: Iterable[Row]) -> None:
        """Video by video, so the text of one vector at a time is in memory, not of all of them."""

        def dump(f: IO[bytes]) -> None:
            f.write(b"{")
            for n, (key, array, _) in enumerate(rows):
                f.write(f"{', ' if n else ''}{json.dumps(key)}: {json.dumps(array.tolist())}".encode())
            f.write(b"}")

        atomic_write(self.path, dump)

    @classmethod
    def read(cls, path: Path, meta: dict[str, Any] | None) -> Features:
        return {k: np.asarray(v, dtype=np.float32) for k, v in json.loads(path.read_text()).items()}
