"""Messages that say what was detected: comment lines above the header, a title line, a file
read as one column, mixed line ends, too many form parts. Each case through the real /analyze
multipart; the parsing rules also against independent oracles (pandas with explicit options,
hand-built frames)."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split

from sluice_common.errors import ApiError
from sluice_common.tables.parsing import parse_csv, parse_small_csv
from sluice_common.web.upload import parse_upload
from testkit.stack import post_csv


def _wine() -> tuple[pd.DataFrame, pd.DataFrame]:
    wine = load_wine(as_frame=True).frame
    return train_test_split(wine, test_size=0.3, shuffle=True, random_state=1)


def _error(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == code, error
    return error["message"]


def _accuracy(answer: dict, truth: pd.Series) -> float:
    predictions = np.array([str(p) for p in answer["predictions"]])
    return float(np.mean(predictions == truth.astype(str).to_numpy()))


# --- through the real services ------------------------------------------------------------------


def test_comment_lines_above_the_header_are_skipped_and_counted(stack, model_name):
    train, holdout = _wine()
    preamble = b"# Data source: UCI wine, 1988\n# exported 2024-05-01\n"
    dev = post_csv(
        stack.analyze_url,
        preamble + train.to_csv(index=False).encode(),
        phase="dev",
        model=model_name,
    )
    assert dev.status_code == 200, dev.text
    answer = dev.json()
    assert answer["cleaning"]["comment_lines"] == 2
    assert answer["cleaning"]["rows_in"] == len(train)
    assert answer["target"] == "target"
    assert {item["name"] for item in answer["features"]["used"]} == set(train.columns) - {"target"}

    query = holdout.drop(columns="target")
    prod = post_csv(
        stack.analyze_url,
        b"# Data source: UCI wine\n" + query.to_csv(index=False).encode(),
        phase="prod",
        model=model_name,
    )
    assert prod.status_code == 200, prod.text
    assert prod.json()["cleaning"]["comment_lines"] == 1
    assert _accuracy(prod.json(), holdout["target"]) >= 0.9


def test_a_title_line_above_the_header_is_named(stack, model_name):
    train, _ = _wine()
    raw = b"Wine measurements\n" + train.to_csv(index=False).encode()
    message = _error(
        post_csv(stack.analyze_url, raw, phase="dev", model=model_name), 400, "malformed_csv"
    )
    assert "'Wine measurements'" in message and "title" in message and "header" in message


@pytest.mark.parametrize("url", ["analyze_url", "ml_url"])
def test_a_space_separated_file_is_said_to_be_one_column(stack, model_name, url):
    train, _ = _wine()
    raw = train.head(60).to_csv(index=False, sep=" ").encode()
    message = _error(
        post_csv(getattr(stack, url), raw, phase="dev", model=model_name),
        422,
        "no_usable_features",
    )
    assert "Only one column" in message
    assert "comma, semicolon, tab, pipe" in message
    assert "spaces are not a supported delimiter" in message
    assert "'alcohol malic_acid" in message  # the header as it was read


def _mixed_line_ends(frame: pd.DataFrame) -> bytes:
    """The frame as CSV with CRLF, CR and LF line ends in turn (files pasted together)."""
    lines = frame.to_csv(index=False).splitlines()
    ends = itertools.cycle(["\r\n", "\r", "\n"])
    return "".join(line + end for line, end in zip(lines, ends, strict=False)).encode()


def test_mixed_line_ends_are_read_as_rows(stack, model_name):
    train, holdout = _wine()
    raw = _mixed_line_ends(train)
    assert b"\r\n" in raw and b"\r1" in raw.replace(b"\r\n", b"")  # truly mixed
    dev = post_csv(stack.analyze_url, raw, phase="dev", model=model_name)
    assert dev.status_code == 200, dev.text
    assert dev.json()["cleaning"]["rows_in"] == len(train)
    query = holdout.drop(columns="target")
    prod = post_csv(stack.analyze_url, _mixed_line_ends(query), phase="prod", model=model_name)
    assert prod.status_code == 200, prod.text
    assert prod.json()["n_rows"] == len(query)
    assert _accuracy(prod.json(), holdout["target"]) >= 0.9


def _multipart(fields: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart/form-data body written by hand (requests takes seconds for 50,000 parts)."""
    boundary = "sluiceboundary7MA4YWxkTrZu0gW"
    parts = []
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        parts.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _post_body(stack, model_name: str, body: bytes, content_type: str) -> requests.Response:
    """A dev request with a multipart body built by hand (as a client could send it)."""
    return requests.post(
        stack.analyze_url,
        params={"phase": "dev", "model": model_name},
        data=body,
        headers={"Content-Type": content_type},
        timeout=120,
    )


def test_too_many_form_parts_names_that_limit(stack, model_name):
    fields = [(f"f{i}", b"x" * 8, None) for i in range(50_000)]
    fields.append(("data_file", b"a,b\n1,2\n3,4\n", "data.csv"))
    body, content_type = _multipart(fields)
    assert 2_000_000 < len(body) < 5_000_000  # a few MB: far under MAX_UPLOAD_MB
    response = _post_body(stack, model_name, body, content_type)
    message = _error(response, 413, "too_many_form_parts")
    assert "1,000 parts" in message and "max_form_parts" in message
    assert "MB" not in message  # not the upload size limit


def test_a_csv_sent_as_a_text_field_names_that_limit(stack, model_name):
    csv_text = b"a,b\n" + b"1,2\n" * 200_000  # 800 KB, as curl -F data_file=<file sends it
    body, content_type = _multipart([("data_file", csv_text, None)])
    response = _post_body(stack, model_name, body, content_type)
    message = _error(response, 413, "form_field_too_large")
    assert "500,000 bytes" in message and "data_file=@" in message


# --- the parsing rules against oracles -----------------------------------------------------------

FRAME = pd.DataFrame({"a": ["1", "2", "3"], "b": ["x, y", 'say "hi"', ""], "c": ["#1", "4", "5"]})

# Comment lines: start with #, at most one comma (fewer fields than the 3 columns), quotes and
# spaces anywhere.
_comment = st.text(alphabet="abc 12:./'\"#;|\t", max_size=20).flatmap(
    lambda head: st.sampled_from(["", ",", ", "]).map(lambda comma: "#" + head + comma)
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_comment, min_size=1, max_size=4),
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),
)
def test_comment_lines_are_skipped_as_pandas_reads_the_rest(comments, newline, blank_between):
    body = FRAME.to_csv(index=False, lineterminator=newline)
    preamble = newline.join(comments) + newline + (newline if blank_between else "")
    raw = (preamble + body).encode()
    parsed = parse_csv(raw)
    oracle = pd.read_csv(io.StringIO(body), dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(parsed.frame, oracle)
    assert parsed.comment_lines == len(comments)
    # The plain-Python path for small prod batches agrees when it takes the upload.
    small = parse_small_csv(raw)
    if small is not None:
        assert small.comment_lines == len(comments)
        assert small.columns == oracle.to_dict("list")


def test_a_header_that_starts_with_hash_is_a_header():
    # A column named # (a number in a list) is as wide as the data: not a comment.
    raw = b"#,Name,Type\n1,Bulbasaur,Grass\n4,Charmander,Fire\n"
    parsed = parse_csv(raw)
    assert list(parsed.frame.columns) == ["#", "Name", "Type"] and parsed.comment_lines == 0
    small = parse_small_csv(raw)
    assert small is not None and list(small.columns) == ["#", "Name", "Type"]
    # ... also below a comment.
    parsed = parse_csv(b"# Pokedex\n" + raw)
    assert list(parsed.frame.columns) == ["#", "Name", "Type"] and parsed.comment_lines == 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-999, 999), st.sampled_from(["x", "y z", '"q\r\nr"', '"s\nt"'])),
        min_size=2,
        max_size=30,
    ),
    st.data(),
)
def test_mixed_line_ends_give_the_rows_written(rows, data):
    ends = data.draw(st.lists(st.sampled_from(["\n", "\r", "\r\n"]), min_size=len(rows) + 1,
                              max_size=len(rows) + 1))  # fmt: skip
    ends[0] = "\r\n"  # at least one CRLF: mixed, not a classic Mac file
    lines = ["n,s"] + [f"{n},{s}" for n, s in rows]
    raw = "".join(line + end for line, end in zip(lines, ends, strict=True)).encode()
    expected = pd.DataFrame({"n": [str(n) for n, _ in rows], "s": [s.strip('"') for _, s in rows]})
    pd.testing.assert_frame_equal(parse_csv(raw).frame, expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["", "a", "b", "Unnamed: 0", "Unnamed: 1", "Unnamed: 0.1"]),
                min_size=2, max_size=6))  # fmt: skip
def test_blank_headers_are_named_as_pandas_names_them(names):
    real = [n for n in names if n]
    if len(real) != len(set(real)):
        return  # real duplicates are refused (pandas would rename them)
    raw = (",".join(names) + "\n" + ",".join("1" * len(names)) + "\n").encode()
    oracle = pd.read_csv(io.BytesIO(raw), dtype=str).columns.tolist()
    assert list(parse_csv(raw).frame.columns) == oracle


def test_one_column_is_said_in_dev_only():
    with pytest.raises(ApiError) as err:
        parse_upload(b"label\nyes\nno\nyes\n", "dev", None)
    assert err.value.code == "no_usable_features" and "Only one column" in err.value.message
    assert "spaces" not in err.value.message  # nothing suggests another delimiter
    # A model with one input reads a one-column prod file.
    cells, report, _ = parse_upload(b"age\n31\n47\n", "prod", None)
    assert report["columns_in"] == 1 and list(cells) == ["age"]


def test_a_title_with_the_delimiter_in_it_is_quoted(stack, model_name):
    train, _ = _wine()
    body = b"Wine export, 2024\n" + train.to_csv(index=False).encode()
    message = _error(
        post_csv(stack.analyze_url, body, phase="dev", model=model_name), 400, "malformed_csv"
    )
    assert "'Wine export, 2024'" in message and "title" in message


@pytest.mark.parametrize("declared", ["sep=;\n", "SEP=;\r\n", "sep=,\n", "sep=\t\n"])
def test_excels_sep_line_names_the_delimiter(declared):
    delimiter = declared[4]
    frame = pd.DataFrame({"a b": ["1,5", "2"], "c": ["x;y", "z"], "d": ["3", "4"]})
    body = declared + frame.to_csv(index=False, sep=delimiter)
    # The oracle: pandas told the delimiter, with the sep= line skipped.
    expected = pd.read_csv(
        io.StringIO(body), sep=delimiter, skiprows=1, dtype=str, keep_default_na=False
    )
    small = parse_small_csv(body.encode())  # None when quoting sends it to pandas
    for parsed in filter(None, (parse_csv(body.encode()), small)):
        assert parsed.sep_line and parsed.delimiter == delimiter
        cells = getattr(parsed, "frame", None)
        cells = pd.DataFrame(parsed.columns) if cells is None else cells
        pd.testing.assert_frame_equal(cells.reset_index(drop=True), expected)
    _, report, _ = parse_upload(body.encode(), "prod", None)
    assert report["sep_line"] is True and report["rows_in"] == 2


def test_comment_lines_have_a_limit_and_a_file_of_only_comments_says_so():
    limit = 1000
    kept = parse_csv(("# note\n" * limit + "a,b\n1,2\n").encode())
    assert kept.comment_lines == limit and list(kept.frame.columns) == ["a", "b"]
    with pytest.raises(ApiError) as over:
        parse_csv(("# note\n" * (limit + 1) + "a,b\n1,2\n").encode())
    assert over.value.code == "malformed_csv" and "more than 1,000 lines" in over.value.message
    with pytest.raises(ApiError) as only:
        parse_csv(b"# exported by a tool\n# nothing else\n")
    assert only.value.code == "empty_file" and "only lines starting with #" in only.value.message
