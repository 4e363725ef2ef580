"""What a new user's pass asked of the console: the train result shows the answer's whole
`cleaning` report and each feature's formats (a real dev answer on a messy file, captured from the
stack, replayed by the stand-in), decisions in words, the metric chart's axis, errors marked for
screen readers, an error before the session was read, short run ids."""

from __future__ import annotations

import html
import io
import json
import re

import pytest

from tests.preprocess.console_helpers import csrf_of, train
from tests.preprocess.console_standin import REAL_DEV_ANSWER

pytestmark = pytest.mark.quick


def _section(text: str) -> str:
    found = re.search(r'<section id="cleaning".*?</section>', text, re.S)
    assert found, "no cleaning section"
    return html.unescape(re.sub(r"<[^>]+>", " ", found.group(0)))


def _cells(text: str, table_id: str) -> dict[str, str]:
    table = re.search(rf'<table id="{table_id}">.*?</table>', text, re.S).group(0)
    rows = re.findall(r'<th scope="row">(.*?)</th><td[^>]*>(.*?)</td>', table, re.S)
    return {html.unescape(k): html.unescape(v) for k, v in rows}


def test_every_count_of_the_cleaning_report_is_on_the_train_page(make_client):
    with open(REAL_DEV_ANSWER, encoding="utf-8") as handle:
        cleaning = json.load(handle)["cleaning"]
    client = make_client()
    answer = train(client, csrf_of(client), model="real")
    assert answer.status_code == 200
    words = _section(answer.text)
    assert "What Sluice did to your file" in words
    assert f"read {cleaning['rows_in']} rows of {cleaning['columns_in']} columns" in words
    assert f"kept {cleaning['rows_out']} rows" in words
    assert f"{cleaning['duplicate_rows']} rows repeat an earlier row" in words
    assert f"Encoding: {cleaning['encoding']}" in words
    assert f"Delimiter: “{cleaning['delimiter']}”" in words
    dropped = _cells(answer.text, "dropped-rows")
    assert dropped["rows without a target value"] == str(cleaning["dropped_rows"]["missing_target"])
    assert dropped["empty rows"] == str(cleaning["dropped_rows"]["empty"])
    assert _cells(answer.text, "missing-values") == {
        k: str(v) for k, v in cleaning["missing_values"].items()
    }
    assert _cells(answer.text, "unreadable-cells") == {
        k: str(v) for k, v in cleaning["unreadable_treated_as_missing"].items()
    }


def test_feature_formats_and_unknown_cleaning_keys_are_shown(make_client, trainer):
    client = make_client()
    text = train(client, csrf_of(client), model="real").text
    features = _cells(text, "features-used")
    assert "numeric" in features["income"]  # the second cell is the format column
    row = re.search(r'<th scope="row">income</th>(.*?)</tr>', text, re.S).group(1)
    assert "decimal “,”" in html.unescape(row) and "no thousands separator" in html.unescape(row)
    row = re.search(r'<th scope="row">signup</th>(.*?)</tr>', text, re.S).group(1)
    assert "dates as ISO8601" in row
    from preprocess.console import cleaning

    tables = cleaning.tables({"rows_in": 3, "sep_line": True, "files": [{"path": "a.csv"}]})
    other = {row[0]: row[1] for row in tables[-1]["rows"]}
    assert other == {"sep line": "yes", "files": '[{"path": "a.csv"}]'}


def test_a_decision_without_a_rule_and_a_first_version_read_as_words(make_client):
    client = make_client()
    page = client.get("/console/models/churn").text
    row = re.search(r'<tr id="version-1".*?</tr>', page, re.S).group(0)
    assert "not promoted</summary>" in row and "None" not in row
    text = train(client, csrf_of(client), model="real").text
    decision = re.search(r'<p id="decision".*?</p>', text, re.S).group(0)
    assert "no champion yet" in decision and "version none" not in decision
    assert "(None)" not in text


def _ticks(svg: str) -> list[str]:
    return re.findall(r'class="tick"[^>]*>([^<]*)<', str(svg))


def test_the_metric_chart_axis_stays_in_the_metric_range_with_one_tick_per_version():
    from preprocess.console.charts import metric_over_versions

    one = metric_over_versions(
        "m", [{"version": "1", "metrics": {"valid_log_loss": 0.336}}], "log_loss"
    )
    assert all(float(t) >= 0 for t in _ticks(one)[:3])
    assert re.sub(r"<[^>]+>", " ", str(one)).split().count("v1") == 1
    versions = [
        {"version": str(i), "metrics": {"valid_accuracy": 0.95 + i / 100}} for i in range(1, 5)
    ]
    svg = metric_over_versions("m", versions, "accuracy")
    assert max(float(t) for t in _ticks(svg)[:3]) <= 1.0
    assert _ticks(svg)[3:] == ["v1", "v2", "v3", "v4"]


def _tag(text: str, element_id: str) -> str:
    return re.search(rf'<(?:input|select)[^>]*id="{element_id}"[^>]*>', text).group(0)


def test_an_error_page_is_titled_and_marks_the_field_it_is_about(make_client):
    client = make_client()
    csrf = csrf_of(client)
    empty = client.post(
        "/console/train",
        data={"data_file": (io.BytesIO(b""), "empty.csv"), "csrf_token": csrf},
        content_type="multipart/form-data",
    )
    assert empty.status_code == 400
    assert re.search(r"<title>Error: Train", empty.text)
    alert = re.search(r'<p role="alert"[^>]*id="([^"]+)"', empty.text).group(1)
    file_input = _tag(empty.text, "data_file")
    assert 'aria-invalid="true"' in file_input and f'aria-describedby="{alert}"' in file_input
    assert "aria-invalid" not in _tag(empty.text, "target")
    bad_task = client.post(
        "/console/train",
        data={
            "data_file": (io.BytesIO(b"a,b\n1,2\n"), "x.csv"),
            "task": "guess",
            "csrf_token": csrf,
        },
        content_type="multipart/form-data",
    )
    assert bad_task.status_code == 400
    assert 'aria-invalid="true"' in _tag(bad_task.text, "task")
    assert "aria-invalid" not in _tag(bad_task.text, "data_file")
    fine = client.get("/console/train").text
    assert "<title>Train" in fine and "aria-invalid" not in fine
    first = re.search(r"<body>\s*<a ([^>]*)>", fine).group(1)
    assert 'href="#main"' in first and '<main id="main"' in fine


def test_a_champion_change_without_a_reason_marks_the_reason(make_client):
    client = make_client()
    csrf = csrf_of(client, "/console/models/churn")
    answer = client.post(
        "/console/models/churn/champion", data={"version": "1", "reason": "", "csrf_token": csrf}
    )
    assert answer.status_code == 400 and "<title>Error: " in answer.text
    reason = _tag(answer.text, "champion-reason")
    assert 'aria-invalid="true"' in reason and 'aria-describedby="champion-error"' in reason


def test_an_api_error_before_the_console_read_its_session_is_the_error_page(make_client):
    from sluice_common import error_codes
    from sluice_common.errors import ApiError

    client = make_client()

    def refuse():
        raise ApiError(error_codes.BUSY, "The stack is busy: try again in a minute.")

    client.application.before_request_funcs.setdefault(None, []).insert(0, refuse)
    for url in ("/console/train", "/console/login", "/console/models"):
        answer = client.get(url)
        assert answer.status_code == 503, url
        assert "The stack is busy" in answer.text and "<title>Error: " in answer.text


def test_a_run_id_shows_8_characters_and_keeps_the_rest_for_screen_readers(make_client):
    page = make_client().get("/console/models/churn").text
    cell = re.search(r'<tr id="version-2".*?<td class="run">(.*?)</td>', page, re.S).group(1)
    shown = re.sub(r'<span class="visually-hidden">.*?</span>', "", cell)
    assert re.sub(r"<[^>]+>", "", shown) == "2" * 8
    assert re.sub(r"<[^>]+>", "", cell) == "2" * 32 and f'title="{"2" * 32}"' in cell
