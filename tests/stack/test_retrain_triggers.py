"""The retrain trigger and the prod rows' bound with the real services, on a stack of this
module's own (the settings differ from the session's): RETRAIN_AFTER_LABELS=20 starts a retrain
from /feedback, RETRAIN_ON_ALERT=1 starts one for a drifted model's first label, and with
PROD_ROWS_KEPT=500 the oldest batch's cells go, which the retrain answer reports as labelled
rows it could not use."""

from __future__ import annotations

import time

import pytest
import requests

from testkit.stack import LocalStack, post_csv
from tests.datasets import shop, to_csv


@pytest.fixture(scope="module")
def triggered(tmp_path_factory):
    local = LocalStack(
        home=str(tmp_path_factory.mktemp("sluice-retrain-triggers")),
        extra_env={
            "RETRAIN_AFTER_LABELS": "20",
            "RETRAIN_ON_ALERT": "1",
            "PROD_ROWS_KEPT": "500",
            "TRAINER_WORKERS": "1",
        },
    )
    local.start()
    yield local
    local.stop()


def wait(stack, location: str) -> dict:
    deadline = time.monotonic() + 240
    while True:
        job = requests.get(stack.url("preprocess") + location, timeout=30).json()
        if job["state"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


def feedback(stack, model: str, batch_id: str, frame, rows: list[int]) -> dict:
    text = "batch_id,row,bought\n" + "".join(
        f"{batch_id},{r},{frame['bought'].iloc[r]}\n" for r in rows
    )
    answer = post_csv(f"{stack.url('preprocess')}/feedback", text.encode(), model=model)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_labels_past_the_threshold_start_one_retrain_and_unkept_cells_are_reported(triggered):
    stack, model = triggered, "triggered"
    dev = post_csv(stack.analyze_url, to_csv(shop(300, 21)), phase="dev", model=model)
    assert dev.status_code == 200 and dev.json()["promoted"], dev.text
    frames, batches = (shop(300, 22), shop(300, 23)), []
    for frame in frames:
        scored = post_csv(
            stack.analyze_url, to_csv(frame.drop(columns="bought")), phase="prod", model=model
        )
        assert scored.status_code == 200, scored.text
        batches.append(scored.json()["batch_id"])
    time.sleep(1.5)  # the cells' writer: 600 rows > 500 kept, so the first batch's go

    first = feedback(stack, model, batches[0], frames[0], list(range(10)))
    assert first["new"] == 10 and "retrain" not in first  # 10 < 20
    # The first batch's cells are gone: its labels are counted, not usable.
    assert first["retraining"] == {"labelled_rows": 10, "with_cells_kept": 0}
    second = feedback(stack, model, batches[1], frames[1], list(range(15)))
    assert second["retraining"] == {"labelled_rows": 25, "with_cells_kept": 15}
    started = second["retrain"]
    assert started["started"] is True, second
    assert started["trigger"] == "25 labels since the last retrain (RETRAIN_AFTER_LABELS=20)"

    job = wait(stack, started["location"])
    assert job["state"] == "succeeded", job
    assert job["request"]["trigger"] == started["trigger"]
    data = job["answer"]["data"]
    assert data["rows"] == 300 + 15
    labelled = data["sources"]["labelled"]
    assert labelled["rows"] == 15 and labelled["batches"] == 1
    assert labelled["skipped"]["cells_not_kept"]["rows"] == 10
    assert "PROD_ROWS_KEPT" in labelled["skipped"]["cells_not_kept"]["why"]

    # Counted from the labels that retrain used: 5 more are not 20.
    third = feedback(stack, model, batches[1], frames[1], list(range(15, 20)))
    assert third["new"] == 5 and "retrain" not in third


def test_a_drift_alert_retrains_at_the_first_label_since(triggered):
    stack, model = triggered, "drifted"
    dev = post_csv(stack.analyze_url, to_csv(shop(300, 31)), phase="dev", model=model)
    assert dev.status_code == 200 and dev.json()["promoted"], dev.text
    frame = shop(250, 32)
    frame["size"] = frame["size"] + 15  # 1.5 standard deviations
    frame["color"] = frame["color"].replace({"green": "purple", "red": "purple"})
    scored = post_csv(
        stack.analyze_url, to_csv(frame.drop(columns="bought")), phase="prod", model=model
    )
    assert scored.status_code == 200, scored.text
    batch_id = scored.json()["batch_id"]
    time.sleep(1.5)  # the batch's counts and cells are written
    summary = requests.get(
        f"{stack.url('preprocess')}/monitoring", params={"model": model}, timeout=60
    ).json()
    assert summary["status"] == "alert", summary
    started = feedback(stack, model, batch_id, frame, [0])["retrain"]
    assert started["started"] is True and started["trigger"].startswith("monitoring alert: ")
    job = wait(stack, started["location"])
    assert job["state"] == "succeeded", job
    assert job["answer"]["data"]["rows"] == 301
