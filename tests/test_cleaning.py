"""Parsing and cleaning of what people actually upload."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice_common.cleaning import clean, resolve_target
from sluice_common.errors import ApiError
from sluice_common.parsing import parse_csv

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


def test_missing_tokens_whitespace_and_numbers_as_text():
    raw = b'a,b,c\n 1 ,NA,x\n"1,234",n/a, y \n$5,null,?\n12%,,z\n'
    frame, report = clean(parse_csv(raw).frame, "prod")
    assert frame["a"].tolist() == [1.0, 1234.0, 5.0, 12.0]
    assert frame["b"].isna().all()
    assert frame["c"].tolist()[:2] == ["x", "y"]
    assert frame["c"].isna().tolist() == [False, False, True, False]
    assert report["numeric_columns"] == ["a"]


def test_semicolon_files_use_decimal_commas():
    raw = b"x;y\n1,5;a\n2,25;b\n3;c\n"
    parsed = parse_csv(raw)
    frame, _ = clean(parsed.frame, "prod", delimiter=parsed.delimiter)
    assert frame["x"].tolist() == [1.5, 2.25, 3.0]


def test_dev_drops_and_reports_unusable_rows_and_columns():
    raw = b"a,empty,b,target\n1,,x,yes\n,,,\n1,,x,yes\n2,,y,\n3,,z,no\n"
    parsed = parse_csv(raw)
    target = resolve_target(list(parsed.frame.columns), None)
    frame, report = clean(parsed.frame, "dev", target)
    assert frame["a"].tolist() == [1.0, 3.0]
    assert report["dropped_rows"] == {"empty": 1, "duplicate": 1, "missing_target": 1}
    assert report["dropped_columns"] == [{"name": "empty", "reason": "all values missing"}]
    assert (report["rows_in"], report["rows_out"]) == (5, 2)
    assert frame["target"].tolist() == ["yes", "no"]  # target text kept as written


def test_prod_keeps_every_row_in_order():
    raw = b"a,b\n3,x\n,\n1,y\n3,x\n"
    frame, report = clean(parse_csv(raw).frame, "prod")
    assert len(frame) == 4 and report["rows_out"] == 4
    assert frame["a"].tolist()[0] == 3.0 and frame["a"].tolist()[2] == 1.0


def test_target_defaults_to_target_column_then_last():
    assert resolve_target(["a", "target", "b"], None) == "target"
    assert resolve_target(["a", "b"], None) == "b"
    with pytest.raises(ApiError) as err:
        resolve_target(["a", "Label"], "label")
    assert err.value.code == "unknown_target" and "'Label'" in err.value.message


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
    frame, _ = clean(frame, "prod")
    assert frame["c"].isna().tolist() == [True, False]


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
    frame, report = clean(parsed.frame, "prod")
    assert len(frame) == report["rows_out"] == len(parsed.frame)


csv_cells = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
    st.integers(-1000, 1000).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["NA", "", "null", "?", " 1,234 ", "$3", "5%"]),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(csv_cells, min_size=3, max_size=3), min_size=1, max_size=20))
def test_any_table_cleans_or_raises_our_error(rows):
    frame = pd.DataFrame(rows, columns=["a", "b", "target"])
    raw = frame.to_csv(index=False).encode()
    try:
        parsed = parse_csv(raw)
        frame, report = clean(parsed.frame, "dev", "target", parsed.delimiter)
    except ApiError as err:
        assert 400 <= err.status < 500
        return
    assert report["rows_out"] == len(frame) <= len(rows)
    assert frame["target"].notna().all()


def test_large_columns_clean_like_small_ones():
    # Columns of 1024+ rows take vectorised shortcuts; they must agree with the plain path.
    values = ["1,234", "$5", "12%", "abc", " 7 ", "NA", "x1", "-3.5", "inf", "1e3"] * 150
    plain = ["1.5", "2", "-3e2", "+.5", "NA", "00012", "3.25", "7."] * 187 + ["4"] * 4
    frame = pd.DataFrame(
        {"mixed": values, "words": ["alpha", "beta", " 9 "] * 500, "plain": plain}
    ).astype("str")
    big, big_report = clean(frame, "prod")
    pieces = [clean(frame.iloc[i : i + 100], "prod")[0] for i in range(0, len(frame), 100)]
    for name in frame.columns:
        small = pd.concat([p[name].astype("object") for p in pieces], ignore_index=True)
        assert big[name].astype("object").equals(small) or (
            pd.to_numeric(big[name], errors="coerce").fillna(-1).tolist()
            == pd.to_numeric(small, errors="coerce").fillna(-1).tolist()
        )
    assert "words" not in big_report["numeric_columns"]
    assert "plain" in big_report["numeric_columns"]


noisy_cells = st.one_of(
    st.text(alphabet="0123456789+-.eE ,$%_€infINFatyNAnul?\t#/x\xa0\u2003\x1c\x85", max_size=9),
    st.sampled_from(["NA", " 1,234 ", "$5", "12%", "inf", "1e400", "-", "1,5"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(noisy_cells, min_size=3, max_size=3), min_size=1, max_size=8),
    st.booleans(),
)
def test_small_prod_batches_clean_exactly_like_large_ones(rows, decimal_comma):
    # Prod batches of up to SMALL_ROWS rows are cleaned in plain Python; same result required.
    from sluice_common import cleaning

    frame = pd.DataFrame(rows, columns=["a", "b", "c"]).astype("str")
    small, small_report = cleaning._clean_prod_small(frame, decimal_comma)
    saved, cleaning.SMALL_ROWS = cleaning.SMALL_ROWS, -1
    try:
        big, big_report = clean(frame, "prod", delimiter=";" if decimal_comma else ",")
    finally:
        cleaning.SMALL_ROWS = saved
    assert small_report == big_report
    for name in frame.columns:
        assert str(small[name].dtype) == str(big[name].dtype)
        as_list = [
            col.astype(object).where(col.notna(), None).tolist() for col in (small[name], big[name])
        ]
        assert as_list[0] == as_list[1]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789+-.eE ,$%_'€£infINFty\t\x0b", max_size=12), st.booleans())
def test_numeric_precheck_never_skips_a_readable_number(text, decimal_comma):
    # Large columns skip number parsing when too few values match _MAY_BE_NUMBER (with Arrow's
    # RE2, on stripped cells): that is only exact if everything to_number reads matches it.
    import pyarrow as pa
    import pyarrow.compute as pc

    from sluice_common.cleaning import _MAY_BE_NUMBER, WHITESPACE, to_number

    text = text.strip(WHITESPACE)
    value = to_number(pd.Series([text], dtype="str"), decimal_comma, finite=False)[0]
    if not np.isnan(value):
        matched = pc.match_substring_regex(pa.array([text]), _MAY_BE_NUMBER, ignore_case=True)
        assert matched[0].as_py()


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
    from sluice_common.parsing import parse_small_csv

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
    from sluice_common.parsing import parse_small_csv

    small = parse_small_csv("a;b;c\r\n1,5;x;\r\n\r\n2;y\r\n".encode("utf-16"))
    assert small is not None and small.delimiter == ";" and small.encoding == "utf-16"
    assert small.columns == {"a": ["1,5", "2"], "b": ["x", "y"], "c": ["", ""]}
    assert parse_small_csv(b'a,b\n"1",2\n') is None  # quotes: pandas decides
    assert parse_small_csv(b"a,b\n1,2,3\n") is None  # too wide: pandas raises the error


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(noisy_cells, min_size=3, max_size=3), min_size=1, max_size=8),
    st.booleans(),
)
def test_small_batches_reach_the_trainer_as_the_same_arrow_table(rows, decimal_comma):
    # preprocess sends small prod batches without pandas; the trainer must get the same table.
    from sluice_common import cleaning
    from sluice_common.transport import columns_to_arrow, frame_to_arrow, read_arrow

    frame = pd.DataFrame(rows, columns=["a", "b", "c"]).astype("str")
    columns, report = cleaning.clean_small(_cells_of(frame), len(frame), decimal_comma)
    cleaned, frame_report = cleaning._clean_prod_small(frame, decimal_comma)
    assert report == frame_report
    fast, fast_report = read_arrow(columns_to_arrow(columns, report))
    slow, slow_report = read_arrow(frame_to_arrow(cleaned, frame_report))
    assert fast_report == slow_report
    assert fast.schema.remove_metadata() == slow.schema.remove_metadata()
    assert fast.to_pydict() == slow.to_pydict()


@pytest.mark.parametrize("phase", ["dev", "prod"])
def test_large_frames_clean_the_same_on_the_column_pool(phase, monkeypatch):
    # From PARALLEL_ROWS rows, columns are cleaned side by side; the result must not change.
    from sluice_common import cleaning

    rng = np.random.default_rng(5)
    n = 3000
    frame = pd.DataFrame(
        {
            "num": rng.normal(size=n).round(3).astype(str),
            "noisy": rng.choice(["1,234", "$5", "NA", " 7 ", "x"], n),
            "cat": rng.choice(["a", "b", " c ", "null", ""], n),
            "target": rng.choice(["yes", "no"], n),
        }
    ).astype("str")
    target = "target" if phase == "dev" else None
    monkeypatch.setattr(cleaning, "PARALLEL_ROWS", 10**9)
    one_by_one, one_report = clean(frame, phase, target)
    monkeypatch.setattr(cleaning, "PARALLEL_ROWS", 1)
    side_by_side, pool_report = clean(frame, phase, target)
    assert pool_report == one_report
    pd.testing.assert_frame_equal(side_by_side, one_by_one)
