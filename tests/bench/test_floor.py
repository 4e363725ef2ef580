"""The speed-floor bench's pure pieces: verdicts, the table, the plain-XGBoost reproduction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench import floor_ref, floor_table
from bench.floor_data import TARGET, make_table
from trainer.fit.booster import booster_params, inner_split
from trainer.fit.config import TrainingConfig


@pytest.mark.parametrize(
    ("ratio", "op", "limit", "expected"),
    [
        (1.5, "<=", 1.5, "PASS"),
        (1.51, "<=", 1.5, "FAIL"),
        (1.0, ">=", 1.0, "PASS"),
        (0.99, ">=", 1.0, "FAIL"),
    ],
)
def test_verdict_at_and_past_the_limit(ratio, op, limit, expected):
    assert floor_table.verdict(ratio, op, limit) == expected


def test_verdict_refuses_an_unknown_comparison():
    with pytest.raises(ValueError):
        floor_table.meets(1.0, "<", 1.0)


def _results() -> dict:
    dev = {
        "rows": 1000,
        "sluice": [
            {
                "seconds": s,
                "booster_seconds": 1.0,
                "rounds": 50,
                "rows_train": 800,
                "stage_seconds": {"train": s - 0.5, "log_run": 0.25},
            }
            for s in (3.0, 4.0, 9.0)
        ],
        "plain": [
            {
                "train_seconds": t,
                "prepare_seconds": 0.1,
                "rounds": 48,
                "fit_rows": 680,
                "stop_rows": 120,
                "columns": 21,
            }
            for t in (2.0, 2.5, 1.0)
        ],
    }
    batch = {
        "rows": 1000,
        "sluice_seconds": [1.1, 1.2, 5.0],
        "booster_seconds": [1.0, 1.0, 1.0],
        "serve_seconds": [1.3, 1.2, 1.2],
        "steps": {"parse": 0.1, "inplace_predict": 0.5},
    }
    single = {
        "sluice": {"n": 10, "p50_ms": 4.0, "p99_ms": 12.0},
        "serve": {"n": 10, "p50_ms": 5.0, "p99_ms": 10.0},
    }
    meta = {
        "command": ".venv/bin/python -m bench.floor --quick",
        "mode": "quick",
        "git_commit": "0123456789abcdef",
        "cpus": 2,
        "started": "2026-12-08T00:00:00+00:00",
        "wall_seconds": 200.0,
        "loadavg_start": (1.0, 1.0, 1.0),
        "loadavg_end": (2.0, 1.5, 1.0),
    }
    return {"meta": meta, "shapes": {"standard": {"dev": dev, "batch": batch}}, "single": single}


def test_rows_take_medians_and_judge_each_target():
    rows = floor_table.build_rows(_results())
    compared = {r[0]: r for r in rows if r[5]}
    dev = compared["dev standard 1,000 rows: end to end vs xgboost.train"]
    assert dev[1:] == ["4.00 s", "2.00 s", "2.00x", "<= 1.5x", "FAIL"]
    batch = compared["prod batch standard 1,000 rows: whole path vs inplace_predict"]
    assert batch[3:] == ["1.20x", "<= 1.15x", "FAIL"]
    serve = compared["prod batch standard 1,000 rows: throughput vs mlflow serve"]
    assert serve[1:] == ["833 rows/s", "833 rows/s", "1.00x", ">= 1.0x", "PASS"]
    p50 = compared["single row p50 vs mlflow serve (10 pairs)"]
    assert p50[3:] == ["0.80x", "<= 0.8x", "PASS"]
    p99 = compared["single row p99 vs mlflow serve (10 pairs)"]
    assert p99[3:] == ["1.20x", "<= 1.2x", "PASS"]
    assert floor_table.verdicts(rows) == (3, 5)
    assert any("outside the trainer's stages (s): 0.25" in r[0] for r in rows)


def test_text_and_markdown_carry_the_command_and_load():
    results = _results()
    rows = floor_table.build_rows(results)
    text = floor_table.text_table(rows, results["meta"])
    markdown = floor_table.markdown_table(rows, results["meta"])
    for out in (text, markdown):
        assert ".venv/bin/python -m bench.floor --quick" in out
        assert "commit 01234567, 2 cores" in out
        assert "at start 1.0 1.0 1.0, at end 2.0 1.5 1.0" in out
    assert "3/5 targets met" in text
    table_lines = [line for line in markdown.splitlines() if line.startswith("|")]
    assert {line.count("|") for line in table_lines} == {7}


def test_split_follows_the_trainers_rule_and_fractions():
    keys = np.random.default_rng(0).random(50_000)
    fit, stop = floor_ref.split_rows(keys)
    # The trainer's rule on the same keys: hold-out, then inner_split among the rest.
    training = np.flatnonzero(keys >= 0.2)
    inner_fit, inner_stop = inner_split(keys[training], 0.2, 0.15)
    assert np.array_equal(fit, training[inner_fit])
    assert np.array_equal(stop, training[inner_stop])
    assert len(fit) / len(keys) == pytest.approx(0.68, abs=0.01)
    assert len(stop) / len(keys) == pytest.approx(0.12, abs=0.01)


def test_equal_rows_get_equal_keys():
    frame = pd.DataFrame({"a": [1.0, 2.0, 1.0], "b": ["x", "y", "x"]})
    keys = floor_ref.row_keys(frame)
    assert keys[0] == keys[2] != keys[1]
    assert ((keys >= 0) & (keys < 1)).all()


@pytest.mark.parametrize("n_columns", [5, 205])
def test_plain_params_are_the_trainers(n_columns):
    config = TrainingConfig(nthread=2)
    assert floor_ref.plain_params(n_columns, 2) == booster_params("binary", 2, config, n_columns)
    assert (config.learning_rate, config.max_depth) == (0.1, 6)
    assert (config.max_rounds, config.early_stopping_rounds) == (
        floor_ref.MAX_ROUNDS,
        floor_ref.EARLY_STOPPING,
    )
    assert (config.validation_fraction, config.early_stopping_fraction) == (
        floor_ref.VALIDATION_FRACTION,
        floor_ref.STOP_FRACTION,
    )


def test_features_of_each_shape():
    for shape, columns in (("standard", 21), ("wide", 205), ("text_heavy", 17)):
        # Free text (a distinct cell per row) past MAX_CATEGORIES levels is left out.
        frame = make_table(1500, shape)
        matrix, types, y = floor_ref.features(frame, TARGET)
        assert matrix.shape == (1500, columns) and matrix.dtype == np.float32
        assert types.count("c") == (12 if shape == "text_heavy" else 4)
        assert set(np.unique(y)) == {0.0, 1.0}


def test_a_load_above_the_cores_is_flagged():
    meta = _results()["meta"]
    assert floor_table.load_warning(meta) is None
    meta["loadavg_end"] = (12.5, 10.0, 8.0)
    assert "load average 12.5 on 2 cores" in floor_table.load_warning(meta)


def test_other_shapes_are_reported_without_a_verdict():
    rows = [
        ["prod batch wide", "1 s", "0.1 s", "10.00x", "<= 1.15x", "FAIL"],
        ["  detail", "", "", "", "", ""],
    ]
    assert floor_table.reported(rows) == [
        ["prod batch wide", "1 s", "0.1 s", "10.00x", "(report)", ""],
        ["  detail", "", "", "", "", ""],
    ]
    assert floor_table.verdicts(floor_table.reported(rows)) == (0, 0)
