"""``.npz``: numpy's zip of ``.npy`` members, one per video under a safe name, and an index of the listed keys."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO, Any, Iterable

import numpy as np

from featx.outputs import INDEX, Features, OutputFormat, Row, atomic_write, safe_names
from featx.registry import FORMATS


@FORMATS.register("npz")
class NpzFormat(OutputFormat):
    """A numpy ``.npz``: one array per video under a safe name, and an index of the listed keys."""

    suffixes = (".npz",)

    def write(self, rows: Iterable[Row]) -> None:
        """Member by member, as the videos come; the index last."""
        names = safe_names(self.keys)

        def dump(f: IO[bytes]) -> None:
            index = []
            # The members written one by one, as np.savez would: its keyword arguments cannot be named "file".
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as npz:
                for key, array, _ in rows:
                    index.append([key, names[key]])
                    _member(npz, names[key], array)
                _member(npz, INDEX, np.array(index, dtype=str).reshape(-1, 2))

        atomic_write(self.path, dump)

    @classmethod
    def read(cls, path: Path, meta: dict[str, Any] | None) -> Features:
        with np.load(path, allow_pickle=False) as npz:
            # by the members' full names: npz["x.npy"] alone would open video "x"'s member
            return {key: npz[name + ".npy"] for key, name in npz[INDEX + ".npy"].tolist()}


def _member(npz: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with npz.open(name + ".npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
