"""The jobs table and runner (trainer/jobs/runner.py) on SQLite and a real PostgreSQL server."""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from flask import Flask, jsonify

from sluice_common import error_codes
from sluice_common.errors import ApiError
from sluice_common.web.jsonio import OrjsonProvider
from trainer.jobs import runner as jobs
from trainer.jobs.runner import JobRunner, JobStore
from trainer.lifecycle.boot import BOOT_ENV


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return request.getfixturevalue("postgres").create_database(f"j_{secrets.token_hex(6)}")


def wait_state(store, job_id, states, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job["state"] in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"{job_id} still {job['state']}")


def test_a_job_runs_reports_progress_and_keeps_its_answer(url):
    runner = JobRunner(JobStore(url))
    seen = threading.Event()

    def work(context):
        context.progress(stage="reading", rows_read=10)
        seen.wait(10)
        return 200, {"answer": [1, 2, 3]}

    job_id = runner.submit("dev", "m", {"phase": "dev"}, work)
    running = wait_state(runner.store, job_id, ("running",))
    assert running["progress"]["stage"] in ("starting", "reading")
    seen.set()
    done = wait_state(runner.store, job_id, ("succeeded",))
    assert done["answer"] == {"answer": [1, 2, 3]} and done["status"] == 200
    assert done["progress"]["stage"] == "done" and done["progress"]["rows_read"] == 10
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]
    listed = runner.store.list(10)
    assert [j["job_id"] for j in listed] == [job_id] and "answer" not in listed[0]


def test_errors_and_cancellation_are_recorded(url):
    runner = JobRunner(JobStore(url))

    def refused(context):
        raise ApiError(error_codes.TOO_FEW_ROWS, "need more rows")

    failed = wait_state(runner.store, runner.submit("dev", "m", {}, refused), ("failed",))
    assert failed["status"] == 422 and failed["error"]["code"] == "too_few_rows"

    def crashes(context):
        raise RuntimeError("boom /secret/path")

    crashed = wait_state(runner.store, runner.submit("dev", "m", {}, crashes), ("failed",))
    assert crashed["status"] == 500 and "/secret/path" not in crashed["error"]["message"]

    def loops(context):
        while True:
            context.progress(stage="training")
            time.sleep(0.05)

    discarded = []
    job_id = runner.submit("dev", "m", {}, loops, discard=lambda: discarded.append(1))
    wait_state(runner.store, job_id, ("running",))
    assert runner.store.request_cancel(job_id)["cancel_requested"] is True
    cancelled = wait_state(runner.store, job_id, ("cancelled",))  # seen by the heartbeat
    assert cancelled["error"]["code"] == "job_cancelled" and discarded == [1]
    with pytest.raises(ApiError) as err:
        runner.store.request_cancel(job_id)
    assert err.value.code == "job_finished"


def test_a_full_runner_refuses_more(url):
    runner = JobRunner(JobStore(url), max_queued=2)
    gate = threading.Event()
    for _ in range(2):
        runner.submit("dev", "m", {}, lambda c: (gate.wait(10), (200, {}))[1])
    with pytest.raises(ApiError) as err:
        runner.submit("dev", "m", {}, lambda c: (200, {}))
    assert err.value.status == 503 and err.value.code == "busy"
    gate.set()


def test_jobs_of_an_earlier_start_and_silent_jobs_are_failed(url, monkeypatch):
    store = JobStore(url, stale_seconds=5)
    store.create("a" * 32, "dev", "m", {})
    store.start("a" * 32)
    store.create("b" * 32, "prod", "m", {})
    monkeypatch.setenv(BOOT_ENV, "a-later-start")
    later = JobStore(url, stale_seconds=5)
    assert later.mark_orphans() == 2
    for job_id in ("a" * 32, "b" * 32):
        job = later.get(job_id)
        assert job["state"] == "failed" and job["error"]["code"] == "job_interrupted"
    later.create("c" * 32, "dev", "m", {})
    later.start("c" * 32)
    with later.engine.begin() as conn:  # its process stopped beating 10 s ago
        conn.execute(
            jobs.jobs.update()
            .where(jobs.jobs.c.job_id == "c" * 32)
            .values(heartbeat_at=jobs.utcnow() - timedelta(seconds=10))
        )
    job = later.get("c" * 32)
    assert job["state"] == "failed" and "stopped" in job["error"]["message"]
    with later.engine.begin() as conn:
        conn.execute(jobs.jobs.update().values(created_at=sa.func.now() - timedelta(days=60)))
    later.prune()
    assert later.list() == []


def test_an_answer_is_stored_as_the_app_encodes_it_and_an_unencodable_one_fails_the_job(url):
    """A prod answer holds numpy arrays (probabilities): the job keeps what the HTTP answer
    would say; an answer no encoder can write fails the job with that reason at once, not
    left running to be called interrupted when its heartbeat stops."""
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    runner = JobRunner(JobStore(url, stale_seconds=1, encode=app.json.dumps))
    answer = {"predictions": ["a", "b"], "probabilities": np.array([[0.25, 0.75], [1.0, 0.0]])}
    job_id = runner.submit("prod", "m", {}, lambda context: (200, answer))
    done = wait_state(runner.store, job_id, ("succeeded", "failed"))
    with app.app_context():  # the oracle: the synchronous answer, through jsonify
        synchronous = json.loads(jsonify(answer).get_data())
    assert done["state"] == "succeeded", done
    assert done["answer"] == synchronous
    assert done["answer"]["probabilities"] == [[0.25, 0.75], [1.0, 0.0]]

    strict = JobRunner(JobStore(url, stale_seconds=1))  # json.dumps knows no ndarray
    job_id = strict.submit("prod", "m", {}, lambda context: (200, answer))
    failed = wait_state(strict.store, job_id, ("succeeded", "failed"), timeout=5)
    assert failed["state"] == "failed" and failed["error"]["code"] == "job_error"
    assert "could not be recorded" in failed["error"]["message"]
    assert "ndarray" in failed["error"]["message"]
    time.sleep(1.5)  # past the stale cut-off: still the real reason, not "interrupted"
    assert strict.store.get(job_id)["error"]["code"] == "job_error"


def test_a_job_whose_outcome_could_not_be_written_is_cancelled_at_once(url, monkeypatch):
    """The store fails the job's last writes: it stays running, no thread holds it. DELETE
    marks it cancelled at once (not a flag no one reads until the job is called interrupted)."""
    runner = JobRunner(JobStore(url))
    finish = runner.store.finish
    broken = threading.Event()
    broken.set()

    def failing_finish(*args, **kwargs):
        if broken.is_set():
            raise sa.exc.OperationalError("UPDATE", {}, Exception("database is gone"))
        return finish(*args, **kwargs)

    monkeypatch.setattr(runner.store, "finish", failing_finish)
    job_id = runner.submit("dev", "m", {}, lambda context: (200, {"ok": 1}))
    deadline = time.monotonic() + 10
    while runner.store.get(job_id)["progress"]["stage"] != "done" or job_id in runner._active:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert runner.store.get(job_id)["state"] == "running"
    broken.clear()  # the database is back
    cancelled = runner.cancel(job_id)
    assert cancelled["state"] == "cancelled" and cancelled["error"]["code"] == "job_cancelled"


def test_a_running_job_is_cancelled_by_its_runner(url):
    runner = JobRunner(JobStore(url))
    gate = threading.Event()

    def waits(context):
        while not gate.wait(0.05):
            context.progress(stage="training")
        return 200, {}

    job_id = runner.submit("dev", "m", {}, waits)
    wait_state(runner.store, job_id, ("running",))
    asked = runner.cancel(job_id)
    assert asked["state"] == "running" and asked["cancel_requested"] is True
    assert wait_state(runner.store, job_id, ("cancelled",))["error"]["code"] == "job_cancelled"
    gate.set()


def test_the_list_cuts_off_silent_jobs_as_reading_one_does(url):
    store = JobStore(url, stale_seconds=5)
    for job_id in ("d" * 32, "e" * 32, "f" * 32):
        store.create(job_id, "dev", "m", {})
        store.start(job_id)
    with store.engine.begin() as conn:  # two of them stopped beating 10 s ago
        conn.execute(
            jobs.jobs.update()
            .where(jobs.jobs.c.job_id.in_(("d" * 32, "e" * 32)))
            .values(heartbeat_at=jobs.utcnow() - timedelta(seconds=10))
        )
    states = {job["job_id"]: job for job in store.list()}
    assert [states[j]["state"] for j in ("d" * 32, "e" * 32, "f" * 32)] == [
        "failed",
        "failed",
        "running",
    ]
    assert states["d" * 32]["error"]["code"] == "job_interrupted"
    assert store.get("e" * 32)["error"] == states["e" * 32]["error"]
