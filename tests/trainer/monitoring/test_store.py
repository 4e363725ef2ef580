"""The monitoring store (trainer/monitoring/store.py) on real databases: SQLite in a temp dir
and a real PostgreSQL server (testkit/postgres.py), every store test on both."""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import threading
import time
from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from testkit.postgres import (
    PostgresUnavailable,
    ensure_bindir,
    running_postgres,
)
from trainer.monitoring import store as stores
from trainer.monitoring.profile import batch_counts, build_profile
from trainer.monitoring.store import (
    SCHEMA_VERSION,
    BatchRecord,
    MonitoringStore,
    create_schema,
    decode_array,
    encode_array,
    make_engine,
    utcnow,
)

SPEC = {
    "inputs": [
        {"name": "x", "kind": "numeric"},
        {"name": "c", "kind": "categorical", "categories": ["a", "b", "c"]},
    ],
    "task": "classification",
    "target": "y",
    "classes": ["no", "yes"],
}
# One fixed minute per test run: every record of a test lands in the same window row.
MINUTE = utcnow().replace(second=0, microsecond=0)


def tiny_profile() -> dict:
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.normal(size=500), rng.integers(0, 3, 500)]).astype("float32")
    proba = rng.dirichlet([1, 1], 100)
    return build_profile(SPEC, train, proba.argmax(1), proba, {"log_loss": 0.6}, "log_loss")


PROFILE = tiny_profile()


def batch(
    rows: int = 3,
    *,
    model: str = "m",
    version: str = "1",
    created_at=None,
    predictions: np.ndarray | None = None,
    profile: dict | None = None,
    seed: int = 0,
) -> BatchRecord:
    """A batch with real counts (batch_counts of random rows) and its predictions (class
    probabilities unless given)."""
    rng = np.random.default_rng(seed)
    matrix = np.column_stack([rng.normal(size=rows), rng.integers(0, 3, rows)]).astype("float32")
    if predictions is None:
        predictions = rng.dirichlet([1, 1], rows).astype("float32")
    classes = np.argmax(predictions, axis=1) if predictions.ndim == 2 else np.zeros(rows)
    counts = batch_counts(PROFILE, matrix, {}, classes.astype("float64"))
    return BatchRecord(
        batch_id=secrets.token_hex(16),
        model=model,
        version=version,
        created_at=created_at or MINUTE + timedelta(seconds=int(rng.integers(0, 59))),
        n_rows=rows,
        counts=counts,
        predictions=predictions,
        profile=profile,
    )


def summed(records: list[BatchRecord]) -> dict:
    """The oracle for a window: every count list summed element-wise with numpy."""
    features = {}
    for name in records[0].counts["features"]:
        parts = [r.counts["features"][name] for r in records]
        features[name] = {key: np.sum([p[key] for p in parts], axis=0).tolist() for key in parts[0]}
    predicted = [r.counts["prediction"] for r in records]
    return {
        "rows": sum(r.n_rows for r in records),
        "features": features,
        "prediction": {
            key: np.sum([p[key] for p in predicted], axis=0).tolist() for key in predicted[0]
        },
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def new_url(request, tmp_path):
    """A function giving the URL of a new, empty database on this test's backend."""

    server = request.getfixturevalue("postgres") if request.param == "postgresql" else None

    def make() -> str:
        name = f"m_{secrets.token_hex(6)}"
        if server is None:
            return f"sqlite:///{tmp_path / name}.db"
        return server.create_database(name)

    return make


@pytest.fixture
def url(new_url) -> str:
    return new_url()


@pytest.fixture
def make_store():
    """MonitoringStore(...), its engine's connections closed after the test."""
    made = []

    def make(url: str, **kwargs) -> MonitoringStore:
        store = MonitoringStore(url, **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.flush(timeout=5)
        store.engine.dispose()


@contextlib.contextmanager
def write_lock(url: str):
    """Another connection holding the store's tables, so that the writer waits (a stalled
    database)."""
    if url.startswith("sqlite"):
        raw = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        raw.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            raw.execute("ROLLBACK")
            raw.close()
        return
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("LOCK TABLE monitoring_batches IN ACCESS EXCLUSIVE MODE"))
            try:
                yield
            finally:
                conn.rollback()
    finally:
        engine.dispose()


def window_of(store: MonitoringStore, model: str = "m", version: str = "1", **kwargs):
    return store.window(model, version, **kwargs)


# -- the schema -----------------------------------------------------------------------------


def test_create_schema_twice_and_two_stores_on_one_url_are_fine(url, make_store):
    first = make_store(url)
    create_schema(first.engine)
    second = make_store(url)
    create_schema(second.engine)
    assert first.writer_id != second.writer_id
    with first.engine.connect() as conn:
        rows = conn.execute(sa.select(stores.meta)).all()
        tables = set(sa.inspect(conn).get_table_names())
    assert [tuple(row) for row in rows] == [("monitoring", SCHEMA_VERSION)]
    assert {
        "monitoring_profiles",
        "monitoring_batches",
        "monitoring_windows",
        "monitoring_labels",
    } <= tables
    # Both work side by side.
    one, two = batch(2, seed=1), batch(3, seed=2)
    first.record(one)
    second.record(two)
    assert first.flush() and second.flush()
    assert window_of(first)[1:3] == window_of(second)[1:3] == (2, 5)


def test_stores_created_at_once_on_a_fresh_database_all_start(new_url):
    errors = []
    for _ in range(3):
        url = new_url()
        barrier = threading.Barrier(4)
        engines = []

        def start(url=url, barrier=barrier, engines=engines):
            barrier.wait()
            try:
                engines.append(MonitoringStore(url).engine)
            except Exception as error:  # what a booting worker would die of
                errors.append(f"{type(error).__name__}: {str(error)[:120]}")

        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for engine in engines:
            engine.dispose()
    assert errors == []


def test_a_schema_from_a_newer_version_is_refused_clearly(url, make_store):
    store = make_store(url)
    with store.engine.begin() as conn:
        conn.execute(stores.meta.update().values(version=SCHEMA_VERSION + 1))
    with pytest.raises(RuntimeError) as error:
        MonitoringStore(url)
    message = str(error.value)
    assert f"newer Sluice (schema {SCHEMA_VERSION + 1})" in message
    assert f"knows schema {SCHEMA_VERSION}" in message


# -- writing and reading --------------------------------------------------------------------


def test_records_are_queued_and_show_up_in_window_and_batch_after_flush(url, make_store):
    store = make_store(url, flush_seconds=0.5)
    records = [batch(4, seed=i, profile=PROFILE if i == 0 else None) for i in range(3)]
    for record in records:
        store.record(record)
    assert store.batch(records[0].batch_id) is None  # queued: the writer waits flush_seconds
    assert store.flush(timeout=10)
    total, n_batches, n_rows, minutes = window_of(store)
    assert (n_batches, n_rows) == (3, 12)
    assert total == summed(records)
    # An open window spanning minutes is read by minute; one spanning days, by hour.
    assert [minute for minute, _ in minutes] == [MINUTE]
    total, n_batches, _, minutes = window_of(store, since=MINUTE - timedelta(days=2))
    assert n_batches == 3 and [minute for minute, _ in minutes] == [MINUTE.replace(minute=0)]
    for record in records:
        row = store.batch(record.batch_id)
        assert (row.model, row.version, row.n_rows) == ("m", "1", 4)
        assert row.created_at == record.created_at
        assert np.array_equal(decode_array(row.predictions), record.predictions)
    assert store.profile("m", "1") == PROFILE
    assert store.models() == ["m"] and store.latest_version("m") == "1"
    assert store.scored_rows("m", "1") == (12, 0)
    info = store.batches_info([r.batch_id for r in records] + ["0" * 32])
    assert set(info) == {r.batch_id for r in records}
    assert info[records[1].batch_id] == ("m", "1", 4, True, records[1].created_at)
    assert store.dropped == {"batches": 0, "rows": 0} and store.write_errors == 0


def test_windows_are_chosen_by_minute_and_versions_sort_as_numbers(url, make_store):
    store = make_store(url, flush_seconds=0.05)
    early = [batch(2, seed=1, created_at=MINUTE - timedelta(minutes=10, seconds=-5))]
    middle = [batch(3, seed=2, created_at=MINUTE - timedelta(minutes=5, seconds=-30))]
    late = [batch(5, seed=3, created_at=MINUTE + timedelta(seconds=40))]
    for record in early + middle + late:
        store.record(record)
    for version in ("10", "9", "2"):
        store.record(batch(1, version=version, profile=PROFILE, created_at=MINUTE))
    assert store.flush()
    assert window_of(store)[1:3] == (3, 10)
    since = MINUTE - timedelta(minutes=5, seconds=-59)  # within the middle minute
    total, n_batches, n_rows, _ = window_of(store, since=since)
    assert (n_batches, n_rows) == (2, 8) and total == summed(middle + late)
    total, n_batches, _, _ = window_of(store, until=MINUTE - timedelta(minutes=1))
    assert n_batches == 2 and total == summed(early + middle)
    assert window_of(store, since=MINUTE + timedelta(minutes=1))[0] is None
    assert store.versions("m") == ["2", "9", "10"]


def test_two_stores_on_one_url_writing_the_same_minute_add_up(url, make_store):
    stores_ = [make_store(url, flush_seconds=0.02), make_store(url, flush_seconds=0.02)]
    assert stores_[0].writer_id != stores_[1].writer_id
    written = [[], []]

    def worker(i: int) -> None:
        for k in range(40):
            record = batch(1 + k % 5, seed=100 * i + k)
            written[i].append(record)
            stores_[i].record(record)
            if k % 7 == 0:
                time.sleep(0.03)  # several writes: the window row is updated, not replaced

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(store.flush(timeout=20) for store in stores_)
    everything = written[0] + written[1]
    for store in stores_:
        total, n_batches, n_rows, minutes = window_of(store)
        assert n_batches == 80 and n_rows == sum(r.n_rows for r in everything)
        assert total == summed(everything)
        # One row per writer in the store, read back as one minute holding both.
        assert [minute for minute, _ in minutes] == [MINUTE] and minutes[0][1] == total
    with stores_[0].engine.connect() as conn:
        rows = conn.execute(
            sa.select(sa.func.count())
            .select_from(stores.windows)
            .where(stores.windows.c.seconds == stores.MINUTE)
        ).scalar_one()
    assert rows == 2
    assert stores_[0].scored_rows("m", "1")[0] == sum(r.n_rows for r in everything)


# -- a database that stalls or goes away ----------------------------------------------------


def test_record_never_waits_for_a_stalled_database_and_a_full_queue_drops_counted(
    url, make_store, monkeypatch
):
    monkeypatch.setattr(stores, "MAX_QUEUED_ROWS", 100)
    store = make_store(url, flush_seconds=0.05)
    kept, lost = [batch(60, seed=1), batch(30, seed=2)], batch(20, seed=3)
    with write_lock(url):
        started = time.perf_counter()
        for record in [*kept, lost]:
            store.record(record)
        elapsed = time.perf_counter() - started
        assert elapsed < 0.2, elapsed
        assert store.dropped == {"batches": 1, "rows": 20}  # 110 rows queued > 100
        assert store.flush(timeout=0.5) is False  # the writer is still waiting
    assert store.flush(timeout=30)
    assert window_of(store)[1:3] == (2, 90)
    assert store.batch(lost.batch_id) is None and store.batch(kept[0].batch_id) is not None
    assert store.write_errors == 0


@pytest.fixture(scope="module")
def own_server():
    """A PostgreSQL server of this module's own, to stop and start."""
    try:
        ensure_bindir()
    except PostgresUnavailable as error:
        pytest.skip(str(error))
    with running_postgres() as server:
        yield server


def lose_a_write(server, make_store):
    """A store writes a batch, the server stops, a batch is recorded (and lost), the server
    comes back and a third batch is written."""
    store = make_store(server.create_database(f"down_{secrets.token_hex(6)}"), flush_seconds=0.05)
    first, lost, last = batch(2, seed=1), batch(5, seed=2), batch(7, seed=3)
    store.record(first)
    assert store.flush()
    server.stop()
    try:
        started = time.perf_counter()
        store.record(lost)
        elapsed = time.perf_counter() - started
        assert store.flush(timeout=30)  # the write failed; it did not hang
    finally:
        server.start()
    store.record(last)
    assert store.flush(timeout=30)
    return store, elapsed, (first, lost, last)


def test_record_never_blocks_while_the_database_is_down_and_the_loss_is_counted(
    own_server, make_store
):
    store, elapsed, (first, lost, last) = lose_a_write(own_server, make_store)
    assert elapsed < 0.2, elapsed
    assert store.dropped == {"batches": 1, "rows": 5} and store.write_errors == 1
    assert store.batch(lost.batch_id) is None
    assert store.batch(first.batch_id) is not None and store.batch(last.batch_id) is not None
    assert store.scored_rows("m", "1") == (9, 0)


def test_after_a_lost_write_the_window_counts_only_what_was_stored(own_server, make_store):
    store, _, (first, lost, last) = lose_a_write(own_server, make_store)
    stored = store.scored_rows("m", "1")[0]
    assert stored == 9
    total, n_batches, n_rows, _ = window_of(store)
    assert (n_batches, n_rows) == (2, stored)
    assert total == summed([first, last])


def test_a_write_whose_commit_fails_leaves_the_windows_of_every_writer_right(url, make_store):
    a, b = make_store(url, flush_seconds=0.05), make_store(url, flush_seconds=0.05)
    fail = {"left": 1}

    @sa.event.listens_for(a.engine, "commit")
    def _connection_lost_at_commit(conn):
        if fail["left"]:
            fail["left"] -= 1
            raise sa.exc.OperationalError("COMMIT", {}, ConnectionError("connection lost"))

    lost, other, later = batch(2, seed=1), batch(5, seed=2), batch(7, seed=3)
    a.record(lost)
    assert a.flush() and a.dropped == {"batches": 1, "rows": 2}
    b.record(other)
    assert b.flush()
    a.record(later)
    assert a.flush() and a.dropped == {"batches": 1, "rows": 2}
    assert a.scored_rows("m", "1")[0] == 12
    total, n_batches, n_rows, _ = window_of(a)
    assert (n_batches, n_rows) == (2, 12)
    assert total == summed([other, later])


def test_two_workers_writing_a_new_versions_first_batches_at_once_lose_nothing(url, make_store):
    a, b = make_store(url, flush_seconds=0.05), make_store(url, flush_seconds=0.05)

    @sa.event.listens_for(b.engine, "before_cursor_execute")
    def _slow_batch_insert(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO monitoring_batches"):
            time.sleep(1.0)  # b's profile insert stays uncommitted a while (a large write)

    b.record(batch(3, seed=1, profile=PROFILE))
    time.sleep(0.3)  # b's transaction has inserted the profile
    a.record(batch(4, seed=2, profile=PROFILE))
    assert b.flush() and a.flush()
    assert a.dropped == b.dropped == {"batches": 0, "rows": 0}
    assert window_of(a)[1:3] == (2, 7)
    assert a.profile("m", "1") == PROFILE


# -- labels ---------------------------------------------------------------------------------


def test_labels_posted_again_change_nothing_and_a_changed_label_is_counted(url, make_store):
    store = make_store(url, flush_seconds=0.05)
    one, two = batch(4, seed=1), batch(3, seed=2)
    store.record(one)
    store.record(two)
    assert store.flush()
    labels = [(one.batch_id, 0, "yes"), (one.batch_id, 2, "no"), (two.batch_id, 1, "no")]
    assert store.save_labels(labels) == {"new": 3, "unchanged": 0, "changed": 0}
    assert store.save_labels(labels) == {"new": 0, "unchanged": 3, "changed": 0}
    again = [(one.batch_id, 0, "yes"), (one.batch_id, 2, "yes"), (one.batch_id, 3, "no")]
    assert store.save_labels(again) == {"new": 1, "unchanged": 1, "changed": 1}
    assert store.scored_rows("m", "1") == (7, 4)
    assert len(list(store.labelled("m", "1"))) == 2  # both batches have labels
    found = list(store.labelled("m", "1", batch_id=one.batch_id))
    assert len(found) == 1
    created_at, kept, texts = found[0]
    assert created_at == one.created_at and texts == ["yes", "yes", "no"]
    assert np.array_equal(kept, one.predictions[[0, 2, 3]])
    ((_, kept, texts),) = store.labelled("m", "1", batch_id=two.batch_id)
    assert texts == ["no"] and np.array_equal(kept, two.predictions[[1]])


# -- retention ------------------------------------------------------------------------------


def test_retention_rows_drops_the_oldest_predictions_and_their_labels_first(url, make_store):
    writer = make_store(url, flush_seconds=0.05)
    start = utcnow() - timedelta(hours=1)
    records = [batch(10, seed=i, created_at=start + timedelta(minutes=i)) for i in range(5)]
    for i in (3, 0, 4, 1, 2):  # not in time order
        writer.record(records[i])
    assert writer.flush()
    writer.save_labels([(records[0].batch_id, 1, "yes"), (records[4].batch_id, 2, "no")])
    pruner = make_store(url, retention_rows=25)
    pruner.prune()
    info = pruner.batches_info([r.batch_id for r in records])
    kept = [info[r.batch_id][3] for r in records]
    assert kept == [False, False, False, True, True]  # the newest 20 rows fit in 25
    assert [info[r.batch_id][2] for r in records] == [10] * 5  # the batches themselves stay
    assert pruner.scored_rows("m", "1") == (50, 1)  # batch 0's label went with its predictions
    ((created_at, _, texts),) = pruner.labelled("m", "1")
    assert created_at == records[4].created_at and texts == ["no"]
    assert pruner.window("m", "1")[1:3] == (5, 50)
    pruner.prune()  # nothing more to do
    assert [pruner.batches_info([r.batch_id])[r.batch_id][3] for r in records] == kept


def test_retention_days_removes_old_batches_their_labels_and_windows(url, make_store):
    writer = make_store(url, retention_days=1000, flush_seconds=0.05)
    now = utcnow()
    ages = [100, 100, 40, 29, 0]
    records = [
        batch(2 + i, seed=i, created_at=now - timedelta(days=days, minutes=1))
        for i, days in enumerate(ages)
    ]
    for record in records:
        writer.record(record)
    assert writer.flush()
    writer.save_labels([(r.batch_id, 0, "yes") for r in records])
    assert writer.scored_rows("m", "1") == (sum(r.n_rows for r in records), 5)
    pruner = make_store(url, retention_days=30)
    pruner.prune()
    remaining = pruner.batches_info([r.batch_id for r in records])
    assert set(remaining) == {records[3].batch_id, records[4].batch_id}
    assert pruner.scored_rows("m", "1") == (records[3].n_rows + records[4].n_rows, 2)
    total, n_batches, n_rows, minutes = pruner.window("m", "1")
    assert (n_batches, n_rows) == (2, records[3].n_rows + records[4].n_rows)
    assert total == summed(records[3:])
    assert len(minutes) == 2
    with pruner.engine.connect() as conn:
        labelled = conn.execute(sa.select(stores.labels.c.batch_id)).scalars().all()
    assert sorted(labelled) == sorted([records[3].batch_id, records[4].batch_id])


# -- predictions round-trip -----------------------------------------------------------------


def awkward_predictions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    proba = rng.dirichlet([0.3, 1, 3], 50).astype("float32")
    proba[0] = [np.float32(1e-45), np.nextafter(np.float32(1), np.float32(0)), 0.0]
    proba[1] = [np.float32(1) / 3, np.float32(2) / 3, np.float32(np.finfo("float32").tiny)]
    values = rng.normal(0, 1e6, 50)
    values[:6] = [np.pi, -0.0, 5e-324, np.finfo("float64").max, np.nan, -np.inf]
    return proba, values


def test_predictions_round_trip_bit_for_bit_through_the_npy_encoding():
    for original in awkward_predictions():
        decoded = decode_array(encode_array(original))
        assert decoded.dtype == original.dtype and decoded.shape == original.shape
        assert decoded.tobytes() == original.tobytes()
    fortran = np.asfortranarray(awkward_predictions()[0])
    assert decode_array(encode_array(fortran)).tobytes() == np.ascontiguousarray(fortran).tobytes()


def test_predictions_round_trip_bit_for_bit_through_the_database(url, make_store):
    store = make_store(url, flush_seconds=0.05)
    proba, values = awkward_predictions()
    classified = batch(50, seed=1, predictions=proba)
    regressed = batch(50, seed=2, version="2", predictions=values)
    store.record(classified)
    store.record(regressed)
    assert store.flush()
    for record in (classified, regressed):
        stored = decode_array(store.batch(record.batch_id).predictions)
        assert stored.dtype == record.predictions.dtype
        assert stored.shape == record.predictions.shape
        assert stored.tobytes() == record.predictions.tobytes()
    store.save_labels([(classified.batch_id, 0, "yes"), (classified.batch_id, 1, "no")])
    ((_, kept, _),) = store.labelled("m", "1")
    assert kept.tobytes() == proba[[0, 1]].tobytes()
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect() as conn:
            data_type = conn.execute(
                sa.text(
                    "SELECT data_type FROM information_schema.columns "
                    "WHERE table_name = 'monitoring_batches' AND column_name = 'predictions'"
                )
            ).scalar_one()
        assert data_type == "bytea"
    else:
        columns = sa.inspect(store.engine).get_columns("monitoring_batches")
        column = next(c for c in columns if c["name"] == "predictions")
        assert isinstance(column["type"], sa.types.LargeBinary)


def test_sqlite_engines_use_wal_and_wait_for_other_writers(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        engine.dispose()


def test_flush_waits_for_what_was_queued_before_it_not_for_steady_traffic(tmp_path):
    import threading

    store = MonitoringStore(f"sqlite:///{tmp_path / 'steady.db'}", flush_seconds=0.2)
    stop = threading.Event()

    def traffic():
        seed = 0
        while not stop.is_set():
            seed += 1
            store.record(batch(1, seed=seed))
            time.sleep(0.01)

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        assert store.flush(timeout=5)
        assert time.monotonic() - started < 1.5  # one or two writer rounds, not the timeout
    finally:
        stop.set()
        sender.join()


def test_until_on_a_minute_boundary_ends_there(url, make_store):
    store = make_store(url, flush_seconds=0.05)
    before = batch(2, seed=1, created_at=MINUTE - timedelta(seconds=30))
    at = batch(3, seed=2, created_at=MINUTE + timedelta(seconds=5))
    store.record(before)
    store.record(at)
    assert store.flush()
    _, n_batches, n_rows, _ = window_of(store, since=MINUTE - timedelta(minutes=5), until=MINUTE)
    assert (n_batches, n_rows) == (1, 2)
    _, n_batches, _, _ = window_of(
        store, since=MINUTE - timedelta(minutes=5), until=MINUTE + timedelta(seconds=1)
    )
    assert n_batches == 2


# -- migrations ------------------------------------------------------------------------------


def make_schema_1_store(url: str) -> None:
    """A store as Sluice's first monitoring release left it: its tables and indexes only,
    recorded as schema 1, holding one batch. Built by hand (independent of today's code)."""
    engine = sa.create_engine(url)
    old = sa.MetaData()
    for table in stores.metadata.sorted_tables:
        copy = table.to_metadata(old)
        for index in list(copy.indexes):
            if index.name in ("ix_monitoring_batches_created", "ix_monitoring_windows_minute"):
                copy.indexes.discard(index)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(old.tables["monitoring_schema"].insert().values(name="monitoring", version=1))
        conn.execute(
            old.tables["monitoring_batches"]
            .insert()
            .values(
                batch_id="0" * 32,
                model="m",
                version="1",
                created_at=utcnow(),
                n_rows=3,
                counts="{}",
                predictions=None,
            )
        )
    engine.dispose()


def index_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {
            index["name"]
            for table in ("monitoring_batches", "monitoring_windows")
            for index in inspector.get_indexes(table)
        }
    finally:
        engine.dispose()


def schema_version(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT version FROM monitoring_schema")).scalar_one()
    finally:
        engine.dispose()


def test_a_schema_1_store_is_upgraded_in_place_keeping_its_data(new_url):
    url = new_url()
    make_schema_1_store(url)
    assert "ix_monitoring_batches_created" not in index_names(url)
    store = MonitoringStore(url)
    try:
        assert schema_version(url) == SCHEMA_VERSION == 2
        assert {"ix_monitoring_batches_created", "ix_monitoring_windows_minute"} <= index_names(url)
        with store.engine.connect() as conn:
            kept = conn.execute(sa.select(stores.batches.c.batch_id)).scalars().all()
        assert kept == ["0" * 32]
        store.prune()  # the indexed queries run
    finally:
        store.engine.dispose()
    # Starting again is a no-op: same version, same indexes, no error.
    again = MonitoringStore(url)
    again.engine.dispose()
    assert schema_version(url) == 2


def test_workers_starting_together_upgrade_an_old_store_once(new_url):
    url = new_url()
    make_schema_1_store(url)
    barrier, errors, engines = threading.Barrier(4), [], []

    def start():
        barrier.wait()
        try:
            engines.append(MonitoringStore(url).engine)
        except Exception as error:
            errors.append(f"{type(error).__name__}: {str(error)[:160]}")

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for engine in engines:
        engine.dispose()
    assert errors == []
    assert schema_version(url) == 2


def test_a_step_cut_off_halfway_is_rerun(new_url):
    """The index of step 2 already made, the version still 1 (a crash between the two)."""
    url = new_url()
    make_schema_1_store(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        next(i for i in stores.batches.indexes if i.name == "ix_monitoring_batches_created").create(
            conn
        )
    engine.dispose()
    MonitoringStore(url).engine.dispose()
    assert schema_version(url) == 2
    assert "ix_monitoring_windows_minute" in index_names(url)
