"""The run's dataset record from the Arrow table is MLflow's record of the same frame."""

from __future__ import annotations

import mlflow
import pyarrow as pa

from trainer.lifecycle import registry


def _as_mlflow_would(table: pa.Table, target: str, name: str) -> dict:
    """The record as MLflow makes it from the frame (the pandas conversion it replaced)."""
    dataset = mlflow.data.from_pandas(
        table.to_pandas(), targets=target, name=name, digest=registry.table_digest(table)
    )
    dataset.__dict__["schema"] = registry.dataset_schema(table)
    return dataset.to_dict()


def test_the_dataset_record_matches_mlflows_record_of_the_frame():
    table = pa.table(
        {
            "x": pa.array(["1.5", None, "2"]),
            "n": pa.array([1.0, 2.0, None]),
            "label": pa.array(["yes", "no", "yes"]),
        }
    )
    record = registry._training_dataset(table, "label", "m", None).to_dict()
    assert record == _as_mlflow_would(table, "label", "m")
    assert record["profile"] == '{"num_rows": 3, "num_elements": 9}'
    assert registry._training_dataset(table, "label", "m", "abc").digest == "abc"


def test_a_schema_over_mlflows_limit_is_left_out(monkeypatch):
    monkeypatch.setattr(registry, "DATASET_SCHEMA_MAX_CHARS", 10)
    table = pa.table({"x": ["a"], "label": ["b"]})
    assert registry._training_dataset(table, "label", "m", None).schema is None
