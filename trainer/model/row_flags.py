"""Which prod rows to distrust: the model's per-row flags as an answer's fields and as an
output file's column, and the current names of warning kinds.

A row is flagged when a present cell could not be read as the model was trained to read it
(the kinds in sluice_model.FLAG_KINDS). The answer names the kind, never the cell: the client
has its file and the row number, and answers of jobs are kept in the jobs table.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_MAX_FLAGGED_ROWS = 1000
FLAGS_COLUMN = "flags"  # the output file's column of prod by reference


def _flagged(flags: dict[str, tuple[str, np.ndarray]]) -> np.ndarray:
    masks = [mask for _, mask in flags.values()]
    return np.flatnonzero(np.logical_or.reduce(masks)) if masks else np.empty(0, dtype="int64")


# The listed rows' size in the answer, per row allowed by MAX_FLAGGED_ROWS: a row's entry
# costs its column names and kinds, so long names or thousands of unreadable columns would
# otherwise make a small upload's answer hundreds of times its size.
BYTES_PER_LISTED_ROW = 1024


def flagged_rows(flags: dict, max_rows: int) -> dict:
    """The answer's fields: `flagged_rows` (the first flagged rows, in input order, each
    `{"row": i, "columns": {column: kind}}`, at most `max_rows` and about `max_rows` KB),
    `flagged_rows_total` and `flagged_rows_omitted`."""
    rows = _flagged(flags)
    listed = rows[: max(0, int(max_rows))]
    items: list[dict] = []
    if len(listed):
        names = list(flags)
        kinds = [kind for kind, _ in flags.values()]
        cost = np.array([len(n) + len(k) + 8 for n, k in zip(names, kinds, strict=True)])
        stacked = np.stack([mask[listed] for _, mask in flags.values()], axis=1)
        at, columns = np.nonzero(stacked)  # by listed row, then column (spec order)
        bounds = np.searchsorted(at, np.arange(len(listed) + 1))
        budget, spent = max(0, int(max_rows)) * BYTES_PER_LISTED_ROW, 0
        for position, row in enumerate(listed.tolist()):
            hit = columns[bounds[position] : bounds[position + 1]]
            spent += 24 + int(cost[hit].sum())
            if items and spent > budget:
                break
            items.append({"row": row, "columns": {names[c]: kinds[c] for c in hit.tolist()}})
    return {
        "flagged_rows": items,
        "flagged_rows_total": int(len(rows)),
        "flagged_rows_omitted": int(len(rows) - len(items)),
    }


def flag_texts(flags: dict, n_rows: int) -> pa.DictionaryArray:
    """One text per row, `column:kind;column:kind` (empty when the row is not flagged), built
    once per distinct combination of flagged columns, not per row."""
    texts, which = [""], np.zeros(n_rows, dtype="int32")  # position in texts, per row
    rows = _flagged(flags) if flags else []
    if len(rows):
        entries = [f"{name}:{kind}" for name, (kind, _) in flags.items()]
        stacked = np.stack([mask[rows] for _, mask in flags.values()])  # column by column
        combination = _combinations(stacked)
        # Numbered in order of first appearance: a row that raises the running maximum is the
        # first of its combination.
        first = np.flatnonzero(np.diff(np.maximum.accumulate(combination), prepend=-1) > 0)
        texts += [
            ";".join(entry for entry, hit in zip(entries, row, strict=True) if hit)
            for row in stacked[:, first].T
        ]
        which[rows] = combination + 1
    # Dictionary-encoded: a text per combination, not per row (a column unreadable in every row
    # of a wide file would otherwise hold its text a million times in memory).
    return pa.DictionaryArray.from_arrays(pa.array(which, pa.int32()), pa.array(texts, pa.string()))


def _combinations(stacked: np.ndarray) -> np.ndarray:
    """A number per row (0, 1, ... in order of first appearance) for its combination of
    flagged columns (`stacked`: columns x rows): the columns packed 64 to a word, the words
    hashed, not sorted."""
    import pandas as pd

    packed = np.packbits(stacked, axis=0, bitorder="little")  # bytes x rows
    words = np.zeros((stacked.shape[1], -(-len(packed) // 8) * 8), dtype=np.uint8)
    words[:, : len(packed)] = packed.T
    words = words.view(np.uint64)
    combination = pd.factorize(words[:, 0])[0]
    for column in words.T[1:]:  # more than 64 flagged columns
        codes, distinct = pd.factorize(column)
        combination = pd.factorize(combination * len(distinct) + codes)[0]
    return combination


def count_flagged(texts: pa.Array | pa.ChunkedArray) -> int:
    """Rows whose flags text is not empty (dictionary-encoded or plain text)."""
    chunks = texts.chunks if isinstance(texts, pa.ChunkedArray) else [texts]
    total = 0
    for chunk in chunks:
        if isinstance(chunk, pa.DictionaryArray):
            flagged = pc.not_equal(chunk.dictionary, "").take(chunk.indices)
        else:
            flagged = pc.not_equal(chunk, "")
        total += int(pc.sum(flagged).as_py() or 0)
    return total
