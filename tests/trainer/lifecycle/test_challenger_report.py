"""The challenger's report from a real (SQLite) monitoring store: labels pair the champion's and
the challenger's predictions row by row, whatever each model's class order, and only since the
challenge began; the scores match hand-computed ones."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from trainer.lifecycle.challenger_report import report
from trainer.monitoring import shadow_store
from trainer.monitoring.store import BatchRecord, MonitoringStore, utcnow

PROFILE = {"task": "classification", "classes": ["no", "yes"], "target": "y"}


def _store(tmp_path) -> MonitoringStore:
    return MonitoringStore(f"sqlite:///{tmp_path}/m.db", flush_seconds=0.01)


def _batch(store, batch_id, champion_proba, created):
    store.record(
        BatchRecord(batch_id, "m", "1", created, len(champion_proba), {}, champion_proba, PROFILE)
    )
    assert store.flush(5)


def test_rows_pair_by_batch_and_row_in_each_models_class_order(tmp_path):
    store = _store(tmp_path)
    started = utcnow() - timedelta(seconds=1)
    # Champion (classes no, yes): right on rows 0 and 2 of the labels below, wrong on 1 and 3.
    champion = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    # Challenger with its classes the other way round (yes, no): right on all four.
    challenger = np.array([[0.2, 0.8], [0.9, 0.1], [0.6, 0.4], [0.7, 0.3]])
    _batch(store, "a" * 32, champion, utcnow())
    shadow_store.write(
        store.engine,
        [
            shadow_store.shadow_row(
                "a" * 32,
                "m",
                "2",
                utcnow(),
                "scored",
                4,
                seconds=0.002,
                champion_seconds=0.001,
                classes=["yes", "no"],
                predictions=challenger,
            )
        ],
    )
    store.save_labels(
        [("a" * 32, 0, "no"), ("a" * 32, 1, "yes"), ("a" * 32, 2, "yes"), ("a" * 32, 3, "yes")]
    )
    answer = report(store, "m", "1", "2", started, None)
    assert answer["labelled_rows"] == 4 and answer["coverage"] == 1.0
    assert answer["champion_score"] == pytest.approx(0.5)
    assert answer["challenger_score"] == pytest.approx(1.0)
    assert answer["mcnemar"]["only_challenger_right"] == 2
    assert answer["decision"] == "continue"  # 4 rows decide nothing
    log_loss = report(store, "m", "1", "2", started, "log_loss")
    expected_champion = -np.mean(np.log([0.9, 0.2, 0.7, 0.4]))
    expected_challenger = -np.mean(np.log([0.8, 0.9, 0.6, 0.7]))
    assert log_loss["champion_score"] == pytest.approx(expected_champion)
    assert log_loss["challenger_score"] == pytest.approx(expected_challenger)
    assert answer["latency_ms"]["challenger"]["p50"] == pytest.approx(2.0)
    assert answer["latency_ms"]["champion"]["p50"] == pytest.approx(1.0)


def test_only_batches_since_the_start_count_and_skips_and_errors_are_reported(tmp_path):
    store = _store(tmp_path)
    old = utcnow() - timedelta(hours=1)
    _batch(store, "b" * 32, np.array([[0.9, 0.1]]), old)
    now = utcnow()
    rows = [
        shadow_store.shadow_row(
            "b" * 32,
            "m",
            "2",
            old,
            "scored",
            1,
            classes=["no", "yes"],
            predictions=np.array([[0.1, 0.9]]),
        ),
        shadow_store.shadow_row("c" * 32, "m", "2", now, "skipped", 7),
        shadow_store.shadow_row("d" * 32, "m", "2", now, "error", 3, error="ValueError: x"),
        shadow_store.shadow_row("e" * 32, "m", "2", now, "champion_error", 2),
    ]
    shadow_store.write(store.engine, rows)
    shadow_store.write(store.engine, rows[:1])  # written twice: kept once
    store.save_labels([("b" * 32, 0, "yes")])
    answer = report(store, "m", "1", "2", now - timedelta(seconds=5), None)
    assert answer["labelled_rows"] == 0  # the labelled batch is from before the start
    assert answer["batches"] == {"shadowed": 0, "skipped": 1, "rows_shadowed": 0}
    assert answer["errors"] == {
        "champion": 1,
        "challenger": 1,
        "last_challenger_error": "ValueError: x",
    }
    everything = report(store, "m", "1", "2", old - timedelta(seconds=1), None)
    assert everything["labelled_rows"] == 1 and everything["challenger_score"] == 1.0
