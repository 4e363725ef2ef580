"""Shadow scoring off the request path: after the champion answers a prod batch, its rows go
on a bounded per-process queue; one background thread scores them with the challenger and
stores its predictions beside the batch's, so labels sent to /feedback pair both.

A request pays one stat() (is there a challenger?) and a put_nowait; a full queue skips the
batch and counts it. The thread never holds a request: it reads what the request left.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from sluice_common.database import utcnow
from trainer.lifecycle.prod import read_columns
from trainer.lifecycle.serving import ChampionCache
from trainer.model.sluice_model import column_names
from trainer.monitoring import shadow_store
from trainer.monitoring.store import MonitoringStore

log = logging.getLogger(__name__)
QUEUED_ROWS = 2_000_000  # beyond this many queued rows a batch is skipped too (memory)
WRITE_BATCHES = 512  # batches scored before one write to the store
GATHER_SECONDS = 0.2  # the thread waits this long for more batches to score together
CHECK_SECONDS = 0.5  # how stale a worker's idea of a model's challenger may be
# Rows of skipped batches kept for the next write; beyond, a stuck challenger (a download
# that hangs) costs no more memory, and only the worker's own count (`counts`) sees them.
MAX_PENDING = 10_000


@dataclass(frozen=True)
class Challenger:
    """A running challenge as this trainer's workers see it (its marker file)."""

    version: str
    mode: str
    started: str  # ISO 8601 UTC


@dataclass
class Job:
    """A prod batch waiting for the challenger."""

    model: str
    version: str  # the challenger's
    batch_id: str
    cells: object  # the batch's cells as the request parsed them
    n_rows: int
    champion_seconds: float | None


class ShadowQueue:
    """A bounded queue and the thread that empties it through `score(jobs) -> rows`; rows of
    skipped batches wait in memory for the thread's next write (a full queue means it is busy).
    `write(rows)` stores what the thread has. Fork-safe: the thread starts in the process that
    first offers a job (gunicorn forks workers after the app is built)."""

    def __init__(
        self, score, write, max_batches: int, max_rows: int = QUEUED_ROWS, gather_seconds=0.0
    ):
        self._score = score
        self.gather_seconds = gather_seconds
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, max_batches))
        self.max_rows = max_rows
        self._queued_rows = 0
        self._skipped: list[dict] = []
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self.counts = {"offered": 0, "skipped": 0, "scored": 0, "errors": 0}

    def offer(self, job: Job) -> bool:
        """Queue a job without waiting; False (and counted) when the queue is full."""
        self._ensure_thread()
        with self._guard:
            self.counts["offered"] += 1
            room = not self._queued_rows or self._queued_rows + job.n_rows <= self.max_rows
            if room:
                try:
                    self._queue.put_nowait(job)
                    self._queued_rows += job.n_rows
                    return True
                except queue.Full:
                    pass
            self.counts["skipped"] += 1
            if len(self._skipped) < MAX_PENDING:
                self._skipped.append(_skipped_row(job))
            return False

    def note(self, row: dict) -> None:
        """Keep a row for the thread's next write (a champion error, say)."""
        with self._guard:
            if len(self._skipped) < MAX_PENDING:
                self._skipped.append(row)
        self._ensure_thread()
        try:
            self._queue.put_nowait(None)  # wake the thread when idle; harmless when full
        except queue.Full:
            pass

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job is scored and written (tests, a stopping worker)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._guard:
                if self._queue.unfinished_tasks == 0 and not self._skipped:
                    return True
            time.sleep(0.01)
        return False

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._guard:
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run_forever, name="shadow-scorer", daemon=True
                )
                self._thread.start()

    def _run_forever(self) -> None:
        _lower_priority()
        while True:
            jobs = [self._queue.get()]
            # Let what comes meanwhile join: scored together, many single rows cost about one
            # (and the request threads wait less for the interpreter's lock).
            time.sleep(self.gather_seconds)
            while len(jobs) < WRITE_BATCHES:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            work = [job for job in jobs if job is not None]
            rows = []
            try:
                rows = self._score(work) if work else []
            except Exception:  # noqa: BLE001 - the thread must outlive any batch
                log.exception("shadow scoring failed")
            for row in rows:
                self.counts["errors" if row["status"] == "error" else "scored"] += 1
            with self._guard:
                self._queued_rows -= sum(job.n_rows for job in work)
                rows += self._skipped
                self._skipped = []
            try:
                self._write(rows)
            except Exception:  # the store is down: these shadow rows are lost, and said so
                log.exception("could not store %d shadow rows", len(rows))
            finally:
                for _ in jobs:
                    self._queue.task_done()


def _lower_priority() -> None:
    """The shadow thread yields the CPU to request threads (Linux nices threads one by one)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # another system: the same thread, at normal priority
        pass


def _skipped_row(job: Job) -> dict:
    return shadow_store.shadow_row(
        job.batch_id, job.model, job.version, utcnow(), "skipped", job.n_rows
    )


def score_cells(model, cells) -> tuple[np.ndarray, list | None]:
    """The challenger's predictions of a batch as the monitoring store keeps them (class
    probabilities or values) and its class order; ValueError naming columns it lacks."""
    required = list(model.required_columns)
    present = set(column_names(cells))
    missing = [name for name in required if name not in present]
    if missing:
        raise ValueError(f"the batch lacks columns the challenger reads: {missing[:10]}")
    table = read_columns(cells, required)
    if getattr(model, "rules", None) is None and hasattr(table, "to_pandas"):
        table = table.to_pandas()
    scored = model.score_frame(table)
    if scored.probabilities is not None:
        classes = (getattr(model, "profile", None) or {}).get("classes")
        return np.asarray(scored.probabilities), list(classes) if classes else None
    return np.asarray(scored.predictions, dtype="float64"), None


class Shadow:
    """This process's shadow challengers: which model has one (marker files in the state
    directory, shared by the trainer's workers), and the queue that scores their batches."""

    def __init__(self, state_dir: str, cache: ChampionCache, store: MonitoringStore, size: int):
        self.cache = cache
        self.store = store
        self.marker_dir = os.path.join(state_dir, "challengers")
        os.makedirs(self.marker_dir, exist_ok=True)
        self.queue = ShadowQueue(self._score, self._write, size, gather_seconds=GATHER_SECONDS)
        self._seen: dict[str, tuple] = {}  # name -> (stat, Challenger | None, checked at)

    def _path(self, name: str) -> str:
        return os.path.join(self.marker_dir, hashlib.sha1(name.encode()).hexdigest())

    def current(self, name: str) -> Challenger | None:
        """The running challenger of `name`: its marker is read at most every CHECK_SECONDS
        per process (a stat() per request cost more than the rest of the shadow's path)."""
        now = time.monotonic()
        seen = self._seen.get(name)
        if seen is not None and now - seen[2] < CHECK_SECONDS:
            return seen[1]
        path = self._path(name)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            self._seen[name] = (None, None, now)
            return None
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if seen is not None and seen[0] == key:
            self._seen[name] = (key, seen[1], now)
            return seen[1]
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            found = Challenger(str(data["version"]), str(data["mode"]), str(data["started"]))
        except (OSError, ValueError, KeyError, TypeError):
            found = None
        self._seen[name] = (key, found, now)
        return found

    def mark(self, name: str, challenger: Challenger | None) -> None:
        """Tell every worker of this trainer that `name` has this challenger (None: none);
        this process sees it at once, the others within CHECK_SECONDS."""
        self._seen.pop(name, None)
        path = self._path(name)
        if challenger is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(challenger.__dict__, handle)
        os.replace(tmp, path)

    def offer(self, name, champion_version, batch_id, cells, n_rows, champion_seconds) -> None:
        """After the champion answered: queue the batch for the challenger, if there is one."""
        challenger = self.current(name)
        if challenger is None or challenger.version == champion_version:
            return
        self.queue.offer(Job(name, challenger.version, batch_id, cells, n_rows, champion_seconds))

    def champion_failed(self, name: str, batch_id: str, n_rows: int) -> None:
        """The champion could not score a batch (counted as its error while a challenge runs)."""
        challenger = self.current(name)
        if challenger is not None:
            self.queue.note(
                shadow_store.shadow_row(
                    batch_id, name, challenger.version, utcnow(), "champion_error", n_rows
                )
            )

    def _score(self, jobs: list[Job]) -> list[dict]:
        """The challenger's rows for `jobs`: small batches (cells as column lists) of the
        same model and columns scored together, each larger one alone."""
        groups: dict[tuple, list[Job]] = {}
        for job in jobs:
            if isinstance(job.cells, dict):
                key = (job.model, job.version, tuple(job.cells))
            else:
                key = (id(job),)
            groups.setdefault(key, []).append(job)
        return [row for group in groups.values() for row in self._score_group(group)]

    def _score_group(self, jobs: list[Job]) -> list[dict]:
        first = jobs[0]
        if len(jobs) == 1:
            cells = first.cells
        else:
            cells = {name: [v for job in jobs for v in job.cells[name]] for name in first.cells}
        started = time.perf_counter()
        try:
            model = self.cache.model(first.model, first.version)
            kept, classes = score_cells(model, cells)
        except Exception as err:  # noqa: BLE001 - a challenger's failure is its own, counted
            error = f"{type(err).__name__}: {str(err)[:300]}"
            return [self._row(job, "error", error=error) for job in jobs]
        # Scored together, each batch takes its share of the time by its rows.
        seconds = (time.perf_counter() - started) / max(1, sum(job.n_rows for job in jobs))
        rows, at = [], 0
        for job in jobs:
            rows.append(
                self._row(
                    job,
                    "scored",
                    seconds=seconds * job.n_rows,
                    classes=classes,
                    predictions=kept[at : at + job.n_rows],
                )
            )
            at += job.n_rows
        return rows

    @staticmethod
    def _row(job: Job, status: str, **more) -> dict:
        return shadow_store.shadow_row(
            job.batch_id,
            job.model,
            job.version,
            utcnow(),
            status,
            job.n_rows,
            champion_seconds=job.champion_seconds,
            **more,
        )

    def _write(self, rows: list[dict]) -> None:
        # The champion's batch row is written by the monitoring writer; the pair is joined
        # when read, so the order of the two writes does not matter.
        shadow_store.write(self.store.engine, rows)
