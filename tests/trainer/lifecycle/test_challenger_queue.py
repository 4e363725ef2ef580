"""The shadow queue with a real scorer: a full queue skips (and counts) a batch at once, never
waiting for the challenger; skipped batches are stored with the next write."""

from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow as pa
import pytest
import xgboost as xgb

from trainer.lifecycle.challenger_shadow import (
    CHECK_SECONDS,
    Challenger,
    Job,
    Shadow,
    ShadowQueue,
    score_cells,
)
from trainer.monitoring.store import decode_array


class SlowScorer:
    """Scores with a real XGBoost booster, but only once let through, so the test decides
    when the challenger is busy."""

    def __init__(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(500, 4))
        self.booster = xgb.train(
            {"objective": "reg:squarederror", "nthread": 1},
            xgb.DMatrix(x, label=x[:, 0]),
            num_boost_round=20,
        )
        self.gate = threading.Event()
        self.started = threading.Event()

    def __call__(self, jobs: list[Job]) -> list[dict]:
        self.started.set()
        self.gate.wait(30)
        return [
            {
                "batch_id": job.batch_id,
                "status": "scored",
                "values": self.booster.predict(xgb.DMatrix(np.asarray(job.cells))),
            }
            for job in jobs
        ]


def _job(i: int, rows: int = 100) -> Job:
    cells = np.random.default_rng(i).normal(size=(rows, 4))
    return Job("m", "2", f"{i:032x}", cells, rows, 0.001)


def test_a_full_queue_skips_the_batch_at_once_and_counts_it():
    scorer = SlowScorer()
    written: list[dict] = []
    shadow = ShadowQueue(scorer, written.extend, max_batches=2)
    assert shadow.offer(_job(0))  # taken by the thread, which then blocks in the scorer
    assert scorer.started.wait(10)
    assert shadow.offer(_job(1)) and shadow.offer(_job(2))  # the queue's two places
    started = time.perf_counter()
    taken = [shadow.offer(_job(i)) for i in range(3, 13)]
    elapsed = time.perf_counter() - started
    assert taken == [False] * 10
    assert elapsed < 0.05, elapsed  # ten refusals: no waiting on the busy challenger
    assert shadow.counts["skipped"] == 10
    scorer.gate.set()
    assert shadow.drain(30)
    statuses = {row["batch_id"]: row["status"] for row in written}
    assert [statuses[f"{i:032x}"] for i in range(3)] == ["scored"] * 3
    assert [statuses[f"{i:032x}"] for i in range(3, 13)] == ["skipped"] * 10
    assert all(len(row["values"]) == 100 for row in written if row["status"] == "scored")


def test_queued_rows_are_bounded_too():
    scorer = SlowScorer()
    written: list[dict] = []
    shadow = ShadowQueue(scorer, written.extend, max_batches=10, max_rows=350)
    assert shadow.offer(_job(0))
    assert scorer.started.wait(10)
    assert shadow.offer(_job(1, rows=200))
    assert not shadow.offer(_job(2, rows=100))  # 400 rows held (one scoring, two queued): over 350
    scorer.gate.set()
    assert shadow.drain(30)


def test_a_failing_scorer_does_not_stop_the_thread():
    calls = []

    def score(jobs):
        calls.append(jobs)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return [{"batch_id": job.batch_id, "status": "scored"} for job in jobs]

    written: list[dict] = []
    shadow = ShadowQueue(score, written.extend, max_batches=4)
    shadow.offer(_job(0))
    assert shadow.drain(10)
    shadow.offer(_job(1))
    assert shadow.drain(10)
    assert [row["batch_id"] for row in written] == [f"{1:032x}"]


class _Model:
    """What score_cells needs of a SluiceModel: required columns and score_frame."""

    required_columns = ["a", "b"]
    rules = object()
    profile = {"classes": ["no", "yes"]}

    def score_frame(self, table):
        a = np.asarray(table["a"], dtype="float64")
        p = 1 / (1 + np.exp(-a))

        class Scored:
            probabilities = np.column_stack([1 - p, p])
            predictions = None

        return Scored()


def test_score_cells_reads_the_challengers_columns_and_names_missing_ones():
    kept, classes = score_cells(_Model(), {"a": [0.0, 2.0], "b": [1, 1], "extra": ["x", "y"]})
    assert classes == ["no", "yes"]
    assert kept[1, 1] == pytest.approx(1 / (1 + np.exp(-2.0)))
    table = pa.table({"a": [0.0], "c": [1]})
    with pytest.raises(ValueError, match="lacks columns the challenger reads: \\['b'\\]"):
        score_cells(_Model(), table)


def test_workers_see_a_challenger_within_the_check_interval(tmp_path):
    ours = Shadow(str(tmp_path), cache=None, store=None, size=2)
    theirs = Shadow(str(tmp_path), cache=None, store=None, size=2)  # another worker
    assert theirs.current("m") is None  # remembered for CHECK_SECONDS
    running = Challenger("2", "shadow", "2026-12-07T18:00:00Z")
    ours.mark("m", running)
    assert ours.current("m") == running  # its own change at once
    deadline = time.monotonic() + CHECK_SECONDS + 1
    while theirs.current("m") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert theirs.current("m") == running
    ours.mark("m", None)
    assert ours.current("m") is None


def test_small_batches_are_scored_together_and_split_back_by_rows(tmp_path):
    class Cache:
        def model(self, name, version):
            return _Model()

    shadow = Shadow(str(tmp_path), cache=Cache(), store=None, size=4)
    jobs = [
        Job("m", "2", f"{i:032x}", {"a": values, "b": [0] * len(values)}, len(values), 0.001)
        for i, values in enumerate([[0.0], [1.0, -1.0], [3.0]])
    ]
    wide = Job("m", "2", "f" * 32, pa.table({"a": [2.0], "b": [0]}), 1, 0.001)
    missing = Job("m", "2", "e" * 32, {"a": [1.0]}, 1, 0.001)  # lacks b: its own error
    rows = {row["batch_id"]: row for row in shadow._score([*jobs, wide, missing])}
    for job in [*jobs, wide]:
        a = np.asarray(job.cells["a"], dtype="float64")
        expected = 1 / (1 + np.exp(-a))
        kept = decode_array(rows[job.batch_id]["predictions"])
        assert kept[:, 1] == pytest.approx(expected), job.batch_id
        assert rows[job.batch_id]["status"] == "scored"
    assert rows["e" * 32]["status"] == "error" and "['b']" in rows["e" * 32]["error"]
