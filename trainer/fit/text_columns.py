"""Many text columns read in one pass (pure; no MLflow, no Flask).

Typing a column took ~100 calls of Arrow's kernels, each with a fixed cost of tens of
microseconds: a 20,000-column upload of ten rows spent minutes there. Here the columns of a
block are joined into one array, so each kernel runs once per block. Every rule is still
applied per cell or per distinct text (`sluice_cells`), so a column reads exactly as it would
alone: only the number of calls changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainer.fit.number_formats import Readings
from trainer.model import sluice_cells as cells

# Cells and bytes joined into one array at most: bounds the copy a block makes (a tall table
# goes a column or a few at a time, as before).
BLOCK_CELLS = 1 << 22
BLOCK_BYTES = 1 << 28


def is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _blocks(columns: list[pa.Array]) -> list[list[int]]:
    """Consecutive groups of column positions, each within BLOCK_CELLS and BLOCK_BYTES."""
    blocks: list[list[int]] = []
    cells_in = bytes_in = 0
    for i, column in enumerate(columns):
        size = column.nbytes
        if not blocks or cells_in + len(column) > BLOCK_CELLS or bytes_in + size > BLOCK_BYTES:
            blocks.append([])
            cells_in = bytes_in = 0
        blocks[-1].append(i)
        cells_in += len(column)
        bytes_in += size
    return blocks


def _joined(columns: list[pa.Array]) -> pa.Array:
    """The columns' cells one after another, as large_string (one cast when all the columns
    are of one type; a block stays under BLOCK_BYTES, within 32-bit offsets)."""
    if len({column.type for column in columns}) > 1:
        columns = [column.cast(pa.large_string()) for column in columns]
    joined = pa.concat_arrays(columns) if len(columns) > 1 else columns[0]
    return joined if pa.types.is_large_string(joined.type) else joined.cast(pa.large_string())


def clean_many(columns: list[pa.Array]) -> list[pa.Array]:
    """`sluice_cells.clean_array` of each text column, a block of columns per call."""
    cleaned: list[pa.Array] = [None] * len(columns)  # type: ignore[list-item]
    for block in _blocks(columns):
        joined = cells.clean_array(_joined([columns[i] for i in block]))
        start = 0
        for i in block:
            cleaned[i] = joined.slice(start, len(columns[i]))
            start += len(columns[i])
    return cleaned


@dataclass
class Block:
    """Columns of the same length read together: their distinct cells (the dictionary),
    each cell's position in it, and each column's distinct cells with counts (`entries`, in
    order of first appearance, column after column)."""

    names: list[str]
    dictionary: pa.Array
    codes: np.ndarray  # (columns, rows) int64; -1 where the cell is missing
    entry_column: np.ndarray
    entry_code: np.ndarray
    entry_count: np.ndarray
    starts: np.ndarray  # column i's entries are [starts[i], starts[i + 1])
    _cache: dict = field(default_factory=dict)

    @classmethod
    def of(cls, names: list[str], columns: list[pa.Array]) -> Block:
        n_rows = len(columns[0]) if columns else 0
        encoded = pc.dictionary_encode(_joined(columns))
        flat = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64")
        dictionary = encoded.dictionary
        size = max(1, len(dictionary))
        present = np.flatnonzero(flat >= 0)
        column_of = present // max(1, n_rows)
        keys, first, counts = np.unique(
            column_of * size + flat[present], return_index=True, return_counts=True
        )
        order = np.argsort(first, kind="stable")  # first appearance: by column, then row
        keys, counts = keys[order], counts[order]
        entry_column = keys // size
        starts = np.searchsorted(entry_column, np.arange(len(names) + 1))
        return cls(
            names,
            dictionary,
            flat.reshape(len(names), n_rows),
            entry_column,
            keys % size,
            counts.astype("int64"),
            starts,
        )

    def distinct_codes(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Column i's distinct cells (dictionary positions) and their counts."""
        lo, hi = self.starts[i], self.starts[i + 1]
        return self.entry_code[lo:hi], self.entry_count[lo:hi]

    def per_column(self, per_entry: np.ndarray) -> np.ndarray:
        """Each column's sum of `per_entry` weighted by the entries' counts."""
        return np.bincount(
            self.entry_column, weights=self.entry_count * per_entry, minlength=len(self.names)
        ).astype("int64")

    def memo(self, key, make):
        """`make()` once per block and key."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


class TextColumns:
    """Text columns of one table (cleaned cells), read block by block; see `Block`."""

    def __init__(self, table: pa.Table, names: list[str]):
        columns = [table.column(name).combine_chunks() for name in names]
        self.blocks: list[Block] = []
        self.where: dict[str, tuple[Block, int]] = {}
        for group in _blocks(columns):
            block = Block.of([names[i] for i in group], [columns[i] for i in group])
            self.blocks.append(block)
            for position, i in enumerate(group):
                self.where[names[i]] = (block, position)

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def numbers(self, name: str, fmt: cells.NumberFormat) -> np.ndarray:
        """`sluice_cells.read_numbers(column, fmt).values`, from each distinct cell's reading."""
        block, i = self.where[name]
        return number_readings(block).numbers(fmt, block.codes[i])

    def keys(self, name: str) -> np.ndarray:
        """`sluice_cells.category_keys(column)`: each cell's category key (None: missing)."""
        block, i = self.where[name]
        distinct, inverse = np.unique(block.codes[i], return_inverse=True)
        keys = np.array(self._keys_of(block, distinct), dtype=object)
        return keys[inverse]  # -1 (a missing cell) has no key: None

    def level_counts(self, name: str, rows: np.ndarray) -> dict[str, int]:
        """`features.level_counts` of the column's cells in the given rows (a mask)."""
        block, i = self.where[name]
        codes = block.codes[i][rows]
        distinct, counts = np.unique(codes[codes >= 0], return_counts=True)
        counted: dict[str, int] = {}
        for key, count in zip(self._keys_of(block, distinct), counts.tolist(), strict=True):
            if key is not None:
                counted[key] = counted.get(key, 0) + count
        return counted

    @staticmethod
    def _keys_of(block: Block, codes: np.ndarray) -> list:
        """`sluice_cells.category_key` of distinct dictionary positions (None for -1), each
        computed once per block."""
        known = block.memo("keys", dict)
        todo = [code for code in codes.tolist() if code >= 0 and code not in known]
        if todo:
            texts = block.dictionary.take(pa.array(todo)).to_pylist()
            known.update(zip(todo, map(cells.category_key, texts), strict=True))
        return [known.get(code) for code in codes.tolist()]


def number_readings(block: Block) -> Readings:
    """The block's distinct cells as numbers, each read in a format at most once."""
    return block.memo("numbers", lambda: Readings(block.dictionary))
