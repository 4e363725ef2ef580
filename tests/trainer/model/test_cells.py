"""The cell rules (trainer/model/sluice_cells.py) against independent oracles.

Oracles: pandas' CSV reader with explicit `decimal=` / `thousands=` for numbers, datetime's
strptime with explicit formats for dates, hand-written expectations for keys and tokens. The
plain-Python and Arrow mechanisms of each rule are also held to each other on random cells.
"""

from __future__ import annotations

import io
import math
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.fit.features import Distinct, fit_date_formats, fit_number_format
from trainer.model import sluice_cells as cells
from trainer.model.sluice_cells import NumberFormat

# pandas' C reader: `thousands` may be any one character (not a class), and it reads a value
# only when the whole field fits, else the column stays text.
_PANDAS_THOUSANDS = {"": None, ",": ",", ".": ".", " ": " ", "'": "'"}


def _write(number: float, fmt: NumberFormat, decimals: int) -> str:
    """A number written the way a spreadsheet in that locale would."""
    text = f"{abs(number):,.{decimals}f}" if fmt.thousands else f"{abs(number):.{decimals}f}"
    text = text.replace(",", "\0").replace(".", fmt.decimal).replace("\0", fmt.thousands)
    return ("-" if number < 0 else "") + text


def _pandas_reads(texts: list[str], fmt: NumberFormat) -> list[float]:
    """The oracle: pandas' CSV reader with the format given explicitly."""
    csv = "x\n" + "\n".join(f'"{text}"' for text in texts) + "\n"
    frame = pd.read_csv(
        io.StringIO(csv),
        decimal=fmt.decimal,
        thousands=_PANDAS_THOUSANDS[fmt.thousands],
        dtype={"x": "float64"},
    )
    return frame["x"].tolist()


@pytest.mark.parametrize("fmt", cells.NUMBER_FORMATS, ids=lambda f: f"{f.decimal}|{f.thousands}")
@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.floats(-1e9, 1e9, allow_nan=False).map(lambda x: round(x, 3)), min_size=1, max_size=20
    ),
    st.integers(0, 3),
)
def test_numbers_in_each_format_read_as_pandas_reads_them(fmt, numbers, decimals):
    texts = [_write(number, fmt, decimals) for number in numbers]
    expected = _pandas_reads(texts, fmt)
    ours = [fmt.parse(text) for text in texts]
    assert ours == pytest.approx(expected, rel=1e-15, abs=0)
    arrow, bad = fmt.parse_array(pa.array(texts, pa.large_string()))
    assert arrow.tolist() == ours and not bad.any()


@pytest.mark.parametrize(
    ("text", "fmt", "value"),
    [
        ("0,125", NumberFormat(",", ""), 0.125),
        ("3,750", NumberFormat(",", "."), 3.75),
        ("3,750", NumberFormat(".", ","), 3750.0),
        ("1.234,5", NumberFormat(",", "."), 1234.5),
        ("1 234,5", NumberFormat(",", " "), 1234.5),
        ("1\u202f234,5", NumberFormat(",", " "), 1234.5),
        ("1'234.50", NumberFormat(".", "'"), 1234.5),
        ("€ 1.234,50", NumberFormat(",", "."), 1234.5),
        ("1.234,50 €", NumberFormat(",", "."), 1234.5),
        ("12,5 EUR", NumberFormat(",", ""), 12.5),
        ("$1,234.50", NumberFormat(".", ","), 1234.5),
        ("-$3", NumberFormat(".", ","), -3.0),
        ("(1,234.50)", NumberFormat(".", ","), -1234.5),
        ("12%", NumberFormat(".", ""), 12.0),
        ("12 %", NumberFormat(".", ""), 12.0),
        ("\u22128", NumberFormat(".", ""), -8.0),
        ("1e3", NumberFormat(".", ""), 1000.0),
    ],
)
def test_numbers_as_people_write_them(text, fmt, value):
    assert fmt.parse(text) == value
    assert fmt.parse_array(pa.array([text]))[0][0] == value


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("1,234.5", NumberFormat(",", ".")),  # the other convention: never read digit by digit
        ("1.234,5", NumberFormat(".", ",")),
        ("0,125", NumberFormat(".", ",")),  # a group never starts with 0
        ("12,34", NumberFormat(".", ",")),  # groups have three digits
        ("1,5", NumberFormat(".", "")),
        ("(5", NumberFormat(".", "")),
        ("--5", NumberFormat(".", "")),
        ("inf", NumberFormat(".", "")),
        ("1e999", NumberFormat(".", "")),
        ("abc", NumberFormat(".", "")),
        ("1_000", NumberFormat(".", "")),  # Python's float() reads it; people do not write it
        ("١٢٣", NumberFormat(".", "")),  # other digits than 0-9
    ],
)
def test_values_that_do_not_fit_the_format_are_unreadable(text, fmt):
    assert fmt.parse(text) is None
    values, bad = fmt.parse_array(pa.array([text]))
    assert math.isnan(values[0]) and bad[0]


_number_like = st.text(alphabet="0123456789.,' -+()$€%eE\u2212\u00a0\u202fEURa", max_size=12)


@settings(max_examples=800, deadline=None)
@given(st.lists(_number_like, min_size=1, max_size=30), st.sampled_from(cells.NUMBER_FORMATS))
def test_number_rule_is_the_same_cell_by_cell_and_in_arrow(texts, fmt):
    stripped = [text.strip(cells.WHITESPACE) for text in texts]
    one_by_one = [fmt.parse(text) for text in stripped]
    values, bad = fmt.parse_array(pa.array(stripped, pa.large_string()))
    assert [None if b else v for v, b in zip(values.tolist(), bad, strict=True)] == [
        None if n is None else n for n in one_by_one
    ]


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["NA", " n/a ", "NULL", "?", "-", "None", "nil", "<NA>", "\u2003"]),
            st.text(alphabet="aKnN/\u212a\u0130lL? -\t\u00a0", max_size=5),
        ),
        max_size=20,
    )
)
def test_missing_tokens_are_the_same_cell_by_cell_and_in_arrow(texts):
    arrow = cells.clean_array(pa.array(texts, pa.large_string())).to_pylist()
    assert arrow == [cells.clean_cell(text) for text in texts]


def test_missing_tokens_cover_pandas_defaults():
    # `mlflow models serve` reads CSV with pandas: every cell it calls missing, Sluice does too.
    from pandas._libs.parsers import STR_NA_VALUES

    assert {token.lower() for token in STR_NA_VALUES} <= cells.MISSING_TOKENS


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (" 1.0 ", "1"),
        ("01", "01"),  # a code: leading zeros are kept
        ("0.50", "0.5"),
        (1, "1"),
        (1.0, "1"),
        (2.5, "2.5"),
        ("true", "True"),
        (True, "True"),
        ("FALSE", "False"),
        (" x ", "x"),
        ("NA", None),
        (float("nan"), None),
        (None, None),
        ("1,5", "1,5"),
    ],
)
def test_category_keys_write_numbers_and_booleans_one_way(value, key):
    assert cells.category_key(value) == key


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(), st.text(alphabet="ab1.0 eNA-", max_size=4), st.sampled_from(["1", "1.0"])
        ),
        max_size=30,
    )
)
def test_category_codes_are_the_same_for_lists_and_arrow(values):
    index = {"a": 0, "1": 1, "b": 2}
    as_list = cells.read_categories(list(values), index, other=None)
    as_arrow = cells.read_categories(pa.array(values, pa.large_string()), index, other=None)
    assert np.array_equal(as_list.codes, as_arrow.codes, equal_nan=True)
    assert np.array_equal(as_list.unseen_rows, as_arrow.unseen_rows)


def test_unseen_levels_go_to_the_rare_group_when_there_is_one():
    read = cells.read_categories(["a", "zzz", None], {"a": 0}, other=1)
    codes = read.codes
    assert codes[:2].tolist() == [0.0, 1.0] and math.isnan(codes[2]) and read.unseen == 1
    assert read.unseen_rows.tolist() == [False, True, False]


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("2023-07-15", "%Y-%m-%d"),
        ("15/07/2023", "%d/%m/%Y"),
        ("07/15/2023", "%m/%d/%Y"),
        ("15.07.2023 10:30", "%d.%m.%Y %H:%M"),
        ("15 Jul 2023", "%d %b %Y"),
        ("July 15, 2023", "%B %d, %Y"),
        ("07/15/2023 01:30 PM", "%m/%d/%Y %I:%M %p"),
    ],
)
def test_dates_read_as_strptime_reads_them(text, fmt):
    expected = np.datetime64(datetime.strptime(text, fmt), "us")
    own_format = cells.read_date_cells([text], [fmt if fmt != "%Y-%m-%d" else "ISO8601"])
    assert own_format.stamps[0] == expected and own_format.unreadable == 0


def test_other_formats_are_read_only_when_unambiguous():
    dates = cells.read_date_cells(
        ["2023-07-15", "07/15/2023", "07/08/2023", "soon", None], ["ISO8601"]
    )
    assert dates.stamps[0] == dates.stamps[1] == np.datetime64("2023-07-15")
    assert np.isnat(dates.stamps[2]) and np.isnat(dates.stamps[3]) and np.isnat(dates.stamps[4])
    assert dates.other_format == 1 and dates.unreadable == 2


def test_rfc_2822_dates_with_offsets_are_read_in_utc():
    dates = cells.read_date_cells(["Mon, 01 May 2023 10:00:00 +0200"], ["ISO8601"])
    assert dates.stamps[0] == np.datetime64("2023-05-01T08:00:00")
    assert dates.other_format == 1 and dates.unreadable == 0


def test_dates_are_the_same_for_lists_and_arrow():
    values = ["2023-07-15", " 2023-07-16 ", None, "07/15/2023", "x", "NA"] * 50
    as_list = cells.read_date_cells(values, ["ISO8601"])
    as_arrow = cells.read_date_cells(pa.array(values, pa.large_string()), ["ISO8601"])
    assert np.array_equal(as_list.stamps, as_arrow.stamps, equal_nan=True)
    assert (as_list.other_format, as_list.unreadable) == (
        as_arrow.other_format,
        as_arrow.unreadable,
    )


def _distinct(values: list[str]) -> Distinct:
    series = pd.Series(values).value_counts()
    return Distinct(pa.array(series.index.tolist(), pa.large_string()), series.to_numpy())


@pytest.mark.parametrize(
    ("values", "delimiter", "decimal", "thousands", "ambiguous"),
    [
        (["0,125", "3,750", "12,5"], ";", ",", "", False),
        (["1.234,5", "12,5", "3"], ";", ",", ".", False),
        (["1,234.5", "12.5", "3"], ",", ".", ",", False),
        (["3,750", "1,250"], ",", ".", ",", True),  # the file decides a column of ties
        (["3,750", "1,250"], ";", ",", "", True),
        (["1 234,5", "2,5"], ";", ",", " ", False),
        # Integers read alike in every format; the file says how later decimals will look.
        (["1", "22", "333"], ";", ",", "", False),
        (["1", "22", "333"], ",", ".", "", False),
    ],
)
def test_number_format_is_decided_from_the_whole_column(
    values, delimiter, decimal, thousands, ambiguous
):
    fitted = fit_number_format(_distinct(values), prefer_comma=delimiter == ";")
    assert fitted["format"] == NumberFormat(decimal, thousands)
    assert fitted["ambiguous"] is ambiguous and fitted["unreadable"] == 0


def test_text_columns_are_not_numbers():
    assert fit_number_format(_distinct(["1", "2", "X", "Y"]), prefer_comma=False) is None


def test_date_formats_are_decided_from_the_whole_column():
    day_first = fit_date_formats(_distinct(["15/07/2023", "01/02/2023", "03/04/2023"]), False)
    assert day_first["formats"] == ["%d/%m/%Y"] and not day_first["ambiguous"]
    tie = fit_date_formats(_distinct(["01/02/2023", "03/04/2023"]), prefer_day_first=True)
    assert tie["formats"] == ["%d/%m/%Y"] and tie["ambiguous"]
    us_tie = fit_date_formats(_distinct(["01/02/2023", "03/04/2023"]), prefer_day_first=False)
    assert us_tie["formats"] == ["%m/%d/%Y"] and us_tie["ambiguous"]
    month_first = fit_date_formats(_distinct(["07/15/2023", "01/02/2023"]), True)
    assert month_first["formats"] == ["%m/%d/%Y"] and not month_first["ambiguous"]
    iso = fit_date_formats(_distinct(["2023-07-15", "2023-07-16 10:00:00"]), False)
    assert iso["formats"] == ["ISO8601"] and iso["has_time"]
    assert fit_date_formats(_distinct(["A12", "B7", "C3"]), False) is None


@pytest.mark.parametrize(
    ("text", "fmt", "value"),
    [
        ("1,234.5", NumberFormat(".", ""), 1234.5),
        ("1 234.5", NumberFormat(".", ","), 1234.5),
        ("1.234,5", NumberFormat(",", ""), 1234.5),
        ("1 234,5", NumberFormat(",", "."), 1234.5),
        ("1.234.567", NumberFormat(",", ""), 1234567.0),
        ("$1,234,567", NumberFormat(".", ""), 1234567.0),
    ],
)
def test_a_column_reads_its_decimal_mark_with_any_grouping(text, fmt, value):
    # Oracle: pandas with the decimal mark and the separator the text actually uses.
    separator = next(ch for ch in text.lstrip("$") if not ch.isdigit())
    used = NumberFormat(fmt.decimal, separator if separator != fmt.decimal else "")
    if "$" not in text:
        assert _pandas_reads([text], used) == [value]
    for values in ([text], pa.array([text], pa.large_string())):
        read = cells.read_numbers(values, fmt)
        assert read.values.tolist() == [value] and read.regrouped == 1 and read.unreadable == 0


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("1,5", NumberFormat(".", "")),  # a decimal comma in an English column
        ("0,125", NumberFormat(".", "")),
        ("1.5", NumberFormat(",", ".")),  # a decimal point in a European column
        ("1,234.5", NumberFormat(",", ".")),
        ("1.234,5", NumberFormat(".", "")),
        # One group and nothing else: a thousand in one convention, one point something in
        # the other. A column trained without grouping does not guess.
        ("1,234", NumberFormat(".", "")),
        ("$1,234", NumberFormat(".", "")),
        ("1.234", NumberFormat(",", "")),
        ("-1.234 €", NumberFormat(",", "")),
    ],
)
def test_the_other_decimal_convention_is_never_read(text, fmt):
    for values in ([text], pa.array([text], pa.large_string())):
        read = cells.read_numbers(values, fmt)
        assert np.isnan(read.values[0]) and read.unreadable == 1 and read.regrouped == 0
