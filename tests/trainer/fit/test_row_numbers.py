"""Row numbers are never features: an index written with the data, as pandas and R write it.

Wine sorted by class, split with shuffling: the surviving row numbers are unique, in no
order, and say which class a row is. Exported with its index they gave validation accuracy
1.0 and 0.61-0.67 on new rows. The exports here are written the way pandas and R write them.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split

from sluice_common.tables.parsing import parse_csv
from testkit.stack import post_csv
from trainer.fit.features import clean_table, fit_kinds


def _wine_split(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    wine = load_wine(as_frame=True).frame.sort_values("target", kind="stable")
    wine = wine.reset_index(drop=True)  # row number = position in the class-sorted file
    return train_test_split(wine, test_size=0.3, shuffle=True, random_state=seed)


def r_write_csv(frame: pd.DataFrame) -> bytes:
    """What R's write.csv(frame) writes: a quoted header whose first name is "", then each
    row's name quoted (R's 1-based row numbers of the original table, kept by a sample)."""
    lines = ['"",' + ",".join(f'"{name}"' for name in frame.columns)]
    for number, row in zip(frame.index, frame.itertuples(index=False), strict=True):
        cells = (f'"{v}"' if isinstance(v, str) else format(v, ".15g") for v in row)
        lines.append(f'"{number + 1}",' + ",".join(cells))
    return ("\n".join(lines) + "\n").encode()


EXPORTS = {
    # pandas' default: the index first, under a blank header.
    "pandas_to_csv": (lambda frame: frame.to_csv().encode(), "Unnamed: 0", b",alcohol,"),
    "r_write_csv": (r_write_csv, "Unnamed: 0", b'"","alcohol",'),
    # reset_index() makes the index a column named index.
    "reset_index": (
        lambda frame: frame.reset_index().to_csv(index=False).encode(),
        "index",
        b"index,alcohol,",
    ),
}


@pytest.mark.parametrize("export", sorted(EXPORTS))
def test_an_exported_index_is_dropped_as_row_numbers(stack, model_name, tmp_path, export):
    write, column, header = EXPORTS[export]
    train, holdout = _wine_split()
    path = tmp_path / "train.csv"
    path.write_bytes(write(train))
    raw = path.read_bytes()
    assert raw.startswith(header)
    # The leak is real: the row numbers alone tell the class (sorted data).
    assert pd.Series(train.index).corr(train["target"].reset_index(drop=True)) > 0.9

    dev = post_csv(stack.analyze_url, raw, phase="dev", model=model_name)
    assert dev.status_code == 200, dev.text
    features = dev.json()["features"]
    dropped = {item["name"]: item["reason"] for item in features["dropped"]}
    assert dropped[column].startswith("row numbers"), dropped
    assert column not in {item["name"] for item in features["used"]}
    assert len(features["used"]) == 13  # every wine measurement is kept
    assert dev.json()["promoted"], dev.json()["reason"]

    # New rows, exported the same way with their own (different) row numbers.
    query = holdout.drop(columns="target")
    prod = post_csv(stack.analyze_url, write(query), phase="prod", model=model_name)
    assert prod.status_code == 200, prod.text
    predictions = [str(p) for p in prod.json()["predictions"]]
    accuracy = np.mean(np.array(predictions) == holdout["target"].astype(str).to_numpy())
    assert accuracy >= 0.9, accuracy


def _kinds(raw: bytes, target: str = "target") -> tuple[dict, dict]:
    """What training decides for each column of a CSV: kinds of the kept ones, reasons of
    the dropped ones."""
    parsed = parse_csv(raw)
    table = clean_table(pa.Table.from_pandas(parsed.frame, preserve_index=False))
    kinds, dropped, _ = fit_kinds(table, target, parsed.delimiter)
    return {k.name: k.kind for k in kinds}, {d["name"]: d["reason"] for d in dropped}


def _unique_integers(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Unique integers with gaps, in no order: what a sample's row numbers look like."""
    return rng.choice(np.arange(1900, 1900 + 3 * rows), rows, replace=False)


def test_unique_integers_under_other_names_stay_features():
    # The same kind of values as a sampled index; only the names differ. A year or a price
    # in cents can be unique in every row and still be what predicts the target.
    rng = np.random.default_rng(4)
    rows = 200
    year = _unique_integers(rng, rows)
    frame = pd.DataFrame(
        {
            "year": year,
            "price_cents": rng.choice(np.arange(10_000, 99_999), rows, replace=False),
            "column_1": _unique_integers(rng, rows),  # a real column of that name
            "x": rng.normal(size=rows).round(3),
        }
    )
    frame["target"] = np.where(year > np.median(year), "late", "early")
    frame.index = _unique_integers(rng, rows)  # a sampled index, written by to_csv()
    kinds, dropped = _kinds(frame.to_csv().encode())
    assert kinds == {"year": "numeric", "price_cents": "numeric", "column_1": "numeric",
                     "x": "numeric"}  # fmt: skip
    assert list(dropped) == ["Unnamed: 0"] and dropped["Unnamed: 0"].startswith("row numbers")


def test_r_read_back_x_is_row_numbers_only_as_a_leading_column():
    rng = np.random.default_rng(5)
    rows = 60
    frame = pd.DataFrame({"X": _unique_integers(rng, rows), "y": rng.normal(size=rows)})
    frame["target"] = rng.choice(["a", "b"], rows)
    # read.csv of a write.csv file names its blank header X; written again, X is a column.
    _, dropped = _kinds(frame.to_csv(index=False).encode())
    assert dropped["X"].startswith("row numbers") and "read.csv" in dropped["X"]
    _, dropped = _kinds(r_write_csv(frame.sample(frac=1, random_state=0)))
    assert {"Unnamed: 0", "X"} <= set(dropped)
    # X after other columns is a coordinate or a measurement, not R's name for row names.
    kinds, dropped = _kinds(frame[["y", "X", "target"]].to_csv(index=False).encode())
    assert kinds == {"y": "numeric", "X": "numeric"} and not dropped


def test_pandas_index_in_parquet_is_row_numbers():
    # pandas stores a non-default index in Parquet as the column __index_level_0__.
    train, _ = _wine_split(seed=3)
    buffer = io.BytesIO()
    train.to_parquet(buffer)
    table = pq.read_table(io.BytesIO(buffer.getvalue()))
    assert "__index_level_0__" in table.column_names
    kinds, dropped, _ = fit_kinds(clean_table(table), "target", ",")
    reasons = {d["name"]: d["reason"] for d in dropped}
    assert reasons["__index_level_0__"].startswith("row numbers")
    assert len(kinds) == 13


def test_a_date_index_and_copied_rows():
    rng = np.random.default_rng(6)
    rows = 80
    frame = pd.DataFrame({"x": rng.normal(size=rows), "target": rng.choice(["a", "b"], rows)})
    # A date index under a blank header is a real column of dates.
    dated = frame.set_index(pd.date_range("2024-01-01", periods=rows, freq="D"))
    kinds, dropped = _kinds(dated.to_csv().encode())
    assert kinds == {"Unnamed: 0": "datetime", "x": "numeric"} and not dropped
    # Whole rows repeated (concat of a frame with some of its rows) repeat their row number
    # too: one record, one number, still row numbers.
    numbered = frame.set_axis(_unique_integers(rng, rows))
    copied = pd.concat([numbered, numbered.iloc[:10]])
    _, dropped = _kinds(copied.to_csv().encode())
    assert dropped["Unnamed: 0"].startswith("row numbers")
    # Integers that repeat across different rows are not row numbers.
    repeated = frame.set_axis(rng.integers(0, 40, rows))
    kinds, dropped = _kinds(repeated.to_csv().encode())
    assert kinds["Unnamed: 0"] == "numeric" and not dropped
