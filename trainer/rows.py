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

from trainer import sluice_cells as cells

# Names the rule; a model records it, and comparisons need the same rule on both sides.
SPLIT_METHOD = "sluice-row-hash-v2"
# Copies of a row spread over the split only when chance alone predicts this many of them.
CHANCE_COPIES = 2.0
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


def read_cells(table: pa.Table, kinds: list, target: str, y: np.ndarray) -> dict[str, np.ndarray]:
    """Each non-empty column's cells as the model reads them, for hashing: numbers as floats
    in the column's format, dates as UTC times, categories by their keys, the target as read,
    other (dropped) columns as their cleaned text. So `1.50` and `1.5`, or ` x ` and `x`, are
    the same cell in every upload."""
    by_name = {kind.name: kind for kind in kinds}
    read: dict[str, np.ndarray] = {}
    for name in sorted(table.column_names):
        column = table.column(name).combine_chunks()
        if column.null_count == len(column):
            continue
        kind = by_name.get(name)
        if name == target:
            read[name] = np.asarray(y, dtype="float64")
        elif kind is not None and kind.kind == "numeric":
            fmt = cells.NumberFormat.from_dict(kind.detail.get("number_format"))
            read[name] = cells.read_numbers(column, fmt).values
        elif kind is not None and kind.kind == "datetime":
            stamps = cells.read_date_cells(column, kind.detail["date_formats"]).stamps
            read[name] = stamps.astype("int64")
        else:
            distinct, positions = cells.distinct_cells(column)
            keys = np.asarray([cells.category_key(v) for v in distinct] + [None], dtype=object)
            read[name] = keys[positions]
    return read


def content_hashes(read: dict[str, np.ndarray]) -> np.ndarray:
    """A 64-bit hash of each row's read cells (columns in name order)."""
    return pd.util.hash_pandas_object(pd.DataFrame(read), index=False).to_numpy(dtype="uint64")


def chance_copies(read: dict[str, np.ndarray], target: str) -> np.ndarray:
    """How many rows with each row's feature values the column frequencies alone predict
    (n times the product of each value's share of its column)."""
    n = len(next(iter(read.values()))) if read else 0
    log_expected = np.full(n, np.log(max(n, 1)))
    for name, values in read.items():
        if name == target:
            continue
        codes, _ = pd.factorize(values, use_na_sentinel=False)
        counts = np.bincount(codes)
        log_expected += np.log(counts[codes] / n)
    return np.exp(log_expected)


def row_keys(content: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Each row's key in [0, 1), from its content hash: a row is a validation row when its key
    is below the validation fraction, in every upload.

    Copies of a row stay together on one side (all take the first copy's key), so a
    validation row never has a copy among the training rows: repeated records would otherwise
    be scored on what the model memorised. Only where `spread` (feature values so common that
    the columns' frequencies alone predict repeats, as with a few categories) copies are
    separate observations of the odds: the n-th copy gets a key of its own in every upload, and
    copies spread over both sides as single rows do.
    """
    occurrence = pd.Series(content).groupby(content, sort=False).cumcount().to_numpy()
    occurrence = np.where(spread, occurrence, 0).astype("uint64")
    keyed = pd.DataFrame({"content": content, "occurrence": occurrence})
    hashed = pd.util.hash_pandas_object(keyed, index=False).to_numpy(dtype="uint64")
    return (hashed >> np.uint64(11)).astype("float64") * _UNIT


def duplicate_count(content: np.ndarray) -> int:
    """Rows that repeat an earlier row exactly (kept: they are observations)."""
    return int(len(content) - len(np.unique(content)))


def keep_rows(table: pa.Table, mask: np.ndarray) -> pa.Table:
    """The rows where mask is True, in order."""
    if mask.all():
        return table
    return table.filter(pa.array(mask))


def take_rows(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """The given row positions of a table."""
    return table.take(pa.array(rows, type=pa.int64()))


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
