"""Parsing what people actually upload into a table of text cells."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice_common.choices import resolve_target
from sluice_common.errors import ApiError
from sluice_common.tables.parsing import parse_csv

FRAME = pd.DataFrame({"name": ["Zoë", "Łukasz", "Ana"], "amount": [1.5, 2.25, 3.0]})


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1"])
def test_common_encodings_are_decoded(encoding):
    text = "name,amount\nZoë,1.5\nÉmile,2.25\nAna,3\nRené,4\nJosé,5\n"
    parsed = parse_csv(text.encode(encoding))
    assert list(parsed.frame.columns) == ["name", "amount"]
    assert parsed.frame["name"].tolist()[:2] == ["Zoë", "Émile"]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_detected(delimiter):
    raw = FRAME.to_csv(index=False, sep=delimiter).encode()
    parsed = parse_csv(raw)
    assert parsed.delimiter == delimiter
    assert parsed.frame.shape == (3, 2)


def test_bom_crlf_and_quoted_newlines():
    raw = b'\xef\xbb\xbfid,note,value\r\n1,"line one\r\nline two",3\r\n2,"a, b",4\r\n'
    parsed = parse_csv(raw)
    assert list(parsed.frame.columns) == ["id", "note", "value"]
    assert parsed.frame["note"].tolist() == ["line one\r\nline two", "a, b"]


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252", "utf-16"])
def test_classic_mac_line_ends_are_rows(encoding):
    # Excel's "CSV (Macintosh)" ends lines with a lone CR.
    raw = "city,n\rSão Paulo,1\rKöln,2\r".encode(encoding)
    parsed = parse_csv(raw)
    assert parsed.frame.to_dict("list") == {"city": ["São Paulo", "Köln"], "n": ["1", "2"]}


def test_every_row_is_kept_in_order_with_cells_as_written():
    frame = parse_csv(b"a,b\n3,x\n,\n1, y \n3,x\n").frame
    assert frame.to_dict("list") == {"a": ["3", "", "1", "3"], "b": ["x", "", " y ", "x"]}


def test_target_defaults_to_target_column_then_last():
    assert resolve_target(["a", "target", "b"], None) == "target"
    assert resolve_target(["a", "b"], None) == "b"
    with pytest.raises(ApiError) as err:
        resolve_target(["a", "Label"], "label")
    assert err.value.code == "unknown_target" and "'Label'" in err.value.message


def test_an_unknown_target_lists_at_most_50_columns_each_cut_short():
    columns = [f"{i:03d}" + "x" * 40_000 for i in range(60)]
    with pytest.raises(ApiError) as err:
        resolve_target(columns, "churn")
    message = err.value.message
    assert len(message) < 50 * 90 + 200 and message.endswith(" and 10 more.")
    assert repr("049" + "x" * 77 + "…") in message and "050x" not in message
    with pytest.raises(ApiError) as err:
        resolve_target(["a", "b"], "c")
    assert err.value.message.endswith("Columns: 'a', 'b'.")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "empty_file"),
        (b"   \n\n", "empty_file"),
        (b"a,b,c\n", "no_rows"),
        (b"a,a,b\n1,2,3\n", "duplicate_columns"),
        (bytes(range(256)) * 20, "not_csv"),
        (b"\x00\x01\x02\x03binary\x00\x00" * 100, "not_csv"),
        (b"a,b\n1,2\n3,4,5,6\n", "malformed_csv"),
    ],
)
def test_unreadable_uploads_raise_clear_errors(raw, code):
    with pytest.raises(ApiError) as err:
        parse_csv(raw)
    assert err.value.code == code
    assert 400 <= err.value.status < 500


def test_short_rows_are_padded_with_missing_values():
    frame = parse_csv(b"a,b,c\n1,2\n3,4,5\n").frame
    assert frame["c"].tolist() == ["", "5"]


def test_unicode_headers_are_kept():
    raw = "größe,日付,value\n1,2020-01-01,3\n2,2020-01-02,4\n".encode()
    assert list(parse_csv(raw).frame.columns) == ["größe", "日付", "value"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_any_bytes_parse_or_raise_our_error(raw):
    try:
        parsed = parse_csv(raw)
    except ApiError as err:
        assert 400 <= err.status < 500
        return
    assert len(parsed.frame) >= 1 and all(isinstance(v, str) for v in parsed.frame.iloc[0])


def _cells_of(frame: pd.DataFrame) -> dict[str, list]:
    return {
        name: [None if not isinstance(v, str) else v for v in frame[name].tolist()]
        for name in frame.columns
    }


# Lines of fields with what pandas' C parser treats specially: quotes, CR, blank-looking
# lines, ragged rows, other delimiters, whitespace and line-like separators.
_raw_fields = st.text(alphabet="ab1.2 ,;\t|\"\r\x0c\x0b\x1c\u2028\xa0é#'", max_size=6)
_raw_lines = st.lists(
    st.lists(_raw_fields, min_size=0, max_size=4).map(lambda fs: ",".join(fs)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=500, deadline=None)
@given(_raw_lines, st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_small_uploads_parse_exactly_like_pandas(lines, newline, trailing_newline):
    # The plain-Python parser takes an upload only when pandas' C parser would read the
    # same cells; otherwise it declines (None) and parse_csv decides.
    from sluice_common.tables.parsing import parse_small_csv

    text = "h1,h2,h3" + newline + newline.join(lines) + (newline if trailing_newline else "")
    raw = text.encode("utf-8")
    try:
        small = parse_small_csv(raw)
    except ApiError as small_err:
        with pytest.raises(ApiError) as err:
            parse_csv(raw)
        assert err.value.code == small_err.code
        return
    if small is None:
        return
    parsed = parse_csv(raw)
    assert (small.encoding, small.delimiter) == (parsed.encoding, parsed.delimiter)
    assert small.n_rows == len(parsed.frame)
    assert small.columns == _cells_of(parsed.frame)


def test_small_upload_fast_path_covers_simple_files():
    from sluice_common.tables.parsing import parse_small_csv

    small = parse_small_csv("a;b;c\r\n1,5;x;\r\n\r\n2;y\r\n".encode("utf-16"))
    assert small is not None and small.delimiter == ";" and small.encoding == "utf-16"
    assert small.columns == {"a": ["1,5", "2"], "b": ["x", "y"], "c": ["", ""]}
    assert parse_small_csv(b'a,b\n"1",2\n') is None  # quotes: pandas decides
    with pytest.raises(ApiError) as too_wide:  # refused by the header check, as in parse_csv
        parse_small_csv(b"a,b\n1,2,3\n")
    assert too_wide.value.code == "malformed_csv"


noisy_cells = st.text(
    alphabet="0123456789+-.eE ,$%_€infINFatyNAnul?\t#/x\xa0\u2003\x1c\x85", max_size=9
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(noisy_cells, min_size=3, max_size=3), min_size=1, max_size=8))
def test_small_batches_reach_the_trainer_as_the_same_arrow_table(rows):
    # preprocess sends small prod batches without pandas; the trainer must get the same table.
    from sluice_common.tables.transport import columns_to_arrow, frame_to_arrow, read_arrow

    frame = pd.DataFrame(rows, columns=["a", "b", "c"]).astype("str")
    report = {"rows_in": len(frame)}
    fast, _ = read_arrow(columns_to_arrow(_cells_of(frame), report))
    slow, _ = read_arrow(frame_to_arrow(frame, report))
    assert fast.schema.remove_metadata() == slow.schema.remove_metadata()
    assert fast.to_pydict() == slow.to_pydict()


def test_a_wide_row_is_refused_even_while_other_threads_change_the_warnings_filter():
    # The warnings filter is process-wide: a parse must not depend on it (gunicorn threads).
    import threading
    import warnings

    stop = threading.Event()

    def toggle():
        while not stop.is_set():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")

    raw = b"name,amount,color\n" + b"Bob,2.5,blue\n" * 20_000 + b"Smith, John,3.5,green\n"
    first_row = b"name,amount,color\nSmith, John,3.5,green\n" + b"Bob,2.5,blue\n" * 20_000
    thread = threading.Thread(target=toggle)
    thread.start()
    try:
        for data in [raw, first_row] * 5:
            with pytest.raises(ApiError) as err:
                parse_csv(data)
            assert err.value.code == "malformed_csv"
    finally:
        stop.set()
        thread.join()


def test_one_very_wide_row_under_a_narrow_header_is_refused():
    for raw in (
        b"amount,color\n" + b"1," * 500_000 + b"x\n",  # the first data row
        b"amount,color\n" + b"1,red\n" * 1000 + b"1," * 500_000 + b"x\n",  # a later one
    ):
        with pytest.raises(ApiError) as err:
            parse_csv(raw)
        assert err.value.code == "malformed_csv"
        assert "fields" in err.value.message


def test_mac_line_ends_with_a_line_break_inside_a_cell():
    # Excel for Mac: rows end in CR, a line break typed inside a cell is LF.
    raw = b'a;b;target\r"x\ny";1;0\r' + b"p;2;1\r" * 3
    frame = parse_csv(raw).frame
    expected = pd.DataFrame(
        {"a": ["x\ny", "p", "p", "p"], "b": ["1", "2", "2", "2"], "target": ["0", "1", "1", "1"]}
    )
    pd.testing.assert_frame_equal(frame, expected)


def test_a_cr_inside_a_cell_of_an_lf_file_is_kept():
    frame = parse_csv(b'a,b\n"one\rtwo",1\n"x",2\n').frame
    assert frame["a"].tolist() == ["one\rtwo", "x"]
