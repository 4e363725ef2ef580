"""Wide tables: text columns are read a block at a time (`trainer.fit.text_columns`), and each
column must still be typed, read and hashed exactly as it is alone. The oracles are a column
typed in a table of its own, Arrow's per-column cell reading, pandas' hash of the whole frame
and the row-sharing rule written as a plain loop over columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

from testkit.stack import post_csv
from tests.datasets import to_csv
from trainer.fit import rows
from trainer.fit.features import clean_table, fit_feature_spec, fit_kinds, text_columns_of

CELLS = st.sampled_from(
    [
        "1", "2", "2.5", "1,5", "1.234,5", "1,234.5", "007", "12", "-4e3", " 3 ",
        "x", "y", "Yes", "", "NA", "n/a", "2024-01-02", "03/02/2024", "abc", "1 000",
    ]
)  # fmt: skip


def wide_table(columns: list[list[str]]) -> pa.Table:
    """Cleaned text columns c0.., a column of distinct non-integers (so every row is its own
    record, in the wide table and in each one-column table) and a target."""
    n = len(columns[0])
    data = {f"c{i}": pa.array(cells, pa.large_string()) for i, cells in enumerate(columns)}
    data["u"] = pa.array([f"{i}.5" for i in range(n)], pa.large_string())
    data["target"] = pa.array([str(i % 2) for i in range(n)], pa.large_string())
    return clean_table(pa.table(data))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=3, max_value=14).flatmap(
        lambda n: st.lists(st.lists(CELLS, min_size=n, max_size=n), min_size=1, max_size=8)
    ),
    st.sampled_from([",", ";"]),
)
def test_each_column_is_typed_and_read_as_when_alone(columns, delimiter):
    table = wide_table(columns)
    texts = text_columns_of(table, "target")
    kinds, dropped, unreadable = fit_kinds(table, "target", delimiter, 2, texts=texts)
    by_name = {k.name: k for k in kinds} | {d["name"]: d for d in dropped}
    for name in table.column_names[:-1]:
        alone = table.select([name, "u", "target"]) if name != "u" else table
        a_kinds, a_dropped, a_unreadable = fit_kinds(alone, "target", delimiter, 2)
        a_by_name = {k.name: k for k in a_kinds} | {d["name"]: d for d in a_dropped}
        assert by_name[name] == a_by_name[name], name
        assert unreadable.get(name) == a_unreadable.get(name), name

    y = np.arange(table.num_rows, dtype="float64") % 2
    together = rows.read_cells(table, kinds, "target", y, texts=texts)
    one_by_one = rows.read_cells(table, kinds, "target", y)  # Arrow's kernels per column
    assert together.keys() == one_by_one.keys()
    for name, values in together.items():
        assert pd.Series(values).equals(pd.Series(one_by_one[name])), name

    train_rows = np.arange(table.num_rows) % 3 != 0
    spec_together = fit_feature_spec(table, "target", train_rows, kinds, dropped, 2, texts=texts)
    assert spec_together == fit_feature_spec(table, "target", train_rows, kinds, dropped, 2)


def observations_oracle(read: dict, target: str, content: np.ndarray) -> np.ndarray:
    """The row-sharing rule column by column, as written before the columns were grouped."""
    row_ids, _ = pd.factorize(content)
    shared = np.ones(len(content), dtype=bool)
    for name, values in read.items():
        if name == target:
            continue
        codes, _ = pd.factorize(values, use_na_sentinel=False)
        pairs = pd.DataFrame({"value": codes, "row": row_ids}).drop_duplicates()
        rows_per_value = np.bincount(pairs["value"].to_numpy(), minlength=codes.max() + 1)
        shared &= rows_per_value[codes] >= rows.MIN_SHARING_ROWS
    return shared


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=30).flatmap(
        lambda n: st.tuples(
            st.lists(
                st.lists(st.sampled_from([0.0, 1.5, -2.0, np.nan]), min_size=n, max_size=n),
                min_size=1,
                max_size=5,
            ),
            st.lists(
                st.lists(st.sampled_from(["a", "b", None]), min_size=n, max_size=n),
                min_size=0,
                max_size=4,
            ),
        )
    )
)
def test_row_hashes_and_sharing_match_the_whole_frame(columns):
    floats, keys = columns
    read = {f"f{i}": np.array(c, dtype="float64") for i, c in enumerate(floats)}
    read |= {f"k{i}": np.array(c, dtype=object) for i, c in enumerate(keys)}
    read["target"] = np.arange(len(floats[0]), dtype="float64") % 2
    read = dict(sorted(read.items()))
    content = rows.content_hashes(read)
    whole = pd.util.hash_pandas_object(pd.DataFrame(read), index=False).to_numpy("uint64")
    assert np.array_equal(content, whole)
    expected = observations_oracle(read, "target", content)
    assert np.array_equal(rows.observations(read, "target", content), expected)


def test_a_wide_upload_trains_and_serves_through_the_stack(stack):
    # 3,000 columns of numbers, dates, categories and a unique text: each typed as it is,
    # logged without MLflow's input example (over 1,000 columns, said on the run), served.
    rng = np.random.default_rng(5)
    n, width = 40, 3000
    frame = pd.DataFrame(
        rng.normal(size=(n, width)).round(3), columns=[f"x{i}" for i in range(width)]
    )
    frame["day"] = pd.date_range("2024-01-01", periods=n).strftime("%Y-%m-%d")
    frame["colour"] = rng.choice(["red", "blue"], size=n)
    frame["note"] = [f"note {i}" for i in range(n)]
    frame["target"] = (frame["x0"] > 0).astype(int)
    answer = post_csv(stack.analyze_url, to_csv(frame), phase="dev", model="wide-dev")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    used = {item["name"]: item["kind"] for item in body["features"]["used"]}
    assert len(used) == width + 2
    assert used["x7"] == "numeric" and used["day"] == "datetime" and used["colour"] == "categorical"
    assert [d["name"] for d in body["features"]["dropped"]] == ["note"]

    run = MlflowClient(stack.tracking_uri).get_run(body["run_id"])
    assert run.data.tags["sluice.input_example"].startswith("omitted: 3,002 input columns")
    dataset = run.inputs.dataset_inputs[0].dataset
    assert len(dataset.digest) == 16

    prod = post_csv(
        stack.analyze_url,
        to_csv(frame.drop(columns="target").head(5)),
        phase="prod",
        model="wide-dev",
    )
    if body["promoted"]:
        assert prod.status_code == 200, prod.text
        assert len(prod.json()["predictions"]) == 5
    else:
        assert prod.status_code == 409, prod.text
