"""The pure parts of retraining: stored tables keep their digest, the combined table of the
champion's rows and the labelled prod rows, the retrain options, and the prod rows kept in
a real SQLite monitoring store (their limit, retention and the label join)."""

from __future__ import annotations

import secrets
import time
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from sluice_common.errors import ApiError
from trainer.lifecycle import retrain, training_rows
from trainer.lifecycle.registry import table_digest
from trainer.monitoring.prod_rows import ProdRows, take
from trainer.monitoring.store import BatchRecord, MonitoringStore, utcnow


def test_a_stored_table_reads_back_with_its_digest_and_a_changed_one_is_refused():
    table = pa.table({"x": ["1.5", None, "3"], "y": [1, 2, 3]}).replace_schema_metadata(
        {"pandas": "{}"}
    )
    digest = table_digest(table)
    data = training_rows.encode(table)
    assert training_rows.decode(data, digest).equals(table)
    assert table_digest(training_rows.decode(data)) == digest
    other = pa.table({"x": ["1.5", None, "4"], "y": [1, 2, 3]})
    with pytest.raises(training_rows.RowsUnavailable):
        training_rows.decode(training_rows.encode(other), digest)


def _trained(table, keys=True):
    return SimpleNamespace(
        table=table,
        split_keys=np.zeros(table.num_rows) if keys else None,
        n_train=table.num_rows - 1,
        n_valid=1,
    )


def test_rows_over_the_limit_or_on_a_cluster_are_not_kept_and_say_why():
    table = pa.table({"x": np.arange(300_000, dtype="float64")})  # 2.4 MB
    assert training_rows.not_kept_reason(_trained(table), 3) is None
    assert "TRAINING_ROWS_MAX_MB=2" in training_rows.not_kept_reason(_trained(table), 2)
    assert "TRAINING_ROWS_MAX_MB=0" in training_rows.not_kept_reason(_trained(table), 0)
    assert "Dask" in training_rows.not_kept_reason(_trained(table, keys=False), 3)
    data = training_rows.data_of(_trained(table), "d" * 16, None, "too big")
    assert data == {"digest": "d" * 16, "rows": 300_000, "kept": False, "not_kept": "too big"}
    assert training_rows.version_tags(data, None) == {training_rows.DATA_NOT_KEPT: "too big"}
    assert training_rows.version_tags(data, "runs:/r/x") == {training_rows.DATA_URI: "runs:/r/x"}


def test_combined_rows_keep_the_base_order_fill_missing_columns_and_unify_types():
    base = pa.table({"a": [1.5, 2.0], "b": ["x", "y"], "t": [0, 1]})
    part1 = pa.table({"a": ["7"], "t": pa.array(["1"], pa.string())})
    part2 = pa.table({"b": ["z"], "c": [True], "t": pa.array(["0"], pa.string())})
    combined = retrain.combine(base, [part1, part2])
    assert combined.column_names == ["a", "b", "t", "c"]
    assert combined.num_rows == 4
    # a: float and text -> text; b: text everywhere stays text; t: int and text -> text.
    assert combined.column("a").to_pylist() == ["1.5", "2", "7", None]
    assert combined.column("b").to_pylist() == ["x", "y", None, "z"]
    assert combined.column("t").to_pylist() == ["0", "1", "1", "0"]
    assert combined.column("c").to_pylist() == [None, None, None, True]
    same = retrain.combine(base, [pa.table({"a": [3.0], "b": ["q"], "t": [1]})])
    assert same.schema == base.schema and same.column("a").to_pylist() == [1.5, 2.0, 3.0]


@pytest.mark.parametrize(
    "body, promote",
    [(None, "auto"), ({}, "auto"), ({"promote": "never"}, "never")],
)
def test_retrain_options(body, promote):
    assert retrain.options(body) == promote


@pytest.mark.parametrize(
    "body, code",
    [
        ([], "not_a_json_object"),
        ("auto", "not_a_json_object"),
        (3, "not_a_json_object"),
        ({"promote": "always"}, "invalid_retrain_options"),
        ({"promote": "auto", "reason": "x"}, "invalid_retrain_options"),
    ],
)
def test_retrain_options_that_are_refused_say_what_to_send(body, code):
    with pytest.raises(ApiError) as caught:
        retrain.options(body)
    assert caught.value.code == code and caught.value.status == 400
    assert '"promote"' in caught.value.message


@pytest.fixture
def stores(tmp_path):
    store = MonitoringStore(f"sqlite:///{tmp_path / 'monitoring.db'}", flush_seconds=0.01)
    made = []

    def make(max_rows: int) -> ProdRows:
        kept = ProdRows(store.engine, max_rows, flush_seconds=0.01)
        made.append(kept)
        return kept

    yield store, make
    for kept in made:
        kept.flush(5)
    store.flush(5)
    store.engine.dispose()


def _batch(store, model, n_rows, version="1", created_at=None) -> str:
    batch_id = secrets.token_hex(16)
    store.record(
        BatchRecord(
            batch_id,
            model,
            version,
            created_at or utcnow(),
            n_rows,
            {"rows": n_rows, "features": {}},  # no feature counted: only the join matters here
            np.zeros(n_rows),
            None,
        )
    )
    store.flush(5)
    return batch_id


def test_prod_rows_are_kept_up_to_the_limit_oldest_first_and_labels_join_them(stores):
    store, make = stores
    kept = make(max_rows=10)
    start = utcnow() - timedelta(minutes=5)
    ids = []
    for i, n in enumerate((4, 4, 4)):
        batch_id = _batch(store, "m", n)
        cells = {"x": [f"{i}.{r}" for r in range(n)], "c": ["a"] * n}
        kept.keep(batch_id, "m", start + timedelta(seconds=i), cells, n)
        ids.append(batch_id)
    big = _batch(store, "m", 11)
    kept.keep(big, "m", utcnow(), {"x": ["1"] * 11}, 11)  # larger than the limit: not kept
    assert kept.flush(5)
    assert kept.not_kept == {"batches": 1, "rows": 11}
    # 12 rows > 10: the oldest batch went.
    assert set(kept.cells_of(ids + [big])) == {ids[1], ids[2]}
    store.save_labels([(ids[0], 1, "yes"), (ids[2], 3, "no"), (ids[2], 0, "yes")])
    labels = kept.labels_of("m")
    assert labels == {ids[0]: ("1", [1], ["yes"]), ids[2]: ("1", [0, 3], ["yes", "no"])}
    assert kept.label_count("m") == 3 and kept.label_count("m", with_cells=True) == 2
    assert kept.label_count("other") == 0
    rows = take(kept.cells_of([ids[2]])[ids[2]], [3, 0])
    assert rows.column("x").to_pylist() == ["2.3", "2.0"]


def test_labelled_rows_carry_their_label_and_say_what_was_skipped(stores):
    store, make = stores
    kept = make(max_rows=100)
    with_cells = _batch(store, "m", 3)
    kept.keep(with_cells, "m", utcnow(), pa.table({"x": ["1", "2", "3"], "t": ["?"] * 3}), 3)
    without = _batch(store, "m", 2)
    other = _batch(store, "m", 2, version="2")
    kept.keep(other, "m", utcnow(), {"x": ["8", "9"]}, 2)
    assert kept.flush(5)
    store.save_labels([(with_cells, 2, "b"), (without, 0, "a"), (other, 1, "a")])
    profiles = {"1": {"target": "t"}, "2": {"target": "other_column"}}
    fake = SimpleNamespace(profile=lambda model, version: profiles[version])
    found = retrain.labelled_rows(kept, fake, "m", "t", ["x"])
    assert found.rows == 1 and found.batches == 1
    assert found.parts[0].to_pylist() == [{"x": "3", "t": "b"}]
    report = found.report("1")
    assert report["skipped"]["cells_not_kept"]["rows"] == 1
    assert report["skipped"]["other_target"]["rows"] == 1
    assert "columns_dropped" not in report and "columns_missing" not in report


def test_labelled_rows_get_exactly_the_champion_inputs_and_count_what_was_dropped_or_empty(
    stores,
):
    store, make = stores
    kept = make(max_rows=100)
    old = _batch(store, "m", 4)  # answered by a version that read x and region
    kept.keep(old, "m", utcnow(), {"x": ["1", "2", "3", "4"], "region": ["n", "s", "e", "w"]}, 4)
    new = _batch(store, "m", 2)  # by one that read x and size
    kept.keep(new, "m", utcnow(), {"size": ["7", "8"], "x": ["5", "6"]}, 2)
    assert kept.flush(5)
    store.save_labels([(old, 0, "a"), (old, 3, "b"), (new, 0, "c"), (new, 1, "d")])
    fake = SimpleNamespace(profile=lambda model, version: {"target": "t"})
    found = retrain.labelled_rows(kept, fake, "m", "t", ["x", "size"])
    assert [p.to_pylist() for p in found.parts] == [
        [{"x": "1", "size": None, "t": "a"}, {"x": "4", "size": None, "t": "b"}],
        [{"x": "5", "size": "7", "t": "c"}, {"x": "6", "size": "8", "t": "d"}],
    ]
    report = found.report("3")
    assert report["columns_dropped"]["columns"] == {"region": 2}
    assert report["columns_dropped"]["rows"] == 2
    assert report["columns_missing"] == {
        "columns": {"size": 2},
        "rows": 2,
        "why": "inputs of the champion v3 these rows did not have: left empty",
    }
    base = pa.table({"x": [0.5], "size": [1.0], "t": ["a"]})
    table = retrain.combine(base, found.parts)
    assert table.column_names == ["x", "size", "t"]  # region never comes back
    assert table.column("size").to_pylist() == ["1", None, None, "7", "8"]


def test_a_retrain_needs_labels_for_the_champion_target_and_new_ones_since_its_last(stores):
    store, make = stores
    kept = make(max_rows=100)
    batch = _batch(store, "m", 3, version="2")
    kept.keep(batch, "m", utcnow(), {"x": ["1", "2", "3"]}, 3)
    assert kept.flush(5)
    store.save_labels([(batch, 0, "a"), (batch, 1, "b")])
    profiles = {"1": {"target": "t"}, "2": {"target": "other"}}
    monitor = SimpleNamespace(
        prod_rows=kept, store=SimpleNamespace(profile=lambda m, v: profiles[v])
    )
    plan = retrain.Plan("m", "1", "t", "classification", 2)
    with pytest.raises(ApiError) as refused:
        retrain.check_labels(plan, monitor, None)
    assert refused.value.code == "no_labels"
    assert "2 labelled prod row(s)" in refused.value.message
    assert "another target than 't'" in refused.value.message
    profiles["2"] = {"target": "t"}
    retrain.check_labels(plan, monitor, None)  # a champion trained on uploaded rows
    counts = kept.label_counts("m")
    stamp = retrain.stamp_of(counts, {"2": "t"}, "t")
    assert stamp.startswith("2 labels, latest ") and counts["2"][0] == 2
    with pytest.raises(ApiError) as refused:  # a retrain that read these very labels
        retrain.check_labels(plan, monitor, stamp)
    assert refused.value.code == "no_new_labels"
    assert "/feedback" in refused.value.message and stamp in refused.value.message
    store.save_labels([(batch, 1, "b")])  # the same label again: nothing new
    with pytest.raises(ApiError):
        retrain.check_labels(plan, monitor, stamp)
    store.save_labels([(batch, 1, "c")])  # a corrected label
    retrain.check_labels(plan, monitor, stamp)
    stamp = retrain.stamp_of(kept.label_counts("m"), {"2": "t"}, "t")
    store.save_labels([(batch, 2, "a")])  # a new one
    retrain.check_labels(plan, monitor, stamp)


def test_cells_of_batches_monitoring_no_longer_keeps_go_once_they_are_old(stores):
    store, make = stores
    kept = make(max_rows=100)
    recorded = _batch(store, "m", 1)
    kept.keep(recorded, "m", utcnow(), {"x": ["1"]}, 1)
    unrecorded_new = secrets.token_hex(16)  # its monitoring record may still be on its way
    kept.keep(unrecorded_new, "m", utcnow(), {"x": ["1"]}, 1)
    unrecorded_old = secrets.token_hex(16)
    kept.keep(unrecorded_old, "m", utcnow() - timedelta(hours=1), {"x": ["1"]}, 1)
    assert kept.flush(5)
    time.sleep(0.05)
    kept.prune()
    assert set(kept.cells_of([recorded, unrecorded_new, unrecorded_old])) == {
        recorded,
        unrecorded_new,
    }


def test_triggers_start_a_retrain_only_when_turned_on_and_labels_arrived_since_the_last():
    alert = {"status": "alert", "alerts": ["live log_loss 0.9 vs 0.4", "'size' drifted"]}
    asked = []

    def summary(found=alert):
        asked.append(1)
        return found

    assert retrain.trigger(0, False, 500, summary) is None
    assert retrain.trigger(100, False, 99, summary) is None
    assert retrain.trigger(100, False, 100, summary) == (
        "100 labels since the last retrain (RETRAIN_AFTER_LABELS=100)"
    )
    assert asked == []  # the summary is read only for the alert trigger
    assert retrain.trigger(0, True, 0, summary) is None and asked == []
    assert retrain.trigger(0, True, 3, summary) == (
        "monitoring alert: live log_loss 0.9 vs 0.4; 'size' drifted"
    )
    assert retrain.trigger(0, True, 3, lambda: {"status": "warning", "alerts": ["x"]}) is None
    assert retrain.trigger(100, True, 3, summary).startswith("monitoring alert")
