"""Monitoring with the real services: drift per batch, feedback, metrics, restart, the report."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sklearn import metrics as skm

from testkit.browser import drawn_plots
from testkit.stack import LocalStack, post_csv
from tests.datasets import shop, to_csv


def prod(stack, frame: pd.DataFrame, model: str, proba: bool = False) -> dict:
    answer = post_csv(
        stack.analyze_url,
        to_csv(frame.drop(columns="bought", errors="ignore")),
        phase="prod",
        model=model,
        proba="true" if proba else "false",
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def monitoring(stack, **params) -> dict:
    answer = requests.get(f"{stack.url('preprocess')}/monitoring", params=params, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def settled(stack, rows: int, **params) -> dict:
    """The summary once `rows` rows are in it: each worker's writer adds its batches within
    about a second."""
    deadline = time.monotonic() + 10
    while True:
        summary = monitoring(stack, **params)
        if summary["rows_scored"] >= rows or time.monotonic() > deadline:
            return summary
        time.sleep(0.2)


def feedback(stack, frame: pd.DataFrame, model: str):
    return post_csv(f"{stack.url('preprocess')}/feedback", to_csv(frame), model=model)


@pytest.fixture(scope="module")
def trained(stack):
    model = "monitored-shop"
    answer = post_csv(stack.analyze_url, to_csv(shop(3000, 1)), phase="dev", model=model)
    assert answer.status_code == 200, answer.text
    return model, answer.json()


def test_a_batch_like_the_training_data_shows_no_drift(stack, trained):
    model, dev = trained
    answer = prod(stack, shop(1500, 2), model)
    assert len(answer["batch_id"]) == 32
    summary = monitoring(stack, model=model, batch_id=answer["batch_id"])
    assert summary["version"] == dev["version"] and summary["rows_scored"] == 1500
    drift = summary["drift"]
    assert set(drift["features"]) == {"size", "weight", "color"}
    assert drift["drifted_features"] == [] and drift["share_drifted"] == 0.0
    for result in drift["features"].values():
        assert result["status"] == "ok" and result["score"] < 0.1, result
    assert drift["prediction"]["status"] == "ok"
    assert summary["status"] == "ok", summary["alerts"]


def test_a_shifted_column_and_a_replaced_category_are_flagged_on_exactly_those(stack, trained):
    model, _ = trained
    frame = shop(1500, 3)
    frame["size"] = frame["size"] + 15  # 1.5 standard deviations
    frame["color"] = frame["color"].replace({"green": "purple"})  # a level never seen
    answer = prod(stack, frame, model)
    summary = monitoring(stack, model=model, batch_id=answer["batch_id"])
    drift = summary["drift"]
    assert drift["drifted_features"] == ["color", "size"], drift["features"]
    assert drift["features"]["weight"]["status"] == "ok"
    assert drift["features"]["color"]["unseen"] == int((frame["color"] == "purple").sum())
    assert drift["features"]["size"]["out_of_range"] > 0
    assert summary["status"] in ("warning", "alert") and summary["alerts"]
    assert any("size" in alert for alert in summary["alerts"])


def test_too_few_rows_say_so_instead_of_guessing(stack, trained):
    model, _ = trained
    answer = prod(stack, shop(5, 4), model)
    summary = monitoring(stack, model=model, batch_id=answer["batch_id"])
    for result in summary["drift"]["features"].values():
        assert result["status"] == "insufficient_data" and result["score"] is None
        assert "200" in result["note"]
    assert summary["status"] == "insufficient_data"


def test_feedback_gives_the_metrics_sklearn_computes_on_the_same_rows(stack, trained):
    model, dev = trained
    frame = shop(400, 5)
    answer = prod(stack, frame, model, proba=True)
    batch = answer["batch_id"]
    labels = pd.DataFrame({"batch_id": batch, "row": range(400), "bought": frame["bought"]})
    # Labels arrive in any order, and some not at all.
    labels = labels.sample(frac=1.0, random_state=0).head(300)
    posted = feedback(stack, labels, model)
    assert posted.status_code == 200, posted.text
    assert posted.json()["new"] == 300
    again = feedback(stack, labels, model)
    assert again.json()["new"] == 0 and again.json()["unchanged"] == 300

    perf = monitoring(stack, model=model, batch_id=batch)["performance"]
    rows = labels["row"].to_numpy()
    truth = labels["bought"].to_numpy()
    classes = answer["classes"]
    proba = np.asarray(answer["probabilities"])[rows]
    predicted = np.asarray(answer["predictions"], dtype=object)[rows]
    assert perf["labelled_rows"] == 300 and perf["rows_scored"] == 400
    assert perf["coverage"] == pytest.approx(0.75)
    assert perf["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted))
    assert perf["metrics"]["log_loss"] == pytest.approx(
        skm.log_loss(truth, proba, labels=classes), rel=1e-5
    )
    assert perf["metrics"]["roc_auc"] == pytest.approx(
        skm.roc_auc_score(truth == classes[1], proba[:, 1]), rel=1e-6
    )
    assert perf["baseline"] == dev["metrics"]
    assert perf["status"] == "ok", perf


def test_feedback_refuses_what_it_cannot_join(stack, trained):
    model, _ = trained
    answer = prod(stack, shop(10, 6), model)
    batch = answer["batch_id"]
    cases = {
        "unknown_batch": pd.DataFrame({"batch_id": ["0" * 32], "row": [0], "bought": ["yes"]}),
        "row_out_of_range": pd.DataFrame({"batch_id": [batch], "row": [10], "bought": ["yes"]}),
        "invalid_row": pd.DataFrame({"batch_id": [batch], "row": ["-1"], "bought": ["yes"]}),
        "unreadable_labels": pd.DataFrame(
            {"batch_id": [batch, batch], "row": [0, 1], "bought": ["yes", "maybe"]}
        ),
        "missing_columns": pd.DataFrame({"batch_id": [batch], "row": [0], "label": ["yes"]}),
        "conflicting_labels": pd.DataFrame(
            {"batch_id": [batch, batch], "row": [0, 0], "bought": ["yes", "no"]}
        ),
    }
    for code, frame in cases.items():
        refused = feedback(stack, frame, model)
        assert 400 <= refused.status_code < 500, (code, refused.text)
        assert refused.json()["error"]["code"] == code, refused.text
    # Nothing of the refused files was stored.
    perf = monitoring(stack, model=model, batch_id=batch)["performance"]
    assert perf["labelled_rows"] == 0
    other = feedback(stack, cases["row_out_of_range"].assign(row=0), "another-model")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "batch_of_another_model"


def test_bad_monitoring_queries_are_clear_400s(stack, trained):
    model, _ = trained
    base = f"{stack.url('preprocess')}/monitoring"
    for params, code in [
        ({"model": model, "since": "yesterday"}, "invalid_since"),
        ({"model": model, "batch_id": "x"}, "invalid_batch_id"),
        ({"model": model, "versoin": "1"}, "unknown_parameter"),
        ({"model": model, "since": "2026-12-02", "until": "2026-12-01"}, "invalid_window"),
    ]:
        answer = requests.get(base, params=params, timeout=30)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == code
    missing = requests.get(base, params={"model": "never-trained-x"}, timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_monitoring_data"


def _samples(text: str, name: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_rows_scored_in_metrics_match_the_rows_sent_over_both_workers(stack):
    model = "monitored-metrics"
    dev = post_csv(stack.analyze_url, to_csv(shop(1000, 7)), phase="dev", model=model)
    assert dev.status_code == 200, dev.text
    version = dev.json()["version"]
    sizes = [1, 3, 250, 1, 40, 7, 1, 1, 120, 2]
    batch_ids = [prod(stack, shop(n, 10 + i), model)["batch_id"] for i, n in enumerate(sizes)]
    assert len(set(batch_ids)) == len(sizes)
    text = requests.get(f"{stack.url('preprocess')}/metrics/trainer", timeout=30).text
    rows = _samples(text, "sluice_rows_scored_total")
    assert rows[(("model", model), ("version", version))] == sum(sizes)
    timed = _samples(text, "sluice_prediction_duration_seconds_count")
    assert timed[(("model", model), ("version", version))] == len(sizes)
    # The store's windows add up the same rows, whichever worker scored them.
    summary = settled(stack, sum(sizes), model=model)
    assert summary["rows_scored"] == sum(sizes) and summary["batches"] == len(sizes)
    # Drift and the champion are computed from the store at scrape time, cached for seconds.
    deadline = time.monotonic() + 15
    while True:
        text = requests.get(f"{stack.url('preprocess')}/metrics/trainer", timeout=30).text
        champion = _samples(text, "sluice_champion_info")
        if (("model", model), ("version", version)) in champion or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert champion.get((("model", model), ("version", version))) == 1
    scores = _samples(text, "sluice_drift_score")
    features = {dict(k)["feature"] for k in scores if dict(k)["model"] == model}
    assert features == {"size", "weight", "color", "prediction", "prediction_score"}


def test_history_survives_a_restart(tmp_path):
    local = LocalStack(home=str(tmp_path / "home"))
    local.start()
    try:
        dev = post_csv(local.analyze_url, to_csv(shop(600, 8)), phase="dev", model="kept")
        assert dev.status_code == 200, dev.text
        batch = prod(local, shop(300, 9), "kept")["batch_id"]
        before = settled(local, 300, model="kept")
        # Answered a moment before a graceful stop: written on the way out, not lost.
        last = prod(local, shop(50, 10), "kept")["batch_id"]
        local.stop()
        local.start()
        assert monitoring(local, model="kept", batch_id=last)["rows_scored"] == 50
        after = monitoring(local, model="kept")
        assert after["rows_scored"] == before["rows_scored"] + 50 == 350
        assert monitoring(local, model="kept", batch_id=batch)["rows_scored"] == 300
    finally:
        local.stop()


def test_the_report_draws_its_plots_in_a_real_browser(stack, trained, browser):
    model, _ = trained
    for seed in (20, 21):
        prod(stack, shop(300, seed), model)
    url = f"{stack.url('preprocess')}/monitoring/report?model={model}"
    page = requests.get(url, timeout=60)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    browser.get(url)
    plots = drawn_plots(browser)
    kinds = {plot["kind"] for plot in plots}
    assert {"distribution", "timeline", "prediction"} <= kinds, plots
    distributions = {p["feature"]: p for p in plots if p["kind"] == "distribution"}
    assert set(distributions) == {"size", "weight", "color"}
    for plot in plots:
        assert plot["width"] > 100 and plot["height"] > 50 and plot["marks"] > 0, plot


def test_monitoring_off_records_nothing_and_says_so(tmp_path):
    local = LocalStack(home=str(tmp_path / "home"), extra_env={"MONITORING_ENABLED": "0"})
    local.start()
    try:
        dev = post_csv(local.analyze_url, to_csv(shop(300, 11)), phase="dev", model="quiet")
        assert dev.status_code == 200, dev.text
        answer = prod(local, shop(5, 12), "quiet")
        assert "batch_id" not in answer
        refused = requests.get(f"{local.url('preprocess')}/monitoring?model=quiet", timeout=30)
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "monitoring_off"
    finally:
        local.stop()


def test_labels_are_compared_as_the_model_reads_them(stack, trained):
    model, _ = trained
    answer = prod(stack, shop(3, 30), model)
    batch = answer["batch_id"]
    first = feedback(
        stack, pd.DataFrame({"batch_id": [batch], "row": [0], "bought": ["yes"]}), model
    )
    assert first.status_code == 200 and first.json()["new"] == 1, first.text
    # The same class written another way is the same label, in one file or across posts.
    again = feedback(
        stack,
        pd.DataFrame({"batch_id": [batch] * 2, "row": [0, 0], "bought": [" yes", "yes"]}),
        model,
    )
    assert again.status_code == 200, again.text
    assert again.json()["unchanged"] == 1 and again.json()["changed"] == 0


def test_the_same_labels_posted_at_once_are_stored_once(stack, trained):
    from concurrent.futures import ThreadPoolExecutor

    model, _ = trained
    frame = shop(200, 31)
    batch = prod(stack, frame, model)["batch_id"]
    labels = pd.DataFrame({"batch_id": batch, "row": range(200), "bought": frame["bought"]})
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: feedback(stack, labels, model), range(6)))
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    assert sum(a.json()["new"] for a in answers) == 200
    assert monitoring(stack, model=model, batch_id=batch)["performance"]["labelled_rows"] == 200


def test_a_regression_label_beyond_what_a_model_can_read_is_refused(stack):
    model = "monitored-price"
    frame = shop(600, 32).assign(bought=lambda f: (f["size"] * 3 + f["weight"]).round(2))
    dev = post_csv(stack.analyze_url, to_csv(frame), phase="dev", model=model)
    assert dev.status_code == 200, dev.text
    batch = prod(stack, frame.head(20), model)["batch_id"]
    for bad in ("1e308", "inf", "1e39"):
        refused = feedback(
            stack, pd.DataFrame({"batch_id": [batch], "row": [0], "bought": [bad]}), model
        )
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"]["code"] == "unreadable_labels"
    ok = feedback(
        stack, pd.DataFrame({"batch_id": [batch], "row": [0], "bought": ["151.5"]}), model
    )
    assert ok.status_code == 200, ok.text


def test_windows_are_whole_minutes_and_extreme_times_are_400s(stack, trained):
    model, _ = trained
    prod(stack, shop(5, 40), model)  # something to read, whichever tests ran before
    summary = monitoring(
        stack, model=model, since="2026-01-01T10:00:30Z", until="2026-01-01T11:05:10+01:00"
    )
    # As stored: from the start of the first minute to the end of the last one.
    assert summary["window"]["since"] == "2026-01-01T10:00:00Z"
    assert summary["window"]["until"] == "2026-01-01T10:06:00Z"
    assert summary["window"]["resolution_seconds"] == 60
    assert summary["batches"] == 0 and summary["rows_scored"] == 0
    assert summary["performance"]["rows_scored"] == 0
    long = monitoring(stack, model=model, since="2026-01-01T10:00:30Z")
    assert long["window"]["since"] == "2026-01-01T10:00:00Z"
    assert long["window"]["resolution_seconds"] == 3600
    assert long["rows_scored"] == long["performance"]["rows_scored"] > 0
    for params in (
        {"since": "9999-12-31T23:59:59-05:00"},
        {"until": "0001-01-01T00:00:00+05:00"},
    ):
        answer = requests.get(
            f"{stack.url('preprocess')}/monitoring", params={"model": model, **params}, timeout=30
        )
        assert answer.status_code == 400, answer.text
    unknown = requests.get(
        f"{stack.url('preprocess')}/monitoring",
        params={"model": model, "version": "99"},
        timeout=30,
    )
    assert unknown.status_code == 404, unknown.text


def test_the_report_is_served_with_a_policy_that_forbids_loading_anything(stack, trained):
    model, _ = trained
    page = requests.get(f"{stack.url('preprocess')}/monitoring/report?model={model}", timeout=60)
    assert page.status_code == 200
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
