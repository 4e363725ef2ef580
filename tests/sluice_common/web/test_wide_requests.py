"""Wide prod requests are admitted by their estimated work, not by their bytes: a storm of
them leaves /health fast on both services, each gets its predictions or 503 `busy`, and the
answers list only the first ignored columns, with a count of the rest."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import requests

from testkit.stack import post_csv, wait_job
from tests.datasets import iris, to_csv

# 12 rows of 5,004 columns: 0.3 MB, under HEAVY_PROD_MB, and ~10x HEAVY_PROD_CELLS (each
# takes preprocess ~0.5 s, the 20,000 columns ~3 s: the storm says the same faster).
EXTRA = 5_000
ROWS = 12
STORM = 20
LISTED = 100  # MAX_IGNORED_COLUMNS


@pytest.fixture(scope="module")
def champion(stack):
    """An iris champion, and its query rows (one cell unreadable: a warning and a flagged row)."""
    name = "wide-requests"
    answer = post_csv(stack.analyze_url, to_csv(iris()), phase="dev", model=name)
    assert answer.status_code == 200, answer.text
    assert answer.json()["promoted"], answer.json()
    query = iris().drop(columns="target").sample(ROWS, random_state=3).astype(str)
    query.iloc[2, 0] = "abc"
    return name, query


def widened(query: pd.DataFrame, extra: int) -> bytes:
    """The query rows with `extra` columns the model does not read after theirs."""
    lines = to_csv(query).decode().splitlines()
    header = lines[0] + "," + ",".join(f"x{i}" for i in range(extra))
    rows = [
        f"{line},{','.join(str((r + i) % 10) for i in range(extra))}"
        for r, line in enumerate(lines[1:])
    ]
    return ("\n".join([header, *rows]) + "\n").encode()


def storm(url: str, body: bytes, model: str, probed: list[str]) -> tuple[list, dict]:
    """STORM concurrent uploads of `body`; their answers, and each probed service's /health
    latencies while they ran."""
    latencies: dict[str, list[float]] = {service: [] for service in probed}
    done = threading.Event()

    def probe():
        while not done.is_set():
            for service in probed:
                started = time.monotonic()
                health = requests.get(f"{service}/health", timeout=10)
                latencies[service].append(time.monotonic() - started)
                assert health.status_code == 200, health.text
            time.sleep(0.1)

    with ThreadPoolExecutor(max_workers=STORM + 1) as pool:
        prober = pool.submit(probe)
        time.sleep(0.2)
        answers = [
            pool.submit(post_csv, url, body, timeout=60, phase="prod", model=model)
            for _ in range(STORM)
        ]
        answers = [future.result() for future in answers]
        time.sleep(0.3)  # a probe after the last answer too
        done.set()
        prober.result()
    return answers, latencies


def check_answers(answers: list, narrow: dict) -> None:
    """Each answer is the narrow query's predictions with the ignored columns capped, or 503
    busy with Retry-After (how many wait their turn and how many are turned away depends on
    how fast the slots free up: the bound that matters is /health's latency)."""
    served = [a for a in answers if a.status_code == 200]
    busy = [a for a in answers if a.status_code != 200]
    for answer in busy:
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "busy"
        assert int(answer.headers["Retry-After"]) >= 1
    assert served, [a.status_code for a in answers]
    for answer in served:
        body = answer.json()
        for key in ("predictions", "warnings", "flagged_rows", "flagged_rows_total"):
            assert body[key] == narrow[key], key
        assert body["ignored_columns"] == [f"x{i}" for i in range(LISTED)]
        assert body["ignored_columns_total"] == EXTRA
        assert body["ignored_columns_omitted"] == EXTRA - LISTED
        assert body["cleaning"]["columns_in"] == EXTRA + 4


def narrow_answer(stack, model: str, query: pd.DataFrame) -> dict:
    answer = post_csv(stack.analyze_url, to_csv(query), phase="prod", model=model)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["warnings"] and body["flagged_rows_total"] == 1, body  # the abc cell
    assert body["ignored_columns"] == [] and body["ignored_columns_total"] == 0
    return body


def test_a_storm_of_wide_uploads_through_preprocess(stack, champion):
    model, query = champion
    narrow = narrow_answer(stack, model, query)
    services = [stack.url("preprocess"), stack.url("trainer")]
    answers, latencies = storm(stack.analyze_url, widened(query, EXTRA), model, services)
    check_answers(answers, narrow)
    for service, measured in latencies.items():
        assert len(measured) >= 3 and max(measured) < 2.0, (service, measured)


def test_a_storm_of_wide_uploads_to_the_trainer(stack, champion):
    # The trainer's own multipart entry parses the CSV itself: admitted by the same estimate.
    model, query = champion
    narrow = narrow_answer(stack, model, query)
    trainer = stack.url("trainer")
    answers, latencies = storm(stack.ml_url, widened(query, EXTRA), model, [trainer])
    check_answers(answers, narrow)
    assert len(latencies[trainer]) >= 3 and max(latencies[trainer]) < 2.0, latencies


def test_a_wide_label_file_is_read_in_its_slot(stack, champion):
    # Feedback parses the whole file, so a wide one is heavy too; its labels still count.
    model, query = champion
    prod = narrow_answer(stack, model, query)
    labels = pd.DataFrame(
        {"batch_id": prod["batch_id"], "row": range(ROWS), "target": prod["predictions"]}
    )
    body = widened(labels.astype(str), EXTRA)
    answer = post_csv(f"{stack.url('preprocess')}/feedback", body, model=model)
    assert answer.status_code == 200, answer.text
    assert answer.json()["labels"] == ROWS


def test_prod_by_reference_caps_the_ignored_columns_alike(stack, champion):
    model, query = champion
    narrow = narrow_answer(stack, model, query)
    root = stack.env["SLUICE_DATA_ROOT"]
    os.makedirs(os.path.join(root, "wide"), exist_ok=True)
    os.makedirs(os.path.join(root, "out"), exist_ok=True)
    with open(os.path.join(root, "wide", "part-0.csv"), "wb") as handle:
        handle.write(widened(query, EXTRA))
    accepted = requests.post(
        stack.ml_url,
        params={"phase": "prod", "model": model, "data_uri": "wide/", "output_uri": "out/w.csv"},
        timeout=30,
    )
    job = wait_job(stack.url("trainer"), accepted, timeout=60)
    assert job["state"] == "succeeded", job
    answer = job["answer"]
    assert answer["ignored_columns"] == [f"x{i}" for i in range(LISTED)]
    assert answer["ignored_columns_total"] == EXTRA
    assert answer["ignored_columns_omitted"] == EXTRA - LISTED
    written = pd.read_csv(os.path.join(root, "out", "w.csv"))
    assert written["prediction"].tolist() == narrow["predictions"]
