"""The jobs table and runner (trainer/jobs/runner.py) on SQLite and a real PostgreSQL server."""

from __future__ import annotations

import secrets
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from sluice_common import error_codes
from sluice_common.errors import ApiError
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
