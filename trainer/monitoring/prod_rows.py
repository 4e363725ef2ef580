"""Prod rows' cells as they arrived, kept so that labels sent to /feedback can retrain.

One row per prod batch in `monitoring_prod_rows` (the monitoring store's database): the cells
of the columns the champion read, as compressed Arrow IPC. Requests only queue the table they
already hold; a background thread encodes and writes it. At most `max_rows` rows are kept: a
batch larger than that is not kept, and beyond it the oldest batches' cells go (counted).
Batches the monitoring retention removed lose their cells too.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from sluice_common.database import utcnow
from trainer.monitoring import store as monitoring_store

log = logging.getLogger(__name__)
FLUSH_SECONDS = 0.5
MAX_QUEUED_ROWS = 1_000_000  # a stalled database must not hold unbounded memory
# A batch's monitoring record is written by another thread (maybe another worker): cells whose
# batch is not recorded are removed only once it would have been.
ORPHAN_AFTER = timedelta(minutes=10)
PRUNE_SECONDS = 60.0
# Compression pays on large batches only: a one-row table took ~2 ms of CPU to write with zstd
# (a codec call per buffer, on Arrow's thread pool) against ~30 us without, and came out larger
# (3.7 KB against 2.8 KB). Readers take either: the stream says how each batch is written.
COMPRESS_FROM_BYTES = 64 * 1024

metadata = sa.MetaData()
prod_rows = sa.Table(
    "monitoring_prod_rows",
    metadata,
    sa.Column("batch_id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("cells", sa.LargeBinary, nullable=False),
    sa.Index("ix_monitoring_prod_rows_created", "created_at"),
)


def as_arrow(cells) -> pa.Table:
    """Cells as the prod phase holds them (Arrow, a DataFrame, or a dict of column lists)."""
    if isinstance(cells, pa.Table):
        return cells
    if isinstance(cells, dict):
        return pa.Table.from_pydict(cells)
    return pa.Table.from_pandas(cells, preserve_index=False)


def encode(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    compression = "zstd" if table.nbytes >= COMPRESS_FROM_BYTES else None
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.BufferReader(data)).read_all()


class ProdRows:
    """The queue, its writer thread, retention, and the reads behind retraining."""

    def __init__(self, engine: sa.Engine, max_rows: int, flush_seconds: float = FLUSH_SECONDS):
        self.engine = engine
        self.max_rows = max_rows
        self.flush_seconds = flush_seconds
        for attempt in range(20):  # workers starting together race to create the table
            try:
                metadata.create_all(engine, checkfirst=True)
                break
            except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError):
                if attempt == 19:
                    raise
                time.sleep(0.05 * (attempt + 1))
        self.not_kept = {"batches": 0, "rows": 0}  # this process's, since it started
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued = self._done = self._queued_rows = 0
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._pid = None
        self._estimate: int | None = None  # rows kept, as this process last counted them
        self._last_prune = 0.0
        atexit.register(self.flush, 5.0)

    def keep(self, batch_id: str, model: str, created_at: datetime, cells, n_rows: int) -> None:
        """Queue a batch's cells; never blocks (over the limits it is counted, not kept)."""
        with self._lock:
            if n_rows > self.max_rows or self._queued_rows + n_rows > MAX_QUEUED_ROWS:
                self.not_kept["batches"] += 1
                self.not_kept["rows"] += n_rows
                return
            self._queued_rows += n_rows
            self._queued += 1
        if self._thread is None or self._pid != os.getpid():  # gunicorn forked this worker
            with self._lock:
                if self._thread is None or self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._thread = threading.Thread(
                        target=self._write_forever, name="prod-rows-writer", daemon=True
                    )
                    self._thread.start()
        self._queue.put((batch_id, model, created_at, cells, n_rows))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until what this process queued is written (or counted as not kept)."""
        with self._lock:
            target = self._queued
            return self._idle.wait_for(lambda: self._done >= target, timeout)

    def _write_forever(self) -> None:
        while True:
            entries = [self._queue.get()]
            time.sleep(self.flush_seconds)
            while True:
                try:
                    entries.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                written = self._write(entries)
                # The whole-table checks run once a minute, or when this process's estimate of
                # the rows kept passes the limit (other workers' writes are found at the former).
                self._estimate = None if self._estimate is None else self._estimate + written
                stale = time.monotonic() - self._last_prune > PRUNE_SECONDS
                if self._estimate is None or self._estimate > self.max_rows or stale:
                    self.prune()
            except Exception:  # the database is down: these cells are lost, and counted
                log.exception("prod rows: %d batches not kept", len(entries))
                with self._lock:
                    self.not_kept["batches"] += len(entries)
                    self.not_kept["rows"] += sum(e[4] for e in entries)
            with self._lock:
                self._queued_rows -= sum(e[4] for e in entries)
                self._done += len(entries)
                self._idle.notify_all()

    def _write(self, entries: list) -> int:
        values = []
        for batch_id, model, created_at, cells, n_rows in entries:
            try:
                data = encode(as_arrow(cells))
            except (pa.ArrowException, ValueError, TypeError):  # mixed cells Arrow cannot type
                log.warning("prod rows of batch %s could not be encoded; not kept", batch_id)
                with self._lock:
                    self.not_kept["batches"] += 1
                    self.not_kept["rows"] += n_rows
                continue
            values.append(
                {
                    "batch_id": batch_id,
                    "model": model,
                    "created_at": created_at,
                    "n_rows": n_rows,
                    "cells": data,
                }
            )
        if values:
            with self.engine.begin() as conn:
                conn.execute(prod_rows.insert(), values)
        return sum(v["n_rows"] for v in values)

    def prune(self) -> int:
        """Retention: cells of batches monitoring no longer keeps go, then the oldest beyond
        max_rows; the batches removed."""
        batches = monitoring_store.batches
        removed, expired = 0, []
        self._last_prune = time.monotonic()
        with self.engine.begin() as conn:
            gone = sa.select(batches.c.batch_id).where(batches.c.predictions.is_not(None))
            orphans = prod_rows.delete().where(
                prod_rows.c.batch_id.not_in(gone), prod_rows.c.created_at < utcnow() - ORPHAN_AFTER
            )
            removed += conn.execute(orphans).rowcount
            kept = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(prod_rows.c.n_rows), 0))
            ).scalar_one()
            excess = int(kept) - self.max_rows
            self._estimate = min(int(kept), self.max_rows)
            if excess <= 0:
                return removed
            oldest = conn.execute(
                sa.select(prod_rows.c.batch_id, prod_rows.c.n_rows)
                .order_by(prod_rows.c.created_at)
                .limit(100_000)
            )
            for batch_id, n_rows in oldest:
                if excess <= 0:
                    break
                expired.append(batch_id)
                excess -= n_rows
            for start in range(0, len(expired), 500):
                chunk = expired[start : start + 500]
                conn.execute(prod_rows.delete().where(prod_rows.c.batch_id.in_(chunk)))
        return removed + len(expired)

    # -- reading ---------------------------------------------------------------------------

    def labels_of(self, model: str) -> dict[str, tuple[str, list[int], list[str]]]:
        """Every label of the model's batches: batch_id -> (version, rows, labels)."""
        batches, labels = monitoring_store.batches, monitoring_store.labels
        query = (
            sa.select(batches.c.batch_id, batches.c.version, labels.c.row, labels.c.label)
            .select_from(labels.join(batches, labels.c.batch_id == batches.c.batch_id))
            .where(batches.c.model == model)
            .order_by(batches.c.created_at, batches.c.batch_id, labels.c.row)
        )
        found: dict[str, tuple[str, list[int], list[str]]] = {}
        with self.engine.connect() as conn:
            for batch_id, version, row, label in conn.execute(query):
                entry = found.setdefault(batch_id, (version, [], []))
                entry[1].append(row)
                entry[2].append(label)
        return found

    def label_count(self, model: str, with_cells: bool = False) -> int:
        """How many rows of the model's batches have a label (and kept cells)."""
        batches, labels = monitoring_store.batches, monitoring_store.labels
        joined = labels.join(batches, labels.c.batch_id == batches.c.batch_id)
        if with_cells:
            joined = joined.join(prod_rows, prod_rows.c.batch_id == labels.c.batch_id)
        query = sa.select(sa.func.count()).select_from(joined).where(batches.c.model == model)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def label_counts(self, model: str) -> dict[str, tuple[int, str]]:
        """Per version of the model: how many of the rows it answered have a label and kept
        cells, and when the latest of those labels was received or changed (ISO)."""
        batches, labels = monitoring_store.batches, monitoring_store.labels
        joined = labels.join(batches, labels.c.batch_id == batches.c.batch_id).join(
            prod_rows, prod_rows.c.batch_id == labels.c.batch_id
        )
        query = (
            sa.select(batches.c.version, sa.func.count(), sa.func.max(labels.c.received_at))
            .select_from(joined)
            .where(batches.c.model == model)
            .group_by(batches.c.version)
        )
        with self.engine.connect() as conn:
            return {
                str(version): (int(n), latest.isoformat(timespec="microseconds"))
                for version, n, latest in conn.execute(query)
            }

    def cells_of(self, batch_ids: list[str]) -> dict[str, pa.Table]:
        """The kept cells of these batches (those not kept are absent)."""
        found = {}
        with self.engine.connect() as conn:
            for start in range(0, len(batch_ids), 200):
                chunk = batch_ids[start : start + 200]
                query = sa.select(prod_rows.c.batch_id, prod_rows.c.cells).where(
                    prod_rows.c.batch_id.in_(chunk)
                )
                for batch_id, data in conn.execute(query):
                    found[batch_id] = decode(data)
        return found


def take(table: pa.Table, rows: list[int]) -> pa.Table:
    """The given rows of a batch's cells, in that order."""
    return table.take(pa.array(np.asarray(rows, dtype="int64")))
