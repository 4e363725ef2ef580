"""The fast reader (pyarrow) held to pandas' C parser with explicit options: the same cells
wherever it answers, and parse_csv's outcome (cells or error) the same as pandas' alone."""

from __future__ import annotations

import io
from unittest import mock

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice_common.errors import ApiError
from sluice_common.tables import fast_csv
from sluice_common.tables.parsing import parse_csv


def pandas_cells(raw: bytes, delimiter: str, names: list[str]) -> dict | None:
    """The oracle: the cells pandas' C parser reads (as parse_csv calls it), None on error."""
    try:
        frame = pd.read_csv(
            io.BytesIO(raw),
            encoding="utf-8",
            sep=delimiter,
            header=0,
            names=names,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=True,
            engine="c",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return None
    if not isinstance(frame.index, pd.RangeIndex):  # a wider first row: parse_csv refuses it
        return None
    return {name: frame[name].tolist() for name in names}


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


_chars = st.sampled_from(list('ab1 \t,;|"\r\ne\u00e9\u65e5\x00\x0b#') + ["\r\n", '""'])
_text = st.lists(_chars, max_size=6).map("".join)
# A cell as written: plain (quotes and all), quoted, or quoted with text after the quote.
_cells = st.one_of(
    _text,
    _text.map(_quoted),
    st.tuples(_text, _text).map(lambda pair: _quoted(pair[0]) + pair[1]),
    st.sampled_from(["", " ", "  ", "\t", '" "', "1.5", "x"]),
)
_line_ends = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def csv_files(draw) -> tuple[bytes, str, list[str]]:
    """A header of 1-4 names and rows around its width (ragged, blank and whitespace
    lines, mixed line ends), with its delimiter."""
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    width = draw(st.integers(1, 4))
    names = [f"h{i}" for i in range(width)]
    header = delimiter.join(_quoted(n) if draw(st.booleans()) else n for n in names)
    lines = [header]
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["row"] * 6 + ["ragged", "blank", "spaces"]))
        if kind == "blank":
            lines.append("")
        elif kind == "spaces":
            lines.append(draw(st.sampled_from([" ", "\t", " \t ", "  "])))
        else:
            n = width if kind == "row" else draw(st.integers(1, width + 2))
            lines.append(delimiter.join(draw(st.lists(_cells, min_size=n, max_size=n))))
    text = ""
    for line in lines:
        text += line + draw(_line_ends)
    if not draw(st.booleans()):
        text = text[:-1] if not text.endswith("\r\n") else text[:-2]  # no final line end
    return text.encode("utf-8"), delimiter, names


@settings(max_examples=500, deadline=None)
@given(csv_files())
def test_the_fast_reader_reads_what_pandas_reads_or_declines(case):
    raw, delimiter, names = case
    table = fast_csv.read_text_columns(raw, delimiter, names)
    if table is None:
        return  # pandas decides
    assert table.schema.types == [pa.string()] * len(names)
    assert table.column_names == names
    assert table.to_pydict() == pandas_cells(raw, delimiter, names)


def _outcome(raw: bytes):
    try:
        parsed = parse_csv(raw)
    except ApiError as err:
        return ("error", err.code, err.message)
    report = (parsed.encoding, parsed.delimiter, parsed.comment_lines, parsed.sep_line)
    return ("table", parsed.table.schema.remove_metadata(), parsed.table.to_pydict(), report)


def _pandas_only(raw: bytes):
    with mock.patch.object(fast_csv, "read_text_columns", return_value=None):
        return _outcome(raw)


@settings(max_examples=200, deadline=None)
@given(csv_files(), st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
def test_parse_csv_gives_what_pandas_alone_gives(case, encoding):
    raw, _, _ = case
    try:
        raw = raw.decode("utf-8").encode(encoding)
    except UnicodeEncodeError:
        return
    assert _outcome(raw) == _pandas_only(raw)


NAMED_CASES = {
    "quote inside an unquoted cell": b'a,b\nab"c,2\n',
    "text after the closing quote": b'a,b\n"ab"c,2\n',
    "doubled quotes": b'a,b\n"say ""hi""",2\n',
    "line breaks inside quotes": b'a,b\n"one\ntwo",1\n"three\r\nfour",2\n"five\rsix",3\n',
    "short row, padded by pandas": b"a,b,c\n1,2\n3,4,5\n",
    "wider row, refused": b"a,b\n1,2\n3,4,5\n",
    "wider first row, refused": b"a,b\n1,2,3\n4,5\n",
    "unclosed quote": b'a,b\n1,2\n"3,4\n',
    "blank lines": b"a,b\n\n1,2\n\r\n\r\n3,4\n\n",
    "whitespace-only lines": b"a,b\n  \n1,2\n\t\n3,4\n \t ",
    "whitespace line, one column": b"a\n1\n  \n2\n",
    "tab line in a tab file": b"a\tb\tc\n1\t2\t3\n \t \n4\t5\t6\n",
    "leading whitespace before a quote": b'a,b\n  "x\ny",1\n',
    "lone CR": b"a,b\r1,2\r3,4\r",
    "CRLF": b"a,b\r\n1,2\r\n3,4\r\n",
    "mixed line ends": b"a,b\n1,2\r\n3,4\r5,6\n",
    "NUL bytes": b'a,b\n1\x00,2\n"3\x00",4\n',
    "no final line end": b"a,b\n1,2\n3,4",
    "BOM": b"\xef\xbb\xbfa,b\n1,2\n",
    "header only": b"a,b\n",
    "header and blank lines": b"a,b\n\n\n",
    "empty cells": b"a,b,c\n,,\n1,,\n",
    "cp1252": "a;b\nJosé;São Paulo\nRené;Köln\n".encode("cp1252"),
    "utf-16": "a,b\nМосква,Genève\n1,2\n".encode("utf-16"),
    "comment and sep lines": b"sep=;\r\n# note\r\na;b\r\n1;2\r\n",
    "quoted header": b'"a","b"\n1,2\n',
    "blank header names": b"a,,c\n1,2,3\n",
    "a row longer than a block": b"a,b\n" + b"x" * (3 << 20) + b",1\n2,3\n",
}


@pytest.mark.parametrize("raw", NAMED_CASES.values(), ids=NAMED_CASES.keys())
def test_named_edge_cases_parse_as_pandas_alone(raw):
    assert _outcome(raw) == _pandas_only(raw)


TAKEN = {
    "quoted cells with line breaks": b'a,b\n"x\r\ny",1\n"p,q",2\n',
    "CRLF and blank lines": b"a,b\r\n1,2\r\n\r\n3,4\r\n",
    "whitespace lines among several columns": b"a,b\n1,2\n  \n3,4\n",
    "BOM": b"\xef\xbb\xbfa,b\n1,2\n",
    "unicode": "a;b\n日付;é\n".encode(),
}


@pytest.mark.parametrize("raw", TAKEN.values(), ids=TAKEN.keys())
def test_common_files_take_the_fast_reader(raw):
    # The fast reader must answer for ordinary files, not hand everything to pandas.
    with mock.patch.object(fast_csv, "read_text_columns", wraps=fast_csv.read_text_columns) as spy:
        parsed = parse_csv(raw)
    assert spy.call_count == 1
    body, delimiter, names, longest = spy.call_args.args
    assert fast_csv.read_text_columns(body, delimiter, names, longest) is not None
    assert parsed.table.schema.types == [pa.string()] * len(names)


def test_the_frame_is_the_one_pandas_gives():
    raw = b'a,b,c\n1,"x\ny",\n2,,z\n'
    oracle = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, na_filter=False)
    pd.testing.assert_frame_equal(parse_csv(raw).frame, oracle)


def test_a_file_padded_with_whitespace_lines_goes_to_pandas_at_its_cost():
    # Each whitespace line costs pyarrow a Python callback (~1.3 us; pandas skips it in C): a
    # file of millions of them took 35x the old parse. Past MAX_SKIPPED_LINES pandas reads it.
    few = b"a,b\n1,2\n" + b" \n" * fast_csv.MAX_SKIPPED_LINES + b"3,4\n"
    many = b"a,b\n1,2\n" + b" \n" * (fast_csv.MAX_SKIPPED_LINES + 1) + b"3,4\n"
    assert fast_csv.read_text_columns(few, ",", ["a", "b"]) is not None
    assert fast_csv.read_text_columns(many, ",", ["a", "b"]) is None
    for raw in (few, many):
        assert _outcome(raw) == _pandas_only(raw)
        assert parse_csv(raw).table.to_pydict() == {"a": ["1", "3"], "b": ["2", "4"]}
