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
from pandas.core.util.hashing import combine_hash_arrays

from trainer.model import sluice_cells as cells

# Names the rule; a model records it, and comparisons need the same rule on both sides.
SPLIT_METHOD = "sluice-row-hash-v2"
# A feature value shared by this many distinct rows is a level, not one record's measurement.
MIN_SHARING_ROWS = 2
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
    if any(column.null_count == 0 for column in table.columns):
        return ~empty  # a column without gaps: no row is empty (no per-column kernels)
    for column in table.columns:
        empty &= column.is_null().to_numpy(zero_copy_only=False)
    return empty


def _text(column) -> pa.Array:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column
    return column.cast(pa.large_string())


def read_cells(
    table: pa.Table, kinds: list, target: str, y: np.ndarray, texts=None
) -> dict[str, np.ndarray]:
    """The cells a row's key is made of: the columns the model reads (as it reads them:
    numbers as floats in the column's format, dates as UTC times, categories by their keys)
    and the target as read. So `1.50` and `1.5`, or ` x ` and `x`, are the same cell in every
    upload, and a dropped column (a row number, a load time, a note) never makes two copies
    of a record look like two records. Text columns in `texts` (`TextColumns`) are read from
    their distinct cells' readings: the same values, without per-column kernels."""
    read: dict[str, np.ndarray] = {target: np.asarray(y, dtype="float64")}
    for kind in kinds:
        fmt = cells.NumberFormat.from_dict(kind.detail.get("number_format"))
        if texts is not None and kind.name in texts and kind.kind != "datetime":
            numeric = kind.kind == "numeric"
            read[kind.name] = texts.numbers(kind.name, fmt) if numeric else texts.keys(kind.name)
            continue
        column = table.column(kind.name).combine_chunks()
        if kind.kind == "numeric":
            read[kind.name] = cells.read_numbers(column, fmt).values
        elif kind.kind == "datetime":
            stamps = cells.read_date_cells(column, kind.detail["date_formats"]).stamps
            read[kind.name] = stamps.astype("int64")
        else:
            read[kind.name] = cells.category_keys(column)
    return dict(sorted(read.items()))


GROUP_CELLS = 1 << 22  # cells of the columns joined for one call (a copy): bounds memory


def _by_type(read: dict[str, np.ndarray], skip: str | None = None) -> list[list[str]]:
    """Column names in groups of one dtype and at most GROUP_CELLS cells (one column at
    least), in order."""
    groups: dict = {}
    for name, values in read.items():
        if name != skip:
            groups.setdefault(values.dtype, []).append(name)
    n_rows = len(next(iter(read.values()), ()))
    per_group = max(1, GROUP_CELLS // max(1, n_rows))
    return [
        names[i : i + per_group]
        for names in groups.values()
        for i in range(0, len(names), per_group)
    ]


def content_hashes(read: dict[str, np.ndarray]) -> np.ndarray:
    """A 64-bit hash of each row's read cells (columns in name order): pandas'
    `hash_pandas_object` of the DataFrame of the columns, with the columns of one dtype
    hashed in one call (each cell's hash depends on its value alone)."""
    n_rows = len(next(iter(read.values())))
    hashed: dict[str, np.ndarray] = {}
    for names in _by_type(read):
        joined = pd.Series(np.concatenate([read[name] for name in names]))
        flat = pd.util.hash_pandas_object(joined, index=False).to_numpy(dtype="uint64")
        hashed.update(zip(names, flat.reshape(len(names), n_rows), strict=True))
    columns = (hashed[name] for name in read)
    return combine_hash_arrays(columns, len(read), n_rows).astype("uint64", copy=False)


def observations(read: dict[str, np.ndarray], target: str, content: np.ndarray) -> np.ndarray:
    """Which rows' copies are separate observations rather than one record repeated: those
    where every feature value is shared by at least two distinct rows. A value only one
    distinct row has (a measurement, a timestamp) makes its copies one record; rows made of
    shared values (a few categories) repeat because the table is small in those columns.

    Counted for the columns of one dtype at once: a value is a (column, value) pair. The
    distinct rows holding a value are counted on each distinct row's first copy (copies hold
    the same values), so no (value, row) pairs are deduplicated."""
    row_ids, _ = pd.factorize(content)  # codes in order of first appearance
    n_rows = len(content)
    # A row is the first copy of its content where its code exceeds every code before it.
    first = np.empty(n_rows, dtype=bool)
    first[:1] = True
    first[1:] = row_ids[1:] > np.maximum.accumulate(row_ids)[:-1]
    shared = np.ones(n_rows, dtype=bool)
    for names in _by_type(read, skip=target):
        codes, uniques = pd.factorize(
            np.concatenate([read[name] for name in names]), use_na_sentinel=False
        )
        column = np.repeat(np.arange(len(names), dtype="int64"), n_rows)
        values, _ = pd.factorize(column * max(1, len(uniques)) + codes)  # (column, value)
        firsts = values[np.tile(first, len(names))]
        rows_per_value = np.bincount(firsts, minlength=values.max(initial=0) + 1)
        sharing = (rows_per_value[values] >= MIN_SHARING_ROWS).reshape(len(names), n_rows)
        shared &= sharing.all(axis=0)
    return shared


def row_keys(content: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Each row's key in [0, 1), from its content hash: a row is a validation row when its key
    is below the validation fraction, in every upload.

    Copies of a row stay together on one side (all take the first copy's key), so a
    validation row never has a copy among the training rows: repeated records would otherwise
    be scored on what the model memorised. Only where `spread` (see `observations`) copies are
    separate observations of the odds: the n-th copy gets a key of its own in every upload, and
    copies spread over both sides as single rows do.
    """
    occurrence = pd.Series(content).groupby(content, sort=False).cumcount().to_numpy()
    return keys_of(content, np.where(spread, occurrence, 0))


def keys_of(content: np.ndarray, occurrence: np.ndarray) -> np.ndarray:
    """The key of a row from its content hash and which copy of it it is counted as (0 for a
    row whose copies are one record): the formula `row_keys` applies, for data split over
    partitions whose occurrences are counted across them (trainer/pipeline/dask_engine.py)."""
    occurrence = np.asarray(occurrence).astype("uint64")
    keyed = pd.DataFrame({"content": content, "occurrence": occurrence})
    hashed = pd.util.hash_pandas_object(keyed, index=False).to_numpy(dtype="uint64")
    return (hashed >> np.uint64(11)).astype("float64") * _UNIT


def first_copies(table: pa.Table) -> np.ndarray:
    """True for the first of each set of rows whose cells are all the same, as uploaded."""
    hashed = pd.util.hash_pandas_object(table.to_pandas(), index=False)
    return ~hashed.duplicated().to_numpy()


def duplicate_count(content: np.ndarray) -> int:
    """Rows that repeat an earlier row exactly (kept: they are observations)."""
    return int(len(content) - len(pd.unique(content)))


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
