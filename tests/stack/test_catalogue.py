"""Bad-input catalogue (issue 3), against both /analyze and the trainer's /ml.

Every bad input gets a clear 4xx in our one JSON error shape (never a 500, never HTML, never a
traceback); every input a robust parser can read is accepted; nothing already served is lost.
One champion is trained when the module starts and checked again by the last test.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
import uuid
import zipfile

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testkit.stack import ROOT, post_csv
from tests.datasets import to_csv

SERVICES = ["preprocess", "trainer"]
CHAMPION = "catalogue-champion"
ARROW = "application/vnd.apache.arrow.stream"


def url_of(stack, service: str) -> str:
    return stack.analyze_url if service == "preprocess" else stack.ml_url


def table(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    """Small labelled table: two numeric, two categorical features and a yes/no target."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    income = rng.normal(50_000, 15_000, rows).round(2)
    score = age + (plan == "pro") * 25 + (income > 50_000) * 30 + rng.normal(0, 5, rows)
    return pd.DataFrame(
        {
            "age": age,
            "income": income,
            "plan": plan,
            "city": rng.choice(["Oslo", "Lima", "Zürich"], rows),
            "label": np.where(score > 80, "yes", "no"),
        }
    )


def query_frame(rows: int = 12, seed: int = 5) -> pd.DataFrame:
    return table(rows, seed).drop(columns="label")


def assert_error(response: requests.Response, status: int, code: str | None, hint=None) -> dict:
    """Our JSON error shape with the expected status and code, and a message that helps."""
    text = response.text
    assert response.status_code == status, f"{response.status_code}: {text[:500]}"
    assert "Traceback" not in text and "<html" not in text.lower(), text[:500]
    assert response.headers.get("Content-Type", "").startswith("application/json"), text[:300]
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"]
    if code is not None:
        assert error["code"] == code, error
    message = error.get("message")
    assert isinstance(message, str) and len(message) > 20, error
    if hint is not None:
        assert hint.lower() in message.lower(), error
    return error


def assert_ok(response: requests.Response) -> dict:
    text = response.text
    assert response.status_code == 200, f"{response.status_code}: {text[:800]}"
    assert "Traceback" not in text
    return response.json()


@pytest.fixture(scope="module")
def champion(stack):
    """A champion trained when the module starts, with its answers on a fixed query."""
    answer = assert_ok(post_csv(stack.analyze_url, to_csv(table(300)), phase="dev", model=CHAMPION))
    assert answer["promoted"] is True
    query = query_frame()
    before = {
        service: assert_ok(
            post_csv(url_of(stack, service), to_csv(query), phase="prod", model=CHAMPION)
        )
        for service in SERVICES
    }
    return {"version": answer["version"], "query": query, "before": before}


def test_champion_is_trained_first(champion):
    for answer in champion["before"].values():
        assert answer["version"] == champion["version"]
        assert answer["n_rows"] == len(champion["query"])


# --- malformed uploads -------------------------------------------------------------------------


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.csv", to_csv(table(40)))
    return buf.getvalue()


PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"
    b"\x1f\xf3\xffa" + np.random.default_rng(3).bytes(300)
)
MALFORMED = {
    "empty": (b"", 400, "empty_file", "header"),
    "whitespace_only": (b"  \r\n\n \t\n", 400, "empty_file", "header"),
    "header_only": (b"age,income,plan,label\n", 400, "no_rows", "no data rows"),
    "binary_random": (np.random.default_rng(1).bytes(4000), 400, "not_csv", "CSV"),
    "binary_with_nuls": (b"\x00\x01\x02binary\x00\x00" * 200, 400, "not_csv", "CSV"),
    "ragged_more_fields": (
        b"a,b,label\n1,2,yes\n3,4,no,extra\n5,6,yes\n",
        400,
        "malformed_csv",
        "fields",
    ),
    # Every data row one field wider than the header: pandas would silently take the first
    # column as the index and shift every value one column left.
    "ragged_every_row_wider": (
        b"a,b,label\n"
        + b"".join(
            b"%d,%d,%d,%s\n" % (i, i * 2, i % 7, b"yes" if i % 2 else b"no") for i in range(30)
        ),
        400,
        "malformed_csv",
        "fields",
    ),
    "duplicate_columns": (b"a,b,a,label\n1,2,3,yes\n4,5,6,no\n", 400, "duplicate_columns", "'a'"),
    "duplicate_after_strip": (b"a, a ,label\n1,2,yes\n", 400, "duplicate_columns", "unique"),
    "zip": (_zip(), 400, "not_csv", "CSV"),
    "png": (PNG, 400, "not_csv", "CSV"),
    "gzip": (gzip.compress(to_csv(table(40))), 400, "not_csv", "CSV"),
}


@pytest.mark.parametrize("phase", ["dev", "prod"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("service", SERVICES)
def test_malformed_upload_is_a_clear_400(stack, champion, service, case, phase):
    raw, status, code, hint = MALFORMED[case]
    response = post_csv(url_of(stack, service), raw, phase=phase, model=f"cat-malformed-{case}")
    assert_error(response, status, code, hint)


# --- inputs a robust parser reads: accepted in dev ---------------------------------------------


def _accepted() -> dict:
    base = table(40, seed=11)
    cases = {}
    cases["utf16_bom"] = (to_csv(base, encoding="utf-16"), {"encoding": "utf-16"})
    cases["cp1252"] = (
        to_csv(base.assign(city=base.city.str.replace("Lima", "Café")), encoding="cp1252"),
        {},
    )
    cases["semicolon_decimal_comma"] = (
        to_csv(base, sep=";", decimal=","),
        {"delimiter": ";", "numeric": ["age", "income"]},
    )
    cases["tab"] = (to_csv(base, sep="\t"), {"delimiter": "\t", "numeric": ["age", "income"]})
    cases["bom_crlf"] = (
        to_csv(base, encoding="utf-8-sig", lineterminator="\r\n"),
        {"features": ["age", "income", "plan"]},
    )
    noted = base.assign(note=[f"line one {i % 3}\nline two, with comma" for i in range(len(base))])
    cases["quoted_newlines"] = (to_csv(noted[[*base.columns[:-1], "note", "label"]]), {"rows": 40})
    cases["unicode_names"] = (
        to_csv(
            base.rename(columns={"age": "âge", "income": "收入", "plan": "план", "label": "ラベル"})
        ),
        {"features": ["âge", "收入", "план"], "target": "ラベル"},
    )
    cases["bracket_names"] = (
        to_csv(base.rename(columns={"income": "income [EUR]", "plan": "plan<tier>"})),
        {"features": ["income [EUR]", "plan<tier>"]},
    )
    rng = np.random.default_rng(2)
    wide = pd.DataFrame(
        rng.normal(size=(60, 2000)).round(3), columns=[f"f{i}" for i in range(2000)]
    )
    wide["label"] = np.where(wide["f0"] > 0, "yes", "no")
    cases["wide_2000_columns"] = (to_csv(wide), {"rows": 60})
    spaced = base.astype(str).map(lambda v: f"  {v} \t")
    spaced.columns = [f" {c}  " for c in base.columns]
    cases["stray_whitespace"] = (to_csv(spaced), {"numeric": ["age", "income"], "target": "label"})
    texty = base.assign(
        income=[f"${v:,.2f}" for v in base.income + 1000],
        age=[f"{v}%" for v in base.age],
        visits=[f"{1000 + 37 * i:,}" for i in range(len(base))],
    )
    texty = texty[["age", "income", "visits", "plan", "city", "label"]]
    cases["numbers_as_text"] = (to_csv(texty), {"numeric": ["age", "income", "visits"]})
    return cases


ACCEPTED = _accepted()


@pytest.mark.parametrize("case", sorted(ACCEPTED))
@pytest.mark.parametrize("service", SERVICES)
def test_readable_input_is_accepted_in_dev(stack, champion, service, case, model_name):
    raw, expect = ACCEPTED[case]
    answer = assert_ok(post_csv(url_of(stack, service), raw, phase="dev", model=model_name))
    cleaning = answer["cleaning"]
    assert cleaning["rows_in"] == expect.get("rows", 40)
    assert answer["target"] == expect.get("target", "label")
    if "delimiter" in expect:
        assert cleaning["delimiter"] == expect["delimiter"]
    if "encoding" in expect:
        assert cleaning["encoding"] == expect["encoding"]
    numeric = {item["name"] for item in answer["features"]["used"] if item["kind"] == "numeric"}
    assert set(expect.get("numeric", [])) <= numeric, answer["features"]
    used = {item["name"] for item in answer["features"]["used"]}
    assert set(expect.get("features", [])) <= used, answer["features"]


# --- never a 500 on odd but readable numbers ----------------------------------------------------


def _odd_numbers() -> dict:
    base = table(40, seed=12)
    income = base.income.astype(str)
    return {
        "inf_in_feature": to_csv(base.assign(income=income.where(base.index != 3, "inf"))),
        "overflow_in_feature": to_csv(base.assign(income=income.where(base.index != 3, "1e400"))),
        "beyond_float32_feature": to_csv(base.assign(income=base.income * 1e300)),
        "inf_in_regression_target": to_csv(
            base.assign(label=income.where(base.index != 3, "Infinity")).drop(columns="income")
        ),
    }


ODD_NUMBERS = _odd_numbers()


@pytest.mark.parametrize("case", sorted(ODD_NUMBERS))
@pytest.mark.parametrize("service", SERVICES)
def test_odd_numbers_never_500_in_dev(stack, champion, service, case, model_name):
    response = post_csv(url_of(stack, service), ODD_NUMBERS[case], phase="dev", model=model_name)
    if response.status_code != 200:
        assert_error(response, 422, None)


@pytest.mark.parametrize("service", SERVICES)
def test_infinite_value_in_prod_is_served_or_clear(stack, champion, service):
    query = champion["query"].astype({"income": str})
    query.loc[2, "income"] = "inf"
    response = post_csv(url_of(stack, service), to_csv(query), phase="prod", model=CHAMPION)
    if response.status_code == 200:
        assert len(response.json()["predictions"]) == len(query)
    else:
        error = assert_error(response, 422, None)
        assert "Stack trace" not in error["message"] and ".cc:" not in error["message"], error


# --- target problems ----------------------------------------------------------------------------


def _targets() -> dict:
    base = table(40, seed=13)
    ids = pd.DataFrame({"id": range(1, 41), "label": ["yes", "no"] * 20})
    return {
        "unknown_target": (to_csv(base), {"target": "churn"}, 422, "unknown_target", "target"),
        "case_near_miss": (to_csv(base), {"target": "Label"}, 422, "unknown_target", "'label'"),
        "single_class": (to_csv(base.assign(label="yes")), {}, 422, "single_class", "two"),
        "all_targets_empty": (to_csv(base.assign(label="")), {}, 422, "empty_target", "target="),
        "all_targets_na_tokens": (to_csv(base.assign(label="N/A")), {}, 422, "empty_target", None),
        "too_few_rows": (to_csv(base.head(6)), {}, 422, "too_few_rows", "at least"),
        "only_id_besides_target": (to_csv(ids), {}, 422, "no_usable_features", "id"),
        "regression_on_text": (
            to_csv(base),
            {"task": "regression"},
            422,
            "target_not_numeric",
            None,
        ),
    }


TARGETS = _targets()


@pytest.mark.parametrize("case", sorted(TARGETS))
@pytest.mark.parametrize("service", SERVICES)
def test_target_problem_is_a_clear_422(stack, champion, service, case, model_name):
    raw, params, status, code, hint = TARGETS[case]
    response = post_csv(url_of(stack, service), raw, phase="dev", model=model_name, **params)
    assert_error(response, status, code, hint)


# --- prod schema problems -----------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_prod_missing_columns_are_named(stack, champion, service):
    query = champion["query"].drop(columns=["plan", "income"])
    response = post_csv(url_of(stack, service), to_csv(query), phase="prod", model=CHAMPION)
    error = assert_error(response, 422, "missing_columns")
    assert "'plan'" in error["message"] and "'income'" in error["message"]
    assert sorted(error["missing_columns"]) == ["income", "plan"]


@pytest.mark.parametrize("service", SERVICES)
def test_prod_extra_and_reordered_columns_give_the_same_predictions(stack, champion, service):
    query = champion["query"]
    shuffled = query[list(reversed(query.columns))].assign(extra=7, label="yes")
    url = url_of(stack, service)
    answer = assert_ok(post_csv(url, to_csv(shuffled), phase="prod", model=CHAMPION))
    assert answer["predictions"] == champion["before"][service]["predictions"]
    assert {"extra", "label"} <= set(answer["ignored_columns"])


@pytest.mark.parametrize("rows", [10, 40])
@pytest.mark.parametrize("service", SERVICES)
def test_prod_wrong_type_in_numeric_column_is_warned(stack, champion, service, rows):
    query = query_frame(rows, seed=21).astype({"age": str})
    query.loc[4, "age"] = "forty"
    url = url_of(stack, service)
    answer = assert_ok(post_csv(url, to_csv(query), phase="prod", model=CHAMPION))
    assert answer["n_rows"] == rows
    reported = answer["warnings"].get("not_numeric_treated_as_missing", {})
    assert reported.get("age") == 1, (answer["warnings"], answer["cleaning"]["coerced_to_missing"])


@pytest.mark.parametrize("service", SERVICES)
def test_prod_numbers_as_text_keep_their_values(stack, champion, service):
    """'1,234'-style values score like the plain numbers, even beside one bad value."""
    plain = query_frame(10, seed=22)
    url = url_of(stack, service)
    expected = assert_ok(post_csv(url, to_csv(plain), phase="prod", model=CHAMPION))
    texty = plain.assign(income=[f"${v:,.2f}" for v in plain.income])
    texty.loc[9, "income"] = "unknown"
    answer = assert_ok(post_csv(url, to_csv(texty), phase="prod", model=CHAMPION))
    assert answer["predictions"][:9] == expected["predictions"][:9], answer["warnings"]
    # Counted, never silent: one cell unreadable, the grouped ones read with another grouping.
    assert answer["warnings"]["not_numeric_treated_as_missing"] == {"income": 1}
    assert answer["warnings"]["numbers_read_with_other_grouping"]["income"] >= 1


@pytest.mark.parametrize("service", SERVICES)
def test_prod_unseen_categories_are_warned(stack, champion, service):
    query = champion["query"].copy()
    query.loc[[0, 3], "plan"] = "platinum"
    url = url_of(stack, service)
    answer = assert_ok(post_csv(url, to_csv(query), phase="prod", model=CHAMPION))
    assert answer["n_rows"] == len(query)
    assert answer["warnings"]["unseen_categories_treated_as_missing"] == {"plan": 2}


@pytest.mark.parametrize("service", SERVICES)
def test_prod_unknown_model_is_404(stack, champion, service):
    query = to_csv(champion["query"])
    response = post_csv(url_of(stack, service), query, phase="prod", model="cat-never-trained")
    assert_error(response, 404, "model_not_found", "phase=dev")


# --- protocol problems --------------------------------------------------------------------------

PROTOCOL_PARAMS = {
    "no_phase": ({"model": CHAMPION}, 400, "missing_phase", "phase"),
    "unknown_phase": ({"phase": "staging"}, 400, "invalid_phase", "dev, prod"),
    "unknown_task": ({"phase": "dev", "task": "ranking"}, 400, "invalid_task", "regression"),
    "invalid_promote": ({"phase": "dev", "promote": "maybe"}, 400, "invalid_promote", "auto"),
    "invalid_proba": ({"phase": "prod", "proba": "perhaps"}, 400, "invalid_proba", "true"),
    # A typo would otherwise be ignored and the default used (the wrong model or target).
    "misspelt_parameter": ({"phase": "prod", "modle": CHAMPION}, 400, "unknown_parameter", "model"),
    "repeated_parameter": ({"phase": ["prod", "dev"]}, 400, "repeated_parameter", "phase"),
}


@pytest.mark.parametrize("case", sorted(PROTOCOL_PARAMS))
@pytest.mark.parametrize("service", SERVICES)
def test_bad_query_parameter_is_a_clear_400(stack, champion, service, case):
    params, status, code, hint = PROTOCOL_PARAMS[case]
    response = post_csv(url_of(stack, service), to_csv(table(20)), **params)
    assert_error(response, status, code, hint)


@pytest.mark.parametrize("service", SERVICES)
def test_upload_in_another_field_or_as_json_is_missing_file(stack, champion, service):
    url = url_of(stack, service)
    params = {"phase": "prod", "model": CHAMPION}
    other = requests.post(url, params=params, files={"file": ("d.csv", b"a\n1\n")}, timeout=30)
    error = assert_error(other, 400, "missing_file", "data_file")
    assert "file" in error["message"]
    as_json = requests.post(url, params=params, json={"rows": [[1, 2]]}, timeout=30)
    assert_error(as_json, 400, "missing_file", "data_file")
    as_form = requests.post(url, params=params, data={"data_file": "a,b\n1,2\n"}, timeout=30)
    assert_error(as_form, 400, "missing_file", "data_file")
    raw_body = requests.post(
        url, params=params, data=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"}, timeout=30
    )
    assert_error(raw_body, 400, "missing_file", "data_file")


@pytest.mark.parametrize("service", SERVICES)
def test_a_multipart_body_cut_off_is_malformed_not_missing(stack, champion, service):
    url = url_of(stack, service)
    params = {"phase": "prod", "model": CHAMPION}
    part = (
        b'--XyZ\r\nContent-Disposition: form-data; name="data_file"; filename="d.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\n" + to_csv(query_frame(3))
    )
    whole = part + b"\r\n--XyZ--\r\n"
    multipart = {"Content-Type": "multipart/form-data; boundary=XyZ"}
    # The same part, whole, is read (the oracle that the cut is what is refused).
    assert requests.post(url, params=params, data=whole, headers=multipart, timeout=30).ok
    cut = requests.post(url, params=params, data=part, headers=multipart, timeout=30)
    error = assert_error(cut, 400, "malformed_multipart", "cut off")
    assert f"{len(part)} bytes received" in error["message"]
    no_boundary = requests.post(
        url, params=params, data=whole, headers={"Content-Type": "multipart/form-data"}, timeout=30
    )
    assert_error(no_boundary, 400, "malformed_multipart", "multipart/form-data")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("service", SERVICES)
def test_wrong_method_is_a_json_405(stack, champion, service, method):
    response = requests.request(method, url_of(stack, service), params={"phase": "dev"}, timeout=30)
    assert_error(response, 405, "method_not_allowed", "POST")


@pytest.mark.parametrize("path", ["/nope", "/analyze/extra", "/ml/", "/../etc/passwd", "/%00"])
@pytest.mark.parametrize("service", SERVICES)
def test_unknown_path_is_a_json_404(stack, champion, service, path):
    response = requests.post(
        stack.url(service) + path, params={"phase": "dev"}, files={"data_file": b"a\n"}, timeout=30
    )
    assert_error(response, 404, "not_found", None)


# --- hostile input ------------------------------------------------------------------------------


def _listing(path: str) -> set[str]:
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


def _found(token: str, roots: list[str]) -> list[str]:
    hits = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in {".venv", ".git", "node_modules"}]
            hits += [os.path.join(dirpath, n) for n in dirnames + filenames if token in n]
    return hits


@pytest.mark.parametrize("phase", ["prod", "dev"])
@pytest.mark.parametrize("service", SERVICES)
def test_path_segments_in_the_file_name_are_harmless(stack, champion, service, phase, model_name):
    token = f"sluice-cat-{uuid.uuid4().hex[:12]}"
    tmp = tempfile.gettempdir()
    names = [
        f"../../{token}.csv",
        f"../../../../../../{tmp}/{token}-up.csv",
        f"{tmp}/{token}-abs.csv",
        f"{ROOT}/{token}-root.csv",
        f"..\\..\\{token}-win.csv",
        f"{token}\x00.csv",
    ]
    before = {p: _listing(p) for p in (ROOT, tmp, stack.home)}
    if phase == "prod":
        body, model = to_csv(champion["query"]), CHAMPION
    else:
        body, model = to_csv(table(30, seed=31)), model_name
    for name in names:
        response = requests.post(
            url_of(stack, service),
            params={"phase": phase, "model": model},
            files={"data_file": (name, body, "text/csv")},
            timeout=120,
        )
        answer = assert_ok(response)
        assert token not in response.text
        if phase == "prod":
            assert answer["predictions"] == champion["before"][service]["predictions"]
    for path, entries in before.items():
        assert not [e for e in _listing(path) - entries if token in e], path
    assert _found(token, [ROOT, stack.home]) == []
    assert not [e for e in _listing(tmp) if token in e]


LONG = "x" * 1000
VERY_LONG = "y" * 6000
HOSTILE_PARAMS = {
    "model_dotdot": ({"model": "../../etc/passwd"}, 400, "invalid_model_name"),
    "model_absolute": ({"model": "/etc/passwd"}, 400, "invalid_model_name"),
    "model_slash_inside": ({"model": "a/../../b"}, 400, "invalid_model_name"),
    "model_backslash": ({"model": "a\\..\\b"}, 400, "invalid_model_name"),
    "model_nul": ({"model": "cat\x00evil"}, 400, "invalid_model_name"),
    "model_newline": ({"model": "cat\nevil"}, 400, "invalid_model_name"),
    "model_long": ({"model": LONG}, 400, "invalid_model_name"),
    "model_very_long": ({"model": VERY_LONG}, 400, None),
    "model_empty": ({"model": ""}, 400, "invalid_model_name"),
    "target_dotdot": ({"target": "../../etc/passwd"}, 422, "unknown_target"),
    "target_nul": ({"target": "label\x00"}, 422, "unknown_target"),
    "target_long": ({"target": LONG}, 400, "invalid_target"),
    "target_very_long": ({"target": VERY_LONG}, 400, None),
    "target_blank": ({"target": "   "}, 400, "invalid_target"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_PARAMS))
@pytest.mark.parametrize("service", SERVICES)
def test_hostile_model_and_target_params_are_4xx(stack, champion, service, case):
    params, status, code = HOSTILE_PARAMS[case]
    response = post_csv(url_of(stack, service), to_csv(table(30)), phase="dev", **params)
    assert_error(response, status, code)


def _arrow(frame_or_table) -> bytes:
    table_ = (
        frame_or_table
        if isinstance(frame_or_table, pa.Table)
        else pa.Table.from_pandas(frame_or_table, preserve_index=False)
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table_.schema) as writer:
        writer.write_table(table_)
    return sink.getvalue().to_pybytes()


def _arrow_cases() -> dict:
    base = table(30, seed=41)
    dup = pa.Table.from_arrays(
        [pa.array(base.age), pa.array(base.income), pa.array(base.label)], ["x", "x", "label"]
    )
    nested = pa.table(
        {"x": pa.array([[i, i + 1] for i in range(30)]), "label": pa.array(list(base.label))}
    )
    return {
        "not_arrow": (b"a,b\n1,2\n", "dev", "malformed_arrow"),
        "truncated": (_arrow(base)[:200], "dev", "malformed_arrow"),
        "duplicate_names_dev": (_arrow(dup), "dev", None),
        "duplicate_names_prod": (_arrow(dup), "prod", None),
        "nested_list_column_dev": (_arrow(nested), "dev", None),
        "no_columns_prod": (_arrow(pa.table({})), "prod", None),
        # 40 MB of zeros in a few KB: refused before anything is decompressed.
        "zstd_bomb_dev": (
            _compressed(pa.table({"x": pa.array(bytes(40_000_000))})),
            "dev",
            "malformed_arrow",
        ),  # fmt: skip
        "lz4_prod": (
            _compressed(pa.table({"age": pa.array(base.age)}), "lz4"),
            "prod",
            "malformed_arrow",
        ),  # fmt: skip
        # Ten million rows in a few hundred bytes: no buffers for a null-typed column.
        "null_typed_rows": (
            _arrow(pa.table({"x": pa.nulls(10_000_000)})),
            "prod",
            "malformed_arrow",
        ),  # fmt: skip
        "typed_numbers": (
            _arrow(pa.table({"age": pa.array(base.age)})),
            "prod",
            "malformed_arrow",
        ),  # fmt: skip
        "dictionary_batch": (
            _arrow(pa.table({"x": pa.array(["a", "b"] * 15).dictionary_encode()})),
            "dev",
            "malformed_arrow",
        ),  # fmt: skip
    }


def _compressed(table_: pa.Table, codec: str = "zstd") -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=codec)
    with pa.ipc.new_stream(sink, table_.schema, options=options) as writer:
        writer.write_table(table_)
    return sink.getvalue().to_pybytes()


ARROW_CASES = _arrow_cases()


def internal_header(stack) -> dict:
    """What preprocess presents with its Arrow bodies (the trainer made it on first start)."""
    with open(os.path.join(stack.home, "internal.token"), encoding="ascii") as handle:
        return {"X-Sluice-Internal": handle.read().strip()}


@pytest.mark.parametrize("case", sorted(ARROW_CASES))
def test_arrow_from_anyone_but_preprocess_is_403(stack, champion, case):
    raw, phase, _ = ARROW_CASES[case]
    for headers in ({}, {"X-Sluice-Internal": "guess"}):
        response = requests.post(
            stack.ml_url,
            params={"phase": phase, "model": CHAMPION},
            files={"data_file": ("t.arrow", raw, ARROW)},
            headers=headers,
            timeout=120,
        )
        assert_error(response, 403, "arrow_not_allowed", "data_file")


@pytest.mark.parametrize("case", sorted(ARROW_CASES))
def test_hostile_arrow_to_trainer_is_4xx(stack, champion, case, model_name):
    # Even with preprocess's credential (a compromised preprocess), bad Arrow is only a 4xx.
    raw, phase, code = ARROW_CASES[case]
    model = CHAMPION if phase == "prod" else model_name
    response = requests.post(
        stack.ml_url,
        params={"phase": phase, "model": model},
        files={"data_file": ("t.arrow", raw, ARROW)},
        headers=internal_header(stack),
        timeout=120,
    )
    status = response.status_code
    assert 400 <= status < 500, f"{status}: {response.text[:500]}"
    assert_error(response, status, code)


COLUMNS = "application/vnd.sluice.columns+json"
COLUMN_CASES = {  # preprocess's JSON column body of a few rows, broken as an attacker would
    "not json": (b'{"columns": [', "malformed_arrow"),
    "not an object": (b"[1, 2]", "malformed_arrow"),
    "number cells": (b'{"columns": [["a", [1]]], "report": {}}', "malformed_arrow"),
    "null cells": (b'{"columns": [["a", [null]]], "report": {}}', "malformed_arrow"),
    "ragged": (b'{"columns": [["a", ["1"]], ["b", []]], "report": {}}', "malformed_arrow"),
    "repeated name": (b'{"columns": [["a", ["1"]], ["a", ["2"]]], "report": {}}', None),
    "too many rows": (
        orjson.dumps({"columns": [["a", ["1"] * 65]], "report": {}}),
        "upload_too_large",
    ),
    "too large": (b" " * (2**20 + 1), "upload_too_large"),
}


def test_column_bodies_from_anyone_but_preprocess_are_403(stack, champion):
    raw = orjson.dumps({"columns": [["x", ["1"]]], "report": {}})
    for headers in ({}, {"X-Sluice-Internal": "guess"}):
        response = requests.post(
            stack.ml_url,
            params={"phase": "prod", "model": CHAMPION},
            data=raw,
            headers={"Content-Type": COLUMNS, **headers},
            timeout=120,
        )
        assert_error(response, 403, "arrow_not_allowed", "column bodies")


@pytest.mark.parametrize("case", sorted(COLUMN_CASES))
def test_hostile_column_bodies_to_trainer_are_4xx(stack, champion, case):
    raw, code = COLUMN_CASES[case]
    response = requests.post(
        stack.ml_url,
        params={"phase": "prod", "model": CHAMPION},
        data=raw,
        headers={"Content-Type": COLUMNS, **internal_header(stack)},
        timeout=120,
    )
    status = response.status_code
    assert 400 <= status < 500, f"{status}: {response.text[:500]}"
    assert_error(response, status, code or "duplicate_columns")


def test_column_body_scores_as_the_csv(stack, champion):
    # What preprocess sends for a few rows is read as the CSV posted to the trainer is.
    csv = champion["query"].to_csv(index=False).encode()
    cells = pd.read_csv(io.BytesIO(csv), dtype=str, keep_default_na=False)
    body = {"columns": [[name, list(cells[name])] for name in cells.columns], "report": {}}
    response = requests.post(
        stack.ml_url,
        params={"phase": "prod", "model": CHAMPION},
        data=orjson.dumps(body),
        headers={"Content-Type": COLUMNS, **internal_header(stack)},
        timeout=120,
    )
    answer = assert_ok(response)
    csv_answer = assert_ok(post_csv(stack.ml_url, csv, phase="prod", model=CHAMPION))
    assert answer["predictions"] == csv_answer["predictions"]
    assert answer["warnings"] == csv_answer["warnings"]


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=st.binary(max_size=3000))
def test_random_bytes_to_prod_are_always_a_4xx_json_error(stack, champion, raw):
    response = post_csv(stack.ml_url, raw, timeout=60, phase="prod", model=CHAMPION)
    assert 400 <= response.status_code < 500, response.text[:500]
    assert_error(response, response.status_code, None)


# --- last: the stack is healthy and the champion is untouched ------------------------------------


def test_after_the_catalogue_health_and_champion_are_unchanged(stack, champion):
    for service in SERVICES:
        health = requests.get(f"{stack.url(service)}/health", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        answer = assert_ok(
            post_csv(
                url_of(stack, service), to_csv(champion["query"]), phase="prod", model=CHAMPION
            )
        )
        before = champion["before"][service]
        assert answer["version"] == before["version"] == champion["version"]
        assert answer["predictions"] == before["predictions"]
