"""Which rows a dev upload trains on: drops (counted), duplicates (kept) and the split.

A row's side of the split is decided by its content, not by a random draw: the same row is a
validation row in every upload, so a champion and a challenger are compared on rows neither
was trained on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Names the rule; a model records it, and comparisons need the same rule on both sides.
SPLIT_METHOD = "sluice-row-hash-v1"
_UNIT = float(2**-53)


def as_table(data) -> pa.Table:
    """An Arrow table of the data (a DataFrame, or a table already)."""
    if isinstance(data, pa.Table):
        return data
    try:
        return pa.Table.from_pandas(data, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed Python objects: read them as text
        return pa.Table.from_pandas(
            data.astype(object).where(data.notna(), None).map(lambda v: v if v is None else str(v)),
            preserve_index=False,
        )


def empty_rows(table: pa.Table) -> np.ndarray:
    """Rows where every cell is missing (cleaned cells: missing is null)."""
    empty = np.ones(table.num_rows, dtype=bool)
    for column in table.columns:
        empty &= column.is_null().to_numpy(zero_copy_only=False)
    return empty


def _text(column) -> pa.Array:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column
    return column.cast(pa.large_string())


def content_hashes(table: pa.Table, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's cells in `columns` (taken in name order)."""
    frame = pd.DataFrame(
        {name: _text(table.column(name)).to_numpy(zero_copy_only=False) for name in sorted(columns)}
    )
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype="uint64")


def row_keys(content: np.ndarray) -> np.ndarray:
    """Each row's key in [0, 1), from its content hash and how many identical rows came
    before it. Repeated rows are observations: the n-th copy of a row gets the same key in
    every upload, and copies spread over both sides of the split as single rows do."""
    occurrence = pd.Series(content).groupby(content, sort=False).cumcount().to_numpy()
    keyed = pd.DataFrame({"content": content, "occurrence": occurrence.astype("uint64")})
    hashed = pd.util.hash_pandas_object(keyed, index=False).to_numpy(dtype="uint64")
    return (hashed >> np.uint64(11)).astype("float64") * _UNIT


def duplicate_count(content: np.ndarray) -> int:
    """Rows that repeat an earlier row exactly (kept: they carry the class frequencies)."""
    return int(len(content) - len(np.unique(content)))


def keep_rows(table: pa.Table, mask: np.ndarray) -> pa.Table:
    """The rows where mask is True, in order."""
    if mask.all():
        return table
    return table.filter(pa.array(mask))


def take_rows(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """The given row positions of a table."""
    return table.take(pa.array(rows, type=pa.int64()))


def non_empty_columns(table: pa.Table) -> list[str]:
    """Columns with at least one value: the ones a row's key covers."""
    return [name for name in table.column_names if table.column(name).null_count < table.num_rows]


def null_counts(table: pa.Table) -> dict[str, int]:
    """Missing cells per column (after cleaning), for the report."""
    return {
        name: table.column(name).null_count
        for name in table.column_names
        if table.column(name).null_count
    }


def is_null(column) -> np.ndarray:
    """Where a column is missing."""
    return pc.is_null(column).to_numpy(zero_copy_only=False)
