"""Deciding number formats from as few readings as the decision needs
(`trainer.fit.number_formats`) against the exhaustive rule it replaced: every candidate format
read over every distinct cell (kept here as the oracle, over the whole-column reading
mechanism of `reference_numbers`). The chosen format, its unreadable count, the ambiguity
flag and the values must be the same for every column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.trainer.model import reference_numbers as reference
from tests.trainer.number_cells import column_cells
from trainer.fit import number_formats, text_columns
from trainer.fit.features import NUMERIC_SHARE, Distinct, clean_table, fit_number_format
from trainer.fit.number_formats import Entries, Readings, fit_number_formats, format_order
from trainer.model.sluice_cells import NUMBER_FORMATS


def exhaustive(dictionary, entries: Entries, counts, n_columns: int, share: float, order):
    """The rule as it was: (chosen, unreadable, ambiguous) per column and the readings."""
    readings = [reference.read_number_texts(dictionary, fmt) for fmt in order]
    column, code = entries.column, entries.code

    def per_column(weights: np.ndarray) -> np.ndarray:
        return np.bincount(column, weights=weights, minlength=n_columns).astype("int64")

    total = per_column(counts)
    read = np.stack([per_column(counts * ~bad[code]) for _, bad, _ in readings])
    native = np.stack(
        [per_column(counts * ~(bad | regrouped)[code]) for _, bad, regrouped in readings]
    )
    chosen = np.argmax(read * (total.max(initial=0) + 1) + native, axis=0)
    best = read[chosen, np.arange(n_columns)]
    values = np.stack([value[code] for value, _, _ in readings])
    best_values = values[chosen[column], np.arange(len(column))]
    ambiguous = np.zeros(n_columns, dtype=bool)
    for i, other in enumerate(values):
        same = (other == best_values) | (np.isnan(other) & np.isnan(best_values))
        ambiguous |= (read[i] == best) & (per_column(~same) > 0)
    chosen = np.where((total > 0) & (best >= share * total), chosen, -1)
    return chosen, total - best, ambiguous, readings


def _same_fits(dictionary, entries, counts, n_columns, share, order, sample) -> None:
    readings = Readings(dictionary)
    fits = fit_number_formats(readings, entries, counts, n_columns, share, order, sample)
    chosen, unreadable, ambiguous, oracle = exhaustive(
        dictionary, entries, counts, n_columns, share, order
    )
    assert fits.chosen.tolist() == chosen.tolist()
    for c in np.flatnonzero(chosen >= 0):
        assert fits.unreadable[c] == unreadable[c], c
        assert fits.ambiguous[c] == ambiguous[c], c
        codes = entries.code[entries.column == c]
        fmt = order[chosen[c]]
        f = NUMBER_FORMATS.index(fmt)
        ours = readings.values[f, codes]
        theirs = oracle[chosen[c]][0][codes]
        assert np.array_equal(ours.view("int64"), theirs.view("int64")), (c, fmt)
        assert readings.bad[f, codes].tolist() == oracle[chosen[c]][1][codes].tolist()


def _repeated(cells: list, repeats: list[int]) -> list:
    return [cell for cell, times in zip(cells, repeats, strict=False) for _ in range(times)]


COLUMNS = st.lists(column_cells(min_size=1, max_size=60), min_size=1, max_size=6)


@settings(max_examples=120, deadline=None)
@given(
    COLUMNS,
    st.lists(st.integers(1, 30), min_size=60, max_size=60),
    st.booleans(),
    st.sampled_from([1, 2, 5, 64]),
    st.sampled_from([NUMERIC_SHARE, 0.0, 0.5]),
)
def test_a_block_decides_as_the_exhaustive_rule(columns, repeats, prefer_comma, sample, share):
    columns = [_repeated(cells, repeats) for cells in columns]
    n_rows = max(len(cells) for cells in columns)
    columns = [cells + [None] * (n_rows - len(cells)) for cells in columns]
    table = clean_table(
        pa.table({f"c{i}": pa.array(c, pa.string()) for i, c in enumerate(columns)})
    )
    block = text_columns.TextColumns(table, table.column_names).blocks[0]
    entries = Entries(block.entry_column, block.entry_code)
    order = format_order(prefer_comma)
    n = len(block.names)
    _same_fits(block.dictionary, entries, block.entry_count, n, share, order, sample)


@settings(max_examples=100, deadline=None)
@given(column_cells(min_size=1, max_size=60), st.booleans(), st.sampled_from([NUMERIC_SHARE, 0.0]))
def test_one_column_decides_as_the_exhaustive_rule(cells, prefer_comma, share):
    cleaned = clean_table(pa.table({"x": pa.array(cells, pa.string())})).column("x")
    counted = cleaned.combine_chunks().drop_null().value_counts()
    distinct = Distinct(counted.field("values"), counted.field("counts").to_numpy().astype("int64"))
    fitted = fit_number_format(distinct, prefer_comma, share)
    if distinct.total == 0:
        assert fitted is None
        return
    n = len(distinct.counts)
    entries = Entries(np.zeros(n, "int64"), np.arange(n))
    order = format_order(prefer_comma)
    chosen, unreadable, ambiguous, oracle = exhaustive(
        distinct.values, entries, distinct.counts, 1, share, order
    )
    if chosen[0] < 0:
        assert fitted is None
        return
    assert fitted["format"] == order[chosen[0]]
    assert (fitted["unreadable"], fitted["ambiguous"]) == (unreadable[0], ambiguous[0])
    values, bad, _ = oracle[chosen[0]]
    assert np.array_equal(fitted["values"].view("int64"), values.view("int64"))
    assert fitted["bad"].tolist() == bad.tolist()


def _column(n_plain: int, others: list[str], plain: str = "{}.5") -> list[str]:
    return [plain.format(i) for i in range(n_plain)] + others


@pytest.mark.parametrize(
    "cells",
    [
        _column(400, []),  # every cell plain: the decimal-point formats in one pass
        _column(400, [], "{},5"),
        _column(380, ["x"] * 20),  # 95% exactly: chosen
        _column(379, ["x"] * 21),  # just under: not chosen
        _column(380, [f"junk{i}" for i in range(20)]),
        _column(300, ["3,750", "1,250"] * 50),  # grouped or decimal: the most cells decide
        _column(0, ["3,750", "1,250"] * 50),  # a tie between decimal marks: ambiguous
        _column(200, ["1.234,5"] * 10 + ["1,5"] * 190, "{},25"),
        _column(200, ["1,234.5"] * 150 + ["1 234.5"] * 50),
        _column(100, [f"${i},000.50" for i in range(300)]),
        [f"level_{i % 7}" for i in range(400)],
        [str(i) for i in range(400)],  # integers: every format reads them alike
        [f"word {i}" for i in range(400)],
    ],
)
@pytest.mark.parametrize("sample", [1, 8, 64])
@pytest.mark.parametrize("prefer_comma", [False, True])
def test_named_columns_decide_as_the_exhaustive_rule(cells, sample, prefer_comma):
    dictionary = pa.array(sorted(set(cells)), pa.large_string())
    index = {text: i for i, text in enumerate(dictionary.to_pylist())}
    codes, counts = np.unique([index[c] for c in cells], return_counts=True)
    entries = Entries(np.zeros(len(codes), "int64"), codes)
    order = format_order(prefer_comma)
    _same_fits(dictionary, entries, counts, 1, NUMERIC_SHARE, order, sample)


def test_a_column_of_plain_numbers_is_read_once_per_decimal_mark(monkeypatch):
    reads = []
    original = number_formats.cells.read_number_texts
    monkeypatch.setattr(
        number_formats.cells,
        "read_number_texts",
        lambda texts, fmt: reads.append((fmt, len(texts))) or original(texts, fmt),
    )
    cells = [f"{i}.25" for i in range(5000)]
    distinct = Distinct(pa.array(cells, pa.large_string()), np.ones(len(cells), "int64"))
    fitted = fit_number_format(distinct, prefer_comma=False)
    assert fitted["format"] == NUMBER_FORMATS[0] and not fitted["ambiguous"]
    # The comma formats read the first sample only (the plain bodies need no format's rule).
    assert sum(n for _, n in reads) <= 4 * number_formats.FIRST_SAMPLE
