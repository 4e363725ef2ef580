"""Long work as jobs: recorded in the database, run by a thread of the trainer process.

A job is any `data_uri` request, an upload above JOBS_UPLOAD_MB, or a request with async=true.
Its row (table sluice_jobs, beside the monitoring tables) holds the state, the progress, and
when it is done the answer or error a synchronous request would have given, so jobs are listed
after a restart. A job whose process stopped is never left "running": at start a trainer marks
the jobs of an earlier boot failed, and a job whose heartbeat stops (its worker process died)
is marked failed when it is next read or listed. An answer is stored as the HTTP answer encodes
it (the app's JSON provider), so a job's answer is the synchronous one.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from sluice_common import error_codes
from sluice_common.database import iso_utc, make_engine, utcnow
from sluice_common.errors import ApiError
from trainer.lifecycle.boot import boot_id

log = logging.getLogger(__name__)
FINISHED = ("succeeded", "failed", "cancelled")
UNFINISHED = ("queued", "running")
HEARTBEAT_SECONDS = 2.0

metadata = sa.MetaData()
jobs = sa.Table(
    "sluice_jobs",
    metadata,
    sa.Column("job_id", sa.String(32), primary_key=True),
    sa.Column("phase", sa.String(8), nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("request", sa.Text, nullable=False),  # the parameters, for the listing
    sa.Column("owner", sa.String(128), nullable=False),  # boot id and pid of its process
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=True),
    sa.Column("finished_at", sa.DateTime, nullable=True),
    sa.Column("heartbeat_at", sa.DateTime, nullable=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("progress", sa.Text, nullable=False),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("answer", sa.Text, nullable=True),
    sa.Index("ix_sluice_jobs_created", "created_at"),
)


class JobCancelled(Exception):
    """Raised inside a job when its cancellation was asked for."""


@dataclass
class JobContext:
    """What a running job's work sees: progress reporting and its cancel flag."""

    job_id: str
    store: JobStore
    cancel: threading.Event = field(default_factory=threading.Event)
    progress_state: dict = field(default_factory=dict)
    _last_write: float = 0.0

    def progress(self, **values) -> None:
        """Record progress (stage, rows_read, rounds_done, rounds_max); written at most every
        half second, and at once when the stage changes."""
        stage_changed = "stage" in values and values["stage"] != self.progress_state.get("stage")
        self.progress_state.update(values)
        now = time.monotonic()
        if stage_changed or now - self._last_write >= 0.5:
            self._last_write = now
            self.store.set_progress(self.job_id, self.progress_state)
        self.check()

    def report(self, **values) -> None:
        """`progress` that never raises (from code that must finish its step first)."""
        try:
            self.progress(**values)
        except JobCancelled:
            pass

    def check(self) -> None:
        """Raise JobCancelled when the job was cancelled."""
        if self.cancel.is_set():
            raise JobCancelled()

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()


class JobStore:
    """The jobs table: create, update, read, and mark jobs their process left behind."""

    def __init__(
        self,
        url: str,
        stale_seconds: float = 30.0,
        retention_days: float = 30.0,
        encode: Callable[[object], str] = json.dumps,
    ):
        """`encode`: the app's JSON encoder (app.json.dumps) that answers are stored with."""
        self.engine = make_engine(url)
        for attempt in range(20):  # workers starting together race to create the table
            try:
                metadata.create_all(self.engine, checkfirst=True)
                break
            except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError):
                if attempt == 19:
                    raise
                time.sleep(0.05 * (attempt + 1))
        self.stale_seconds = stale_seconds
        self.retention_days = retention_days
        self.owner = f"{boot_id()}:{socket.gethostname()[:40]}:{os.getpid()}"
        self.encode = encode

    def create(self, job_id: str, phase: str, model: str, request: dict) -> None:
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                jobs.insert().values(
                    job_id=job_id,
                    phase=phase,
                    model=model,
                    state="queued",
                    request=json.dumps(request),
                    owner=self.owner,
                    created_at=now,
                    heartbeat_at=now,
                    cancel_requested=False,
                    progress=json.dumps({"stage": "queued"}),
                )
            )

    def _update(self, job_id: str, only_unfinished: bool = True, **values) -> bool:
        where = jobs.c.job_id == job_id
        if only_unfinished:
            where &= jobs.c.state.in_(UNFINISHED)
        with self.engine.begin() as conn:
            return conn.execute(jobs.update().where(where).values(**values)).rowcount > 0

    def start(self, job_id: str) -> bool:
        """Mark it running, its progress "starting" in the same write (a reader never sees a
        running job still "queued"); False when it was cancelled (or cut off) meanwhile."""
        now = utcnow()
        starting = json.dumps({"stage": "starting"})
        return self._update(
            job_id, state="running", started_at=now, heartbeat_at=now, progress=starting
        )

    def set_progress(self, job_id: str, progress: dict) -> None:
        self._update(job_id, progress=json.dumps(progress), heartbeat_at=utcnow())

    def finish(self, job_id: str, state: str, status: int, answer=None, error=None) -> None:
        values = {"state": state, "status": status, "finished_at": utcnow()}
        if answer is not None:
            values["answer"] = answer if isinstance(answer, str) else self.encode(answer)
        if error is not None:
            values["error"] = json.dumps(error)
        self._update(job_id, **values)

    def heartbeat(self, job_ids: list[str]) -> set[str]:
        """Refresh the heartbeat of this process's jobs; the ids whose cancel was asked."""
        if not job_ids:
            return set()
        with self.engine.begin() as conn:
            conn.execute(
                jobs.update()
                .where(jobs.c.job_id.in_(job_ids) & jobs.c.state.in_(UNFINISHED))
                .values(heartbeat_at=utcnow())
            )
            rows = conn.execute(
                sa.select(jobs.c.job_id, jobs.c.state, jobs.c.cancel_requested).where(
                    jobs.c.job_id.in_(job_ids)
                )
            ).all()
        return {r.job_id for r in rows if r.cancel_requested or r.state in FINISHED}

    def request_cancel(self, job_id: str) -> dict:
        """Ask for a job's cancellation; the job as it is now. Its runner sees the flag (at its
        next heartbeat in another process); one left by a process that stopped beating is cut
        off first, and so answers job_finished."""
        job = self.get(job_id)
        if job["state"] in FINISHED:
            raise ApiError(
                error_codes.JOB_FINISHED,
                f"Job {job_id} already finished ({job['state']}); there is nothing to cancel.",
            )
        self._update(job_id, cancel_requested=True)
        return self.get(job_id)

    def mark_orphans(self) -> int:
        """At start: jobs of an earlier boot of this trainer that never finished are failed."""
        mine = boot_id() + ":"
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(jobs.c.job_id, jobs.c.owner).where(jobs.c.state.in_(UNFINISHED))
            ).all()
        orphans = [r.job_id for r in rows if not r.owner.startswith(mine)]
        for job_id in orphans:
            self._cut_off(job_id, "the trainer restarted while it was queued or running")
        return len(orphans)

    def owned_here(self, job_id: str) -> bool:
        """Whether the job is unfinished and this process is its owner."""
        row = self._row(job_id)
        return row.state in UNFINISHED and row.owner == self.owner

    def unfinished_of(self, phase: str, model: str) -> list[str]:
        """Ids of the model's queued or running jobs of `phase` whose process still beats."""
        alive = utcnow() - timedelta(seconds=self.stale_seconds)
        query = sa.select(jobs.c.job_id).where(
            jobs.c.phase == phase,
            jobs.c.model == model,
            jobs.c.state.in_(UNFINISHED),
            jobs.c.heartbeat_at >= alive,
        )
        with self.engine.connect() as conn:
            return [row.job_id for row in conn.execute(query)]

    def unfinished(self) -> set[str]:
        """Ids of the jobs queued or running (any process)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs.c.job_id).where(jobs.c.state.in_(UNFINISHED))).all()
        return {r.job_id for r in rows}

    def _cut_off(self, job_id: str, why: str) -> None:
        err = ApiError(
            error_codes.JOB_INTERRUPTED,
            f"The job was cut off: {why}. Nothing was promoted by it after the cut; send the "
            "request again.",
        )
        self.finish(job_id, "failed", err.status, error=err.to_dict()["error"])

    def _cut_off_if_silent(self, row) -> bool:
        """Fail a queued or running job whose process stopped beating JOBS_STALE_SECONDS ago
        (the one rule of GET /jobs/<id> and GET /jobs); whether it was cut off."""
        if row.state not in UNFINISHED:
            return False
        age = (utcnow() - row.heartbeat_at).total_seconds()
        if age <= self.stale_seconds:
            return False
        self._cut_off(row.job_id, f"the trainer process running it stopped ({age:.0f} s ago)")
        return True

    def _row(self, job_id: str):
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).first()
        if row is None:
            raise ApiError(error_codes.JOB_NOT_FOUND, f"No job {job_id} is recorded.")
        return row

    def get(self, job_id: str, with_answer: bool = True) -> dict:
        row = self._row(job_id)
        if self._cut_off_if_silent(row):
            row = self._row(job_id)
        return self._public(row, with_answer)

    def list(self, limit: int = 100) -> list[dict]:
        self.prune()
        query = sa.select(jobs).order_by(jobs.c.created_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if [row for row in rows if self._cut_off_if_silent(row)]:  # every row, not the first
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
        return [self._public(row, with_answer=False) for row in rows]

    def prune(self) -> None:
        """Forget finished jobs older than the retention."""
        limit = utcnow() - timedelta(days=self.retention_days)
        with self.engine.begin() as conn:
            conn.execute(
                jobs.delete().where((jobs.c.created_at < limit) & jobs.c.state.in_(FINISHED))
            )

    @staticmethod
    def _public(row, with_answer: bool) -> dict:
        job = {
            "job_id": row.job_id,
            "state": row.state,
            "phase": row.phase,
            "model": row.model,
            "request": json.loads(row.request),
            "created_at": iso_utc(row.created_at),
            "started_at": iso_utc(row.started_at),
            "finished_at": iso_utc(row.finished_at),
            "progress": json.loads(row.progress),
        }
        if row.state in UNFINISHED and row.cancel_requested:
            job["cancel_requested"] = True
        if row.status is not None:
            job["status"] = row.status
        if row.error:
            job["error"] = json.loads(row.error)
        if with_answer and row.answer:
            job["answer"] = json.loads(row.answer)
        return job


class JobRunner:
    """Runs this process's jobs, one at a time per thread, with heartbeats and cancellation."""

    def __init__(self, store: JobStore, threads: int = 1, max_queued: int = 16):
        self.store = store
        self.max_queued = max_queued
        self._queue: queue.Queue = queue.Queue()
        self._active: dict[str, JobContext] = {}
        self._guard = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"sluice-job-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        for thread in self._threads:
            thread.start()
        threading.Thread(target=self._beat, name="sluice-job-heartbeat", daemon=True).start()

    def submit(
        self,
        phase: str,
        model: str,
        request: dict,
        work: Callable,
        job_id: str | None = None,
        discard: Callable | None = None,
    ) -> str:
        """Record and queue a job; its id. `work(context)` returns (status, answer dict);
        `discard()` runs once the job is over, whether or not it ran (a spooled upload)."""
        with self._guard:
            if len(self._active) >= self.max_queued:
                raise ApiError(
                    error_codes.BUSY,
                    f"{len(self._active)} jobs are queued or running on this trainer process; "
                    "try again when some have finished.",
                    retry_after=30,
                )
            job_id = job_id or secrets.token_hex(16)
            self._active[job_id] = JobContext(job_id, self.store)
        try:
            self.store.create(job_id, phase, model, request)
        except BaseException:
            with self._guard:
                self._active.pop(job_id, None)
            raise
        self._queue.put((job_id, work, discard))
        return job_id

    def cancel(self, job_id: str) -> dict:
        """Ask for a job's cancellation; the job as it is now. One this process runs or queues
        stops at its next progress point; one this process owns but no longer holds (its
        thread is over and its outcome could not be written) is marked cancelled at once,
        rather than left running until it is called interrupted."""
        job = self.store.request_cancel(job_id)
        with self._guard:
            context = self._active.get(job_id)
        if context is not None:
            context.cancel.set()
        elif self.store.owned_here(job_id):
            self._cancelled(job_id)
            job = self.store.get(job_id)
        return job

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with self._guard:
                ids = list(self._active)
            try:
                for job_id in self.store.heartbeat(ids):
                    context = self._active.get(job_id)
                    if context is not None:
                        context.cancel.set()
            except Exception:  # a store hiccup must not stop the heartbeats for good
                log.exception("job heartbeat failed")

    def _work(self) -> None:
        while True:
            job_id, work, discard = self._queue.get()
            context = self._active.get(job_id)
            try:
                self._run(job_id, work, context)
            except Exception as err:
                log.exception("job %s could not be recorded", job_id)
                self._record_failure(job_id, type(err).__name__)
            finally:
                with self._guard:
                    self._active.pop(job_id, None)
                if discard is not None:
                    try:
                        discard()
                    except OSError:
                        log.exception("job %s: could not discard its spooled input", job_id)

    def _run(self, job_id: str, work: Callable, context: JobContext) -> None:
        if context.cancelled or not self.store.start(job_id):
            self._cancelled(job_id)
            return
        context.progress_state["stage"] = "starting"  # as start() wrote it
        try:
            status, answer = work(context)
        except JobCancelled:
            self._cancelled(job_id)
            return
        except ApiError as err:
            self.store.finish(job_id, "failed", err.status, error=err.to_dict()["error"])
            return
        except Exception as err:
            log.exception("job %s failed", job_id)
            failed = ApiError(
                error_codes.JOB_ERROR,
                f"The job failed unexpectedly ({type(err).__name__}); the trainer's log has the "
                "details.",
            )
            self.store.finish(job_id, "failed", failed.status, error=failed.to_dict()["error"])
            return
        try:
            encoded = self.store.encode(answer)
        except (TypeError, ValueError) as err:  # the work's answer is wrong, not its process
            log.exception("job %s: its answer could not be encoded", job_id)
            self._record_failure(job_id, f"{type(err).__name__}: {str(err)[:200]}")
            return
        context.progress_state["stage"] = "done"
        self.store.set_progress(job_id, context.progress_state)
        self.store.finish(job_id, "succeeded", status, answer=encoded)

    def _record_failure(self, job_id: str, reason: str) -> None:
        """Mark the job failed because its outcome could not be recorded, with the reason (a
        job left running would later be called interrupted, which sends users looking for a
        dead process); only logged when even that cannot be written."""
        failed = ApiError(
            error_codes.JOB_ERROR,
            f"The job's work ended but its outcome could not be recorded ({reason}); the "
            "trainer's log has the details.",
        )
        try:
            self.store.finish(job_id, "failed", failed.status, error=failed.to_dict()["error"])
        except Exception:
            log.exception("job %s: its failure could not be recorded either", job_id)

    def _cancelled(self, job_id: str) -> None:
        err = ApiError(error_codes.JOB_CANCELLED, "The job was cancelled (DELETE /jobs/<id>).")
        self.store.finish(job_id, "cancelled", err.status, error=err.to_dict()["error"])
