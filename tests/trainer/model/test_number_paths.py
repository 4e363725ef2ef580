"""The tiered Arrow reading of numbers (plain bodies cast in one pass, the rest through the
pattern) against the whole-column mechanism it replaced (`reference_numbers`): the same
values bit for bit, the same unreadable and regrouped masks."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.trainer.model import reference_numbers as reference
from tests.trainer.number_cells import column_cells, number_cell
from trainer.model import sluice_cells as cells

FORMATS = st.sampled_from(cells.NUMBER_FORMATS)


def _same_floats(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Equal bit for bit (so -0.0 is not 0.0), NaN where NaN."""
    assert ours.dtype == np.float64 and theirs.dtype == np.float64
    assert np.array_equal(ours.view("int64"), np.asarray(theirs, "float64").view("int64"))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(number_cell(), st.none()), max_size=30), FORMATS)
def test_parse_array_is_the_whole_column_mechanism(texts, fmt):
    cleaned = cells.clean_array(pa.array(texts, pa.large_string()))
    values, bad = fmt.parse_array(cleaned)
    expected, expected_bad = reference.parse_array(fmt, cleaned)
    # The reference casts negative plain bodies as "-x" or negates "x": the same bits.
    _same_floats(values, expected)
    assert bad.tolist() == expected_bad.tolist()


@settings(max_examples=400, deadline=None)
@given(column_cells(max_size=30), FORMATS, st.sampled_from([pa.string(), pa.large_string()]))
def test_read_numbers_is_clean_then_read(texts, fmt, kind):
    column = pa.array(texts, kind)
    read = cells.read_numbers(column, fmt)
    values, bad, regrouped = reference.read_text_numbers(column, fmt)
    _same_floats(read.values, values)
    assert read.unreadable_rows.tolist() == bad.tolist()
    assert read.regrouped_rows.tolist() == regrouped.tolist()
    assert (read.unreadable, read.regrouped) == (int(bad.sum()), int(regrouped.sum()))


@pytest.mark.parametrize(
    "texts",
    [
        ["1.5", "-0", "+2", "1e999", "-1e999", None, "", " 3 ", "NA", "1,234", "(5)", "4.9e-324"],
        ["1.5", "2.25", "-0.0", "7"],  # all plain: one cast
        ["1,5", "-0,0", "1.234,5", "0,125", "3,750", "1e999"],
        ["$1,234.50", "(1,234.50)", "12 %", "\u22128", "1'234", "1 234,5", "1\u202f234"],
        [None, None],
        [],
    ],
)
@pytest.mark.parametrize("fmt", cells.NUMBER_FORMATS, ids=lambda f: f"{f.decimal}|{f.thousands}")
def test_named_columns_read_as_before(texts, fmt):
    column = pa.array(texts, pa.string())
    read = cells.read_numbers(column, fmt)
    values, bad, regrouped = reference.read_text_numbers(column, fmt)
    _same_floats(read.values, values)
    assert read.unreadable_rows.tolist() == bad.tolist()
    assert read.regrouped_rows.tolist() == regrouped.tolist()


def test_the_values_are_writable():
    # Callers mask values in place (the target's float32 range): never a read-only view.
    for texts in (["1.5", "2"], ["1.5", "x"], ["1,5"]):
        values = cells.read_numbers(pa.array(texts), cells.NumberFormat()).values
        values[0] = 0.0


_FLOAT_LIKE = st.text(
    alphabet="0123456789.eE+-" * 2 + "infatyINFATY_, \t\n\u00a0\u0661()x", max_size=10
)


@settings(max_examples=3000, deadline=None)
@given(_FLOAT_LIKE)
def test_arrow_reads_a_finite_number_from_exactly_the_plain_bodies(text):
    # read_plain casts a whole column first: its meaning is the pattern's only if Arrow's
    # parser reads a finite number from exactly the texts the pattern calls plain bodies.
    plain = pa.array([text]).cast(pa.large_string())
    matched = pc.match_substring_regex(plain, cells.NumberFormat().plain_pattern)[0].as_py()
    try:
        number = pc.cast(plain, pa.float64())[0].as_py()
    except pa.ArrowInvalid:
        number = None
    finite = number is not None and math.isfinite(number)
    assert finite == (matched and math.isfinite(float(text)))
    assert matched <= (number is not None)  # every plain body is cast (1e999 as infinity)


@pytest.mark.parametrize(
    "text", ["nan", "NaN", "-nan", "inf", "-Infinity", "+inf", "nan(1)", "1e999", "-1e999"]
)
def test_what_arrow_reads_beyond_the_bodies_is_read_by_the_pattern(text):
    for texts in ([text], [text, "1.5"], [text, None]):
        for fmt in cells.NUMBER_FORMATS[:2]:
            column = pa.array(texts, pa.string())
            read = cells.read_numbers(column, fmt)
            values, bad, regrouped = reference.read_text_numbers(column, fmt)
            _same_floats(read.values, values)
            assert read.unreadable_rows.tolist() == bad.tolist()
