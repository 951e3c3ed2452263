"""``.parquet`` (``pip install 'featx[parquet]'``): one row per video, for pandas, DuckDB, Polars, PyArrow and
Hugging Face ``datasets``.

Columns: ``video`` (the listed path), ``feature`` (the vector as a fixed-size list of float32; per clip, a list
of such rows; per view, a list of clips' lists of views' rows) and, for ``--per-clip``/``--per-view``,
``clip_start`` and ``clip_end`` (each clip's span in seconds, as the meta sidecar's ``clips``; empty when the
container gives no frame rate). Rows are written in row groups as they come, so one group's vectors are in
memory at a time.
"""
from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Iterable, Sequence

import numpy as np

from featx.errors import UserError
from featx.outputs import Features, OutputFormat, Row, atomic_write
from featx.registry import FORMATS

GROUP_BYTES = 64 << 20  # a row group's vectors, about (a 2048-d video: 8 KiB, so some 8000 videos a group)


@FORMATS.register("parquet")
class ParquetFormat(OutputFormat):
    """One row per video: ``video``, ``feature`` and, per clip, ``clip_start``/``clip_end`` in seconds."""

    suffixes = (".parquet",)

    def __init__(self, path: Path, keys: list[str]) -> None:
        import_pyarrow()  # before any work, not at the end
        super().__init__(path, keys)

    def write(self, rows: Iterable[Row]) -> None:
        pa, pq = import_pyarrow()

        def dump(f: IO[bytes]) -> None:
            writer, group, size = None, [], 0
            for row in rows:
                group.append(row)
                size += row.array.nbytes
                if size >= GROUP_BYTES:
                    writer = _write_group(pq, writer, f, group)
                    group, size = [], 0
            if group or writer is None:
                writer = _write_group(pq, writer, f, group)
            writer.close()

        atomic_write(self.path, dump)

    @classmethod
    def read(cls, path: Path, meta: dict[str, Any] | None) -> Features:
        _, pq = import_pyarrow()
        table = pq.read_table(path, columns=["video", "feature"])
        features = _arrays(table.column("feature").combine_chunks())
        return dict(zip(table.column("video").to_pylist(), features))


def _write_group(pq: Any, writer: Any, f: IO[bytes], rows: Sequence[Row]) -> Any:
    """``rows`` as one row group (the writer opened on the first, with its columns' types); the writer."""
    table = _table(rows)
    if writer is None:
        writer = pq.ParquetWriter(f, table.schema)
    writer.write_table(table, row_group_size=max(1, len(rows)))
    return writer


def _table(rows: Sequence[Row]) -> Any:
    pa, _ = import_pyarrow()
    columns = {"video": pa.array([row.key for row in rows], pa.string())}
    if not rows:  # nothing written: no vector length to name
        return pa.table({**columns, "feature": pa.array([], pa.list_(pa.float32()))})
    columns["feature"] = _column([np.asarray(row.array, dtype=np.float32) for row in rows])
    if rows[0].array.ndim > 1:
        spans = [np.asarray(row.entry.get("clips") or [], dtype=np.float64).reshape(-1, 2) for row in rows]
        columns["clip_start"] = pa.array([s[:, 0] for s in spans], pa.list_(pa.float64()))
        columns["clip_end"] = pa.array([s[:, 1] for s in spans], pa.list_(pa.float64()))
    return pa.table(columns)


def _column(arrays: Sequence[np.ndarray]) -> Any:
    """Arrays of one rank as a column: a vector is a fixed-size list of float32, each leading axis a list."""
    pa, _ = import_pyarrow()
    if arrays[0].ndim == 1:
        values = pa.array(np.concatenate(arrays), pa.float32())
        return pa.FixedSizeListArray.from_arrays(values, arrays[0].shape[0])
    offsets = np.cumsum([0, *(len(a) for a in arrays)], dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), _column([part for a in arrays for part in a]))


def _arrays(column: Any) -> list[np.ndarray]:
    """The inverse of :func:`_column`: each row's float32 array."""
    pa, _ = import_pyarrow()
    if len(column) == 0:
        return []
    if pa.types.is_fixed_size_list(column.type):
        values = column.flatten().to_numpy(zero_copy_only=False)
        return list(values.reshape(len(column), column.type.list_size))
    inner = _arrays(column.flatten())
    offsets = column.offsets.to_numpy() - column.offsets[0].as_py()
    return [np.asarray(inner[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]


def import_pyarrow() -> tuple[Any, Any]:
    """``pyarrow`` and ``pyarrow.parquet``; a missing one is the user's to install, in one sentence."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise UserError("the parquet format needs pyarrow: pip install 'featx[parquet]'") from None
    return pyarrow, pyarrow.parquet
