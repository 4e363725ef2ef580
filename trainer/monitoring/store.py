"""The monitoring store (SQLAlchemy: SQLite by default, PostgreSQL or any other URL).

Tables:
- monitoring_profiles: each model version's reference profile, written with its first batch;
- monitoring_batches: one row per prod batch: model, version, time, rows, its counts (JSON)
  and its predictions (NumPy's .npy bytes; dropped by retention), for the feedback join;
- monitoring_windows: counts summed per model, version, minute (and hour) and writer process,
  so a window's drift reads a few rows per minute or hour, not every batch; additive across
  processes;
- monitoring_labels: one label per (batch, row), as received;
- monitoring_shadow: a shadow challenger's side of a prod batch (its predictions, or that it
  was skipped or failed), keyed like the batch plus the challenger's version
  (trainer/monitoring/shadow_store.py reads and writes it).

Requests never wait on it: `record` queues, a background thread writes every FLUSH_SECONDS.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import queue
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import sqlalchemy as sa

from sluice_common.database import make_engine, utcnow
from trainer.monitoring.profile import merge_counts

log = logging.getLogger(__name__)
SCHEMA_VERSION = 2  # the migrations below take older stores here
FLUSH_SECONDS = 0.5
MAX_QUEUED_ROWS = 5_000_000  # beyond this a stalled store drops records (counted, logged)
PRUNE_SECONDS = 60.0
MINUTE, HOUR = 60, 3600
# Windows longer than this are read from the hourly sums (and aligned to whole hours).
HOURLY_ABOVE = timedelta(hours=6)

metadata = sa.MetaData()
profiles = sa.Table(
    "monitoring_profiles",
    metadata,
    sa.Column("model", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(32), primary_key=True),
    sa.Column("profile", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
batches = sa.Table(
    "monitoring_batches",
    metadata,
    sa.Column("batch_id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("counts", sa.Text, nullable=False),
    sa.Column("predictions", sa.LargeBinary, nullable=True),
    sa.Index("ix_monitoring_batches_model_time", "model", "version", "created_at"),
    sa.Index("ix_monitoring_batches_created", "created_at"),  # schema 2: retention's scans
)
windows = sa.Table(
    "monitoring_windows",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("minute", sa.DateTime, nullable=False),  # the window's start
    sa.Column("seconds", sa.Integer, nullable=False),  # its length: MINUTE or HOUR
    sa.Column("writer", sa.String(96), nullable=False),
    sa.Column("batches", sa.Integer, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("counts", sa.Text, nullable=False),
    sa.UniqueConstraint("model", "version", "seconds", "minute", "writer"),
    sa.Index("ix_monitoring_windows_model_minute", "model", "version", "seconds", "minute"),
    sa.Index("ix_monitoring_windows_minute", "minute"),  # schema 2
)
labels = sa.Table(
    "monitoring_labels",
    metadata,
    sa.Column("batch_id", sa.String(32), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
)
# Created by create_all like the others (a table added to an older store needs no migration).
shadow = sa.Table(
    "monitoring_shadow",
    metadata,
    sa.Column("batch_id", sa.String(32), primary_key=True),
    sa.Column("version", sa.String(32), primary_key=True),  # the challenger's
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # scored, skipped, error, champion_error
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Float, nullable=True),  # the challenger's scoring time
    sa.Column("champion_seconds", sa.Float, nullable=True),
    sa.Column("classes", sa.Text, nullable=True),  # JSON: the challenger's class order
    sa.Column("predictions", sa.LargeBinary, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_monitoring_shadow_model", "model", "version", "created_at"),
)
meta = sa.Table(
    "monitoring_schema",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)


def floor_time(value: datetime, seconds: int) -> datetime:
    """The start of the MINUTE or HOUR holding `value`."""
    if seconds == HOUR:
        return value.replace(minute=0, second=0, microsecond=0)
    return value.replace(second=0, microsecond=0)


@dataclass
class BatchRecord:
    """What a prod batch leaves for monitoring (built in the request, written later)."""

    batch_id: str
    model: str
    version: str
    created_at: datetime
    n_rows: int
    counts: dict
    predictions: np.ndarray  # class probabilities (classification) or values (regression)
    profile: dict | None  # written once per version


def _deep(counts: dict | None) -> dict | None:
    return None if counts is None else json.loads(json.dumps(counts))


def encode_array(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(values), allow_pickle=False)
    return buffer.getvalue()


def decode_array(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def create_schema(engine: sa.Engine, attempts: int = 20) -> None:
    """Create missing tables and record the schema version; idempotent across processes.

    Workers starting together race to create the tables (create_all checks, then creates):
    the loser's error is retried once the winner is done."""
    for attempt in range(attempts):
        try:
            _create_schema_once(engine)
            return
        except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _time_indexes(conn: sa.Connection) -> None:
    """Schema 2: retention deletes by time across every model; without these indexes each
    prune (once a minute) read the whole batches and windows tables."""
    for index in batches.indexes | windows.indexes:
        if index.name in ("ix_monitoring_batches_created", "ix_monitoring_windows_minute"):
            index.create(conn, checkfirst=True)


# Each migration takes a store from the version before it to its own; a new store is created at
# SCHEMA_VERSION directly. Every step is idempotent, so a step cut off halfway is simply rerun.
MIGRATIONS = {2: _time_indexes}


def _create_schema_once(engine: sa.Engine) -> None:
    metadata.create_all(engine, checkfirst=True)
    with engine.begin() as conn:
        row = conn.execute(sa.select(meta.c.version).where(meta.c.name == "monitoring")).first()
        if row is None:
            conn.execute(meta.insert().values(name="monitoring", version=SCHEMA_VERSION))
            return
    if row.version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the monitoring store was written by a newer Sluice (schema {row.version}); "
            f"this one knows schema {SCHEMA_VERSION}"
        )
    if row.version < SCHEMA_VERSION:
        migrate(engine)


def migrate(engine: sa.Engine) -> int:
    """Bring an older store to SCHEMA_VERSION, one step per transaction; returns the version
    found. Processes starting together: each step re-reads the version under a row lock
    (PostgreSQL) or the write lock (SQLite), so it runs once."""
    found = None
    mine = meta.c.name == "monitoring"
    while True:
        with engine.begin() as conn:
            # A write first: it takes the row lock (PostgreSQL) or the database's write lock
            # (SQLite) before the version is read, so concurrent starters queue here.
            conn.execute(meta.update().where(mine).values(version=meta.c.version))
            version = conn.execute(sa.select(meta.c.version).where(mine)).scalar_one()
            found = version if found is None else found
            if version >= SCHEMA_VERSION:
                return found
            MIGRATIONS[version + 1](conn)
            conn.execute(meta.update().where(mine).values(version=version + 1))
            log.info("monitoring store: schema %d -> %d", version, version + 1)


class SchemaTooNew(RuntimeError):
    """The store's tables are of a later Sluice."""


class MonitoringStore:
    """Queue plus background writer, and the reads behind /monitoring and /feedback."""

    def __init__(
        self,
        url: str,
        retention_days: float = 90.0,
        retention_rows: int = 10_000_000,
        flush_seconds: float = FLUSH_SECONDS,
    ):
        self.url = url
        self.engine = make_engine(url)
        create_schema(self.engine)
        self.retention_days = retention_days
        self.retention_rows = retention_rows
        self.flush_seconds = flush_seconds
        self.writer_id = f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(4)}"
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._queued_rows = 0
        self._lock = threading.Lock()
        # Sequence numbers of queued and of handled batches: flush() waits for what was
        # queued before it, not for a queue that steady traffic never empties.
        self._queued_seq = 0
        self._done_seq = 0
        self._done = threading.Condition(self._lock)
        self.dropped = {"batches": 0, "rows": 0}
        self.write_errors = 0
        self._profiles_written: set[tuple[str, str]] = set()
        self._windows: dict[tuple, list] = {}  # (model, version, minute) -> [id, n, rows, counts]
        self._last_prune = 0.0
        self._thread: threading.Thread | None = None
        self._pid = None
        # A worker that stops gracefully writes what it queued first (a daemon thread would
        # be cut off at exit, and the answered batches lost).
        atexit.register(self.flush, 5.0)

    # -- writing ---------------------------------------------------------------------------

    def record(self, batch: BatchRecord) -> None:
        """Queue a batch for the writer; never blocks (a full queue drops it, counted)."""
        with self._lock:
            # A stalled store must not hold unbounded memory; one batch alone always queues.
            if self._queued_rows and self._queued_rows + batch.n_rows > MAX_QUEUED_ROWS:
                self.dropped["batches"] += 1
                self.dropped["rows"] += batch.n_rows
                log.error("monitoring queue full: batch %s not recorded", batch.batch_id)
                return
            self._queued_rows += batch.n_rows
            self._queued_seq += 1
            seq = self._queued_seq
        self._ensure_writer()
        self._queue.put((seq, batch))

    def _ensure_writer(self) -> None:
        # gunicorn forks workers after nothing; a thread started in another process is gone.
        if self._thread is None or self._pid != os.getpid():
            with self._lock:
                if self._thread is None or self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._thread = threading.Thread(
                        target=self._write_forever, name="monitoring-writer", daemon=True
                    )
                    self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything this process queued before the call is written (or lost and
        counted); False when that took longer than `timeout`."""
        with self._lock:
            target = self._queued_seq
            return self._done.wait_for(lambda: self._done_seq >= target, timeout)

    def _write_forever(self) -> None:
        while True:
            first = self._queue.get()
            time.sleep(self.flush_seconds)  # gather what arrives meanwhile into one write
            entries = [first]
            while True:
                try:
                    entries.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            pending = [batch for _, batch in entries]
            try:
                self._write(pending)
            except Exception:  # the store is down: the batches are lost, and said so
                self.write_errors += 1
                with self._lock:
                    self.dropped["batches"] += len(pending)
                    self.dropped["rows"] += sum(b.n_rows for b in pending)
                log.exception("monitoring store write failed; %d batches lost", len(pending))
            with self._lock:
                self._queued_rows -= sum(b.n_rows for b in pending)
                self._done_seq = max(self._done_seq, max(seq for seq, _ in entries))
                self._done.notify_all()
            if time.monotonic() - self._last_prune > PRUNE_SECONDS:
                self._last_prune = time.monotonic()
                try:
                    self.prune()
                except Exception:
                    log.exception("monitoring retention failed")

    def _write(self, pending: list[BatchRecord]) -> None:
        for batch in pending:
            if batch.profile is not None:
                self._write_profile(batch.model, batch.version, batch.profile)
        # The window sums as they will be once this write commits; adopted only then, so a
        # failed write leaves the committed sums (memory and database) as they were.
        staged: dict[tuple, list] = {}
        for batch in pending:
            for seconds in (MINUTE, HOUR):
                start = floor_time(batch.created_at, seconds)
                key = (batch.model, batch.version, start, seconds)
                entry = staged.get(key)
                if entry is None:
                    committed = self._windows.get(key)
                    entry = staged[key] = (
                        [committed[0], committed[1], committed[2], _deep(committed[3])]
                        if committed
                        else [None, 0, 0, None]
                    )
                entry[1] += 1
                entry[2] += batch.n_rows
                entry[3] = merge_counts(entry[3], batch.counts)
        with self.engine.begin() as conn:
            conn.execute(
                batches.insert(),
                [
                    {
                        "batch_id": b.batch_id,
                        "model": b.model,
                        "version": b.version,
                        "created_at": b.created_at,
                        "n_rows": b.n_rows,
                        "counts": json.dumps(b.counts, separators=(",", ":")),
                        "predictions": encode_array(b.predictions),
                    }
                    for b in pending
                ],
            )
            for (model, version, minute, seconds), entry in staged.items():
                values = {
                    "batches": entry[1],
                    "rows": entry[2],
                    "counts": json.dumps(entry[3], separators=(",", ":")),
                }
                if entry[0] is None:
                    result = conn.execute(
                        windows.insert().values(
                            model=model,
                            version=version,
                            minute=minute,
                            seconds=seconds,
                            writer=self.writer_id,
                            **values,
                        )
                    )
                    entry[0] = result.inserted_primary_key[0]
                else:
                    conn.execute(windows.update().where(windows.c.id == entry[0]).values(**values))
        self._windows.update(staged)
        # Only the current minute and hour can still grow; older windows are final.
        newest = max(key[2] for key in self._windows)
        for key in [
            k for k in self._windows if k[2] < newest - timedelta(seconds=k[3]) - timedelta(hours=1)
        ]:
            del self._windows[key]

    def _write_profile(self, model: str, version: str, profile: dict) -> None:
        """A version's profile, once: its own transaction, so another worker writing the same
        one at the same moment costs nothing but this insert."""
        key = (model, version)
        if key in self._profiles_written:
            return
        query = sa.select(profiles.c.model).where(
            profiles.c.model == model, profiles.c.version == version
        )
        try:
            with self.engine.begin() as conn:
                if conn.execute(query).first() is None:
                    conn.execute(
                        profiles.insert().values(
                            model=model,
                            version=version,
                            profile=json.dumps(profile, separators=(",", ":")),
                            created_at=utcnow(),
                        )
                    )
        except sa.exc.IntegrityError:
            pass  # written by another worker meanwhile: the same profile
        self._profiles_written.add(key)

    def prune(self) -> None:
        """Retention: batches older than retention_days go (with their labels); beyond
        retention_rows kept predictions, the oldest batches' predictions go."""
        cutoff = utcnow() - timedelta(days=self.retention_days)
        with self.engine.begin() as conn:
            old = sa.select(batches.c.batch_id).where(batches.c.created_at < cutoff)
            conn.execute(labels.delete().where(labels.c.batch_id.in_(old)))
            conn.execute(shadow.delete().where(shadow.c.created_at < cutoff))
            conn.execute(batches.delete().where(batches.c.created_at < cutoff))
            conn.execute(windows.delete().where(windows.c.minute < floor_time(cutoff, HOUR)))
            kept = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(batches.c.n_rows), 0)).where(
                    batches.c.predictions.is_not(None)
                )
            ).scalar_one()
            excess = int(kept) - self.retention_rows
            if excess <= 0:
                return
            oldest = conn.execute(
                sa.select(batches.c.batch_id, batches.c.n_rows)
                .where(batches.c.predictions.is_not(None))
                .order_by(batches.c.created_at)
                .limit(10_000)
            )
            expired = []
            for batch_id, n_rows in oldest:
                if excess <= 0:
                    break
                expired.append(batch_id)
                excess -= n_rows
            for start in range(0, len(expired), 500):
                chunk = expired[start : start + 500]
                conn.execute(
                    batches.update().where(batches.c.batch_id.in_(chunk)).values(predictions=None)
                )
                conn.execute(labels.delete().where(labels.c.batch_id.in_(chunk)))

    # -- reading ---------------------------------------------------------------------------

    def profile(self, model: str, version: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(profiles.c.profile).where(
                    profiles.c.model == model, profiles.c.version == version
                )
            ).first()
        return json.loads(row.profile) if row else None

    def latest_version(self, model: str) -> str | None:
        """The version that scored the model's most recent batch."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(batches.c.version)
                .where(batches.c.model == model)
                .order_by(batches.c.created_at.desc())
                .limit(1)
            ).first()
        return row.version if row else None

    def aligned(self, model, version, since: datetime | None, until: datetime | None) -> tuple:
        """The window as stored: whole minutes, or whole hours when it spans more than
        HOURLY_ABOVE (an open window spans from the version's first batch); (resolution,
        first window start or None, end (exclusive) or None)."""
        begin = since if since is not None else self.first_batch_time(model, version)
        long = begin is not None and (until or utcnow()) - begin > HOURLY_ABOVE
        seconds = HOUR if long else MINUTE
        start = None if since is None else floor_time(since, seconds)
        end = None
        if until is not None:  # the end of the window holding `until`; itself on a boundary
            end = floor_time(until, seconds)
            if end < until:
                end += timedelta(seconds=seconds)
        return seconds, start, end

    def window(self, model, version, since=None, until=None) -> tuple[dict | None, int, int, list]:
        """Summed counts, batches, rows and the per-window rows (minutes or hours, see
        `aligned`) between since and until."""
        seconds, start, end = self.aligned(model, version, since, until)
        query = sa.select(
            windows.c.minute, windows.c.batches, windows.c.rows, windows.c.counts
        ).where(
            windows.c.model == model, windows.c.version == version, windows.c.seconds == seconds
        )
        if start is not None:
            query = query.where(windows.c.minute >= start)
        if end is not None:
            query = query.where(windows.c.minute < end)
        by_start: dict[datetime, dict] = {}
        total, n_batches, n_rows = None, 0, 0
        with self.engine.connect() as conn:
            for minute, count, rows, counts in conn.execute(query.order_by(windows.c.minute)):
                parsed = json.loads(counts)
                by_start[minute] = merge_counts(by_start.get(minute), parsed)
                total = merge_counts(total, parsed)
                n_batches += count
                n_rows += rows
        return total, n_batches, n_rows, sorted(by_start.items())

    def first_batch_time(self, model: str, version: str) -> datetime | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.min(batches.c.created_at)).where(
                    batches.c.model == model, batches.c.version == version
                )
            ).scalar_one()

    def batch_counts_in(self, model, version, start=None, end=None, limit=200) -> list:
        """(created_at, counts) of the latest `limit` batches in [start, end), oldest first."""
        query = (
            sa.select(batches.c.created_at, batches.c.counts)
            .where(batches.c.model == model, batches.c.version == version)
            .order_by(batches.c.created_at.desc())
            .limit(limit)
        )
        if start is not None:
            query = query.where(batches.c.created_at >= start)
        if end is not None:
            query = query.where(batches.c.created_at < end)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(created_at, json.loads(counts)) for created_at, counts in reversed(rows)]

    def has_batches(self, model: str, version: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(batches.c.batch_id)
                .where(batches.c.model == model, batches.c.version == version)
                .limit(1)
            ).first()
        return row is not None

    def batch(self, batch_id: str, with_predictions: bool = True):
        """A batch's row; without its predictions (which can be megabytes) when only its
        counts are wanted."""
        columns = (
            batches.c if with_predictions else [c for c in batches.c if c.name != "predictions"]
        )
        with self.engine.connect() as conn:
            return conn.execute(sa.select(*columns).where(batches.c.batch_id == batch_id)).first()

    def batches_info(self, batch_ids: list[str]) -> dict[str, tuple]:
        """batch_id -> (model, version, n_rows, has predictions, created_at)."""
        found = {}
        with self.engine.connect() as conn:
            for start in range(0, len(batch_ids), 500):
                chunk = batch_ids[start : start + 500]
                query = sa.select(
                    batches.c.batch_id,
                    batches.c.model,
                    batches.c.version,
                    batches.c.n_rows,
                    batches.c.predictions.is_not(None).label("kept"),
                    batches.c.created_at,
                ).where(batches.c.batch_id.in_(chunk))
                for row in conn.execute(query):
                    found[row.batch_id] = (
                        row.model,
                        row.version,
                        row.n_rows,
                        bool(row.kept),
                        row.created_at,
                    )
        return found

    def save_labels(self, items: list[tuple[str, int, str]], attempts: int = 5) -> dict:
        """Upsert labels (batch_id, row, label); a label posted again changes nothing. Two
        posts of the same rows at once: the later one retries and finds them."""
        for attempt in range(attempts):
            try:
                return self._save_labels_once(items)
            except sa.exc.IntegrityError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _save_labels_once(self, items: list[tuple[str, int, str]]) -> dict:
        result = {"new": 0, "unchanged": 0, "changed": 0}
        now = utcnow()
        with self.engine.begin() as conn:
            by_batch: dict[str, dict[int, str]] = {}
            for batch_id, row, label in items:
                by_batch.setdefault(batch_id, {})[row] = label
            for batch_id, wanted in by_batch.items():
                existing = dict(
                    conn.execute(
                        sa.select(labels.c.row, labels.c.label).where(labels.c.batch_id == batch_id)
                    ).all()
                )
                new = [
                    {"batch_id": batch_id, "row": r, "label": v, "received_at": now}
                    for r, v in wanted.items()
                    if r not in existing
                ]
                if new:
                    conn.execute(labels.insert(), new)
                for r, v in wanted.items():
                    if r in existing and existing[r] != v:
                        conn.execute(
                            labels.update()
                            .where(labels.c.batch_id == batch_id, labels.c.row == r)
                            .values(label=v, received_at=now)
                        )
                        result["changed"] += 1
                    elif r in existing:
                        result["unchanged"] += 1
                result["new"] += len(new)
        return result

    def labelled(self, model, version, since=None, until=None, batch_id=None):
        """(created_at, predictions at the labelled rows, labels) per labelled batch, oldest
        first; `until` is exclusive."""
        query = (
            sa.select(batches.c.batch_id, batches.c.created_at, labels.c.row, labels.c.label)
            .select_from(labels.join(batches, labels.c.batch_id == batches.c.batch_id))
            .where(
                batches.c.model == model,
                batches.c.version == version,
                batches.c.predictions.is_not(None),
            )
            .order_by(batches.c.created_at, batches.c.batch_id, labels.c.row)
        )
        if since is not None:
            query = query.where(batches.c.created_at >= since)
        if until is not None:
            query = query.where(batches.c.created_at < until)
        if batch_id is not None:
            query = query.where(batches.c.batch_id == batch_id)
        with self.engine.connect() as conn:
            grouped: dict[str, tuple] = {}
            for bid, created_at, row, label in conn.execute(query):
                entry = grouped.setdefault(bid, (created_at, [], []))
                entry[1].append(row)
                entry[2].append(label)
            ids = list(grouped)
            for start in range(0, len(ids), 200):
                chunk = ids[start : start + 200]
                blobs = dict(
                    conn.execute(
                        sa.select(batches.c.batch_id, batches.c.predictions).where(
                            batches.c.batch_id.in_(chunk)
                        )
                    ).all()
                )
                for bid in chunk:
                    created_at, rows, texts = grouped[bid]
                    predictions = decode_array(blobs[bid])
                    yield created_at, predictions[np.asarray(rows, dtype="int64")], texts

    def scored_rows(self, model, version, since=None, until=None) -> tuple[int, int]:
        """Rows scored and rows labelled in a window, by the batches' own times."""
        query = sa.select(sa.func.coalesce(sa.func.sum(batches.c.n_rows), 0)).where(
            batches.c.model == model, batches.c.version == version
        )
        labelled = (
            sa.select(sa.func.count())
            .select_from(labels.join(batches, labels.c.batch_id == batches.c.batch_id))
            .where(batches.c.model == model, batches.c.version == version)
        )
        if since is not None:
            query = query.where(batches.c.created_at >= since)
            labelled = labelled.where(batches.c.created_at >= since)
        if until is not None:
            query = query.where(batches.c.created_at < until)
            labelled = labelled.where(batches.c.created_at < until)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one()), int(conn.execute(labelled).scalar_one())

    def models(self) -> list[str]:
        """Every model with a recorded profile."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(profiles.c.model).distinct()).all()
        return sorted(r.model for r in rows)

    def versions(self, model: str) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(profiles.c.version).where(profiles.c.model == model)
            ).all()
        return sorted((r.version for r in rows), key=lambda v: int(v) if v.isdigit() else 0)
