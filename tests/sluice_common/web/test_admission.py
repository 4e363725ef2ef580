"""Admission control: a bounded number of heavy requests at once, the rest queued briefly or
refused with 503 and Retry-After, while health and small prod requests stay fast."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import requests
from flask import Flask

from sluice_common.errors import ApiError
from sluice_common.tables.transport import columns_to_arrow, frame_to_arrow
from sluice_common.web.admission import (
    COLUMN_CELLS,
    Admission,
    arrow_shape,
    csv_shape,
    work_above,
    work_cells,
)
from sluice_common.web.app import ADMISSION_DEFAULTS, heavy_slot
from testkit.stack import LocalStack, post_csv
from tests.datasets import churn, iris, to_csv


def test_slots_queue_and_refusal(tmp_path):
    admission = Admission(str(tmp_path), slots=1, queue=1, wait_seconds=0.5)
    release = threading.Event()
    inside = threading.Event()

    def hold():
        with admission.admit("test"):
            inside.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(5)
    outcomes = []

    def try_once():
        try:
            with admission.admit("test"):
                outcomes.append("ran")
        except ApiError as err:
            outcomes.append((err.status, err.code, err.details["retry_after"]))

    waiter = threading.Thread(target=try_once)
    waiter.start()
    time.sleep(0.1)
    try_once()  # the queue (one waiter) is full: refused at once
    waiter.join()  # waited 0.5 s, the slot stayed taken: refused
    release.set()
    holder.join()
    assert outcomes == [(503, "busy", 1), (503, "busy", 1)]
    try_once()  # free again
    assert outcomes[-1] == "ran"


def test_a_waiter_gets_the_slot_when_it_frees(tmp_path):
    admission = Admission(str(tmp_path), slots=1, queue=2, wait_seconds=5)
    order = []

    def run(name, hold):
        with admission.admit("test"):
            order.append(name)
            time.sleep(hold)

    first = threading.Thread(target=run, args=("first", 0.3))
    first.start()
    time.sleep(0.05)
    run("second", 0)
    first.join()
    assert order == ["first", "second"]


def test_slots_are_shared_by_processes(tmp_path):
    # Two Admission objects on one directory stand for two worker processes: flock is per
    # open file, so each sees the other's slot taken.
    one = Admission(str(tmp_path), slots=1, queue=0, wait_seconds=0)
    other = Admission(str(tmp_path), slots=1, queue=0, wait_seconds=0)
    with one.admit("a"), pytest.raises(ApiError):
        with other.admit("b"):
            pass


@pytest.mark.parametrize(
    ("raw", "shape"),
    [
        (b"a,b,c\n1,2,3\n", (2, 3)),
        (b"a;b;c\r\n1;2;3", (2, 3)),
        (b"a\tb\r1\t2\r3\t4\r", (3, 2)),  # classic Mac line ends
        (b"# source: x\n\n#, more\nsep=;\na;b;c;d\n1;2;3;4\n", (6, 4)),  # header further down
        ("sep=;\na;b;c\n1;2;3\n".encode("utf-16"), (4, 3)),  # the last NUL as a line
        (b"a,b,c", (1, 5)),  # no line end: every byte may be a cell
    ],
)
def test_csv_shape_counts_lines_and_the_header_from_the_bytes(raw, shape):
    assert csv_shape(raw) == shape


def test_work_counts_cells_and_columns():
    # The upload: 0.6 MB, under HEAVY_PROD_MB, and 40x HEAVY_PROD_CELLS.
    wide = wide_csv(19_990, 12)
    assert csv_shape(wide) == (13, 19_991)
    limit = ADMISSION_DEFAULTS["HEAVY_PROD_CELLS"]
    assert work_cells(13, 19_991) == 19_991 * (13 + COLUMN_CELLS) > 40 * limit
    assert work_above(wide, False, limit)
    # 1 MB of 10 short columns, a single row of 400 columns: light.
    assert not work_above(to_csv(churn(10_000).iloc[:, :10]), False, limit)
    assert not work_above(wide_csv(399, 1), False, limit)
    # The same tables as preprocess forwards them, in Arrow.
    arrow = frame_to_arrow(pd.read_csv(io.BytesIO(wide_csv(1_999, 12)), dtype=str))
    assert arrow_shape(arrow) == (12, 2_000)
    assert work_above(arrow, True, limit)
    assert not work_above(columns_to_arrow({"a": ["1"], "b": ["2"]}, {}), True, limit)
    assert arrow_shape(b"not arrow") == (0, 0)


def test_heavy_slot_decides_by_work(tmp_path):
    app = Flask(__name__)
    app.config.update(ADMISSION_DEFAULTS)
    admission = Admission(str(tmp_path), slots=1, queue=0, wait_seconds=0)
    app.extensions["admission"] = admission
    single_row = to_csv(iris().drop(columns="target").head(1))
    with app.app_context(), admission.admit("holder"):  # every slot taken
        with heavy_slot("prod", single_row, "test"):
            pass  # light: never waits for a slot
        with heavy_slot("prod", len(wide_csv(19_990, 12)), "test"):
            pass  # a size alone (an older caller) is judged by HEAVY_PROD_MB only
        for wide in (wide_csv(19_990, 12), wide_csv(999, 1)):
            with pytest.raises(ApiError) as refused, heavy_slot("prod", wide, "test"):
                pass
            assert refused.value.code == "busy"


@pytest.fixture(scope="module")
def narrow(tmp_path_factory):
    """A stack that runs one heavy request at a time and queues one more for a second."""
    local = LocalStack(
        home=str(tmp_path_factory.mktemp("sluice-admission")),
        extra_env={"HEAVY_SLOTS": "1", "ADMISSION_QUEUE": "1", "ADMISSION_WAIT_SECONDS": "1"},
    )
    local.start()
    yield local
    local.stop()


@pytest.mark.stack
def test_heavy_requests_beyond_the_slots_get_503_while_small_ones_stay_fast(narrow):
    post_csv(narrow.analyze_url, to_csv(iris()), phase="dev", model="small")
    big = to_csv(churn(30_000))
    query = to_csv(iris().drop(columns="target").head(1))

    def train(_):
        return post_csv(narrow.ml_url, big, phase="dev", model="big", timeout=300)

    with ThreadPoolExecutor(max_workers=4) as pool:
        heavy = [pool.submit(train, i) for i in range(3)]
        time.sleep(0.5)
        latencies = []
        while not all(f.done() for f in heavy):
            started = time.monotonic()
            assert requests.get(f"{narrow.url('trainer')}/health", timeout=5).ok
            single = post_csv(narrow.analyze_url, query, phase="prod", model="small")
            assert single.status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.2)
        answers = [f.result() for f in heavy]
    statuses = sorted(a.status_code for a in answers)
    assert statuses[0] == 200 and 503 in statuses, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.json()["error"]["code"] == "busy"
            assert int(answer.headers["Retry-After"]) >= 1
    assert latencies and max(latencies) < 2.0, latencies


def wide_csv(columns: int = 19_998, rows: int = 12) -> bytes:
    """The issue's wide upload: ~0.6 MB of one-digit cells in 19,999 columns."""
    rng = np.random.default_rng(0)
    lines = [",".join([*(f"c{i}" for i in range(columns)), "label"])]
    for row in range(rows):
        cells = rng.integers(0, 10, columns).astype(str)
        lines.append(",".join([*cells, "yes" if row % 2 else "no"]))
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.stack
def test_a_wide_upload_trains_in_its_slot_while_small_requests_stay_fast(narrow):
    # It used to end in a 503 after ~40 s; now its cost is bounded (column limit, one slot)
    # and it answers, while the service keeps answering everyone else.
    post_csv(narrow.analyze_url, to_csv(iris()), phase="dev", model="small")
    query = to_csv(iris().drop(columns="target").head(1))
    with ThreadPoolExecutor(max_workers=1) as pool:
        wide = pool.submit(
            post_csv, narrow.analyze_url, wide_csv(), phase="dev", model="wide", timeout=600
        )
        latencies = []
        while not wide.done():
            started = time.monotonic()
            assert requests.get(f"{narrow.url('trainer')}/health", timeout=5).ok
            single = post_csv(narrow.analyze_url, query, phase="prod", model="small")
            assert single.status_code == 200, single.text
            latencies.append(time.monotonic() - started)
            time.sleep(0.5)
        answer = wide.result()
    assert answer.status_code == 200, answer.text
    assert answer.json()["cleaning"]["columns_in"] == 19_999
    assert len(latencies) > 3 and max(latencies) < 2.0, latencies
