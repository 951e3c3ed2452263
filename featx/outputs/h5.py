"""``.h5``: HDF5 (``pip install 'featx[h5]'``), one dataset per video under its safe name (slashes become groups)."""
from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Iterable

import numpy as np

from featx.errors import UserError
from featx.outputs import INDEX, Features, OutputFormat, Row, atomic_write, safe_names
from featx.registry import FORMATS


@FORMATS.register("h5")
class H5Format(OutputFormat):
    """One dataset per video under its safe name, and an index dataset of ``[listed key, name]`` rows."""

    suffixes = (".h5", ".hdf5")

    def __init__(self, path: Path, keys: list[str]) -> None:
        import_h5py()  # before any work, not at the end
        super().__init__(path, keys)

    def write(self, rows: Iterable[Row]) -> None:
        """Dataset by dataset, as the videos come; the index last."""
        h5py = import_h5py()
        names = safe_names(self.keys, tree=True)

        def dump(f: IO[bytes]) -> None:
            index = []
            with h5py.File(f, "w") as h5:
                for key, array, _ in rows:
                    index.append([key, names[key]])
                    h5.create_dataset(names[key], data=array)
                h5.create_dataset(INDEX, data=np.array(index, dtype=object).reshape(-1, 2), dtype=h5py.string_dtype())

        atomic_write(self.path, dump)

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
