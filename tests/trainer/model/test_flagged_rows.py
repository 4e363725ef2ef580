"""Per-row flags: which prod rows had a cell the model could not read as trained.

Oracles: the rows and cells planted by hand (the answer must list exactly those), pandas and
`datetime.strptime` with explicit options for the cell rules' masks.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import requests
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from testkit.stack import post_csv
from trainer.api.views import max_flagged_rows
from trainer.model import row_flags, sluice_model
from trainer.model import sluice_cells as cells
from trainer.model.sluice_cells import NumberFormat

NUMERIC = "not_numeric_treated_as_missing"
UNSEEN = "unseen_categories_treated_as_missing"
DATES = "unreadable_dates_treated_as_missing"
OTHER = "rare_or_unseen_categories_read_as_other"
MODEL = "flagged-rows"  # trained once for this module's stack tests


# --- the cell rules' masks against independent oracles -------------------------------------


def test_unreadable_numbers_in_a_decimal_comma_column_are_the_rows_pandas_cannot_read():
    cells_in = ["12,5", "1,500.00 €", "", "NA", "7", "abc", "1.234,5", "yesterday", "-3,25", "2e3"]
    # Oracle: pandas, told the column's convention (decimal comma, `.` between thousands).
    frame = pd.read_csv(
        io.StringIO("x\n" + "\n".join(f'"{c}"' for c in cells_in)), dtype=str, keep_default_na=True
    )
    missing = frame["x"].isna().to_numpy()
    european = frame["x"].str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    numbers = pd.to_numeric(european, errors="coerce").to_numpy()
    unreadable = ~missing & np.isnan(numbers)
    assert unreadable.tolist() == [0, 1, 0, 0, 0, 1, 0, 1, 0, 0]  # and by hand
    fmt = NumberFormat(",", "")
    for values in (cells_in, pa.array(cells_in, pa.large_string())):
        read = cells.read_numbers(values, fmt)
        assert read.unreadable_rows.tolist() == unreadable.tolist()
        assert read.regrouped_rows.tolist() == [c == "1.234,5" for c in cells_in]
        assert read.unreadable == 3 and read.regrouped == 1


def test_typed_numbers_flag_infinities_and_booleans_only():
    typed = pa.array([1.0, None, float("inf"), -2.5, float("nan")])
    assert cells.read_numbers(typed, NumberFormat()).unreadable_rows.tolist() == [
        False, False, True, False, False
    ]  # fmt: skip
    mixed = [True, 3, None, float("-inf"), "4"]
    assert cells.read_numbers(mixed, NumberFormat()).unreadable_rows.tolist() == [
        True, False, False, True, False
    ]  # fmt: skip


def _strptime_dates(text: str, formats: list[str]) -> set:
    out = set()
    for fmt in formats:
        try:
            out.add(dt.datetime.strptime(text, fmt))
        except ValueError:
            pass
    return out


def test_unreadable_dates_are_the_cells_no_format_reads_unambiguously():
    texts = ["2023-07-15", "yesterday", "", "07/15/2023", "07/08/2023", "2023-02-30", "15.07.2023"]
    # Oracle: strptime with explicit formats; a cell is read when the formats that read it agree.
    formats = ["%Y-%m-%d", "%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y"]
    expected = [text.strip() != "" and len(_strptime_dates(text, formats)) != 1 for text in texts]
    assert expected == [False, True, False, False, True, True, False]
    for values in (texts, pa.array(texts, pa.large_string())):
        read = cells.read_date_cells(values, ["ISO8601"])
        assert read.unreadable_rows.tolist() == expected
        assert read.other_format_rows.tolist() == [False, False, False, True, False, False, True]
        assert read.unreadable == 3 and read.other_format == 2


def test_unseen_levels_are_the_cells_whose_key_is_not_a_kept_level():
    values = ["pro", " basic ", "gold", "", "PRO", None, "1.0", "1"]
    kept = {"basic": 0, "pro": 1, "1": 2}
    # By hand: stripped text, numbers written one way; case matters.
    expected = [False, False, True, False, True, False, False, False]
    for column in (values, pa.array(values, pa.large_string())):
        for other in (None, 3):
            read = cells.read_categories(column, kept, other)
            assert read.unseen_rows.tolist() == expected and read.unseen == 2


_CELL = st.one_of(
    st.none(),
    st.sampled_from(["", "NA", "1,5", "1.234,5", "1,500.00 €", "abc", "2023-07-15", "07/08/2023"]),
    st.text(alphabet="0123456789,.-/ €ayT:", max_size=12),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_CELL, max_size=40))
def test_small_and_large_batches_flag_the_same_cells(values):
    as_arrow = pa.array(values, pa.large_string())
    fmt = NumberFormat(",", "")
    small, large = cells.read_numbers(values, fmt), cells.read_numbers(as_arrow, fmt)
    assert np.array_equal(small.unreadable_rows, large.unreadable_rows)
    assert np.array_equal(small.regrouped_rows, large.regrouped_rows)
    small, large = (
        cells.read_date_cells(values, ["ISO8601"]),
        cells.read_date_cells(as_arrow, ["ISO8601"]),
    )
    assert np.array_equal(small.unreadable_rows, large.unreadable_rows)
    assert np.array_equal(small.other_format_rows, large.other_format_rows)


# --- the answer's fields (pure) ------------------------------------------------------------


def _flags(n: int, **columns: tuple[str, list[int]]) -> dict:
    out = {}
    for name, (kind, rows) in columns.items():
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        out[name] = (kind, mask)
    return out


def test_flagged_rows_are_listed_in_input_order_up_to_the_cap():
    flags = _flags(10, amount=(NUMERIC, [7, 2, 5]), signed=(DATES, [5, 9]))
    answer = row_flags.flagged_rows(flags, 3)
    assert answer["flagged_rows"] == [
        {"row": 2, "columns": {"amount": NUMERIC}},
        {"row": 5, "columns": {"amount": NUMERIC, "signed": DATES}},
        {"row": 7, "columns": {"amount": NUMERIC}},
    ]
    assert answer["flagged_rows_total"] == 4 and answer["flagged_rows_omitted"] == 1
    none = row_flags.flagged_rows(flags, 0)
    assert none["flagged_rows"] == [] and none["flagged_rows_omitted"] == 4
    clean = row_flags.flagged_rows({}, 1000)
    assert clean == {"flagged_rows": [], "flagged_rows_total": 0, "flagged_rows_omitted": 0}


def test_the_list_is_bounded_in_size_as_well_as_in_rows():
    # 200 columns with 1,000-character names, every cell unreadable in 50 rows: listing each
    # row whole would make a 10 MB answer from a small upload.
    names = {f"c{i}_" + "x" * 1000: (NUMERIC, list(range(50))) for i in range(200)}
    answer = row_flags.flagged_rows(_flags(50, **names), 10)
    listed = answer["flagged_rows"]
    assert len(json.dumps(listed)) <= 10 * row_flags.BYTES_PER_LISTED_ROW + 210_000  # one row
    assert [item["row"] for item in listed] == list(range(len(listed))) and len(listed) >= 1
    assert all(len(item["columns"]) == 200 for item in listed)  # a listed row is whole
    assert answer["flagged_rows_total"] == 50
    assert answer["flagged_rows_omitted"] == 50 - len(listed)


def test_the_cap_is_the_app_setting_max_flagged_rows():
    assert max_flagged_rows() == 1000  # outside a request: the default
    app = Flask(__name__)
    app.config["MAX_FLAGGED_ROWS"] = 2
    with app.app_context():
        assert max_flagged_rows() == 2
    from trainer.app import DEFAULTS

    assert DEFAULTS["MAX_FLAGGED_ROWS"] == 1000


def test_the_flags_column_names_each_rows_columns_and_kinds():
    flags = _flags(6, amount=(NUMERIC, [1, 4]), plan=(UNSEEN, [4]), signed=(DATES, [5]))
    texts = row_flags.flag_texts(flags, 6).cast(pa.string()).to_pylist()
    assert texts == [
        "",
        f"amount:{NUMERIC}",
        "",
        "",
        f"amount:{NUMERIC};plan:{UNSEEN}",
        f"signed:{DATES}",
    ]
    assert row_flags.count_flagged(row_flags.flag_texts(flags, 6)) == 3
    assert row_flags.flag_texts({}, 3).cast(pa.string()).to_pylist() == ["", "", ""]


def test_flags_texts_for_more_than_64_flagged_columns():
    rng = np.random.default_rng(1)
    flags = {f"c{i}": (NUMERIC, rng.random(300) < 0.05) for i in range(70)}
    texts = row_flags.flag_texts(flags, 300).cast(pa.string()).to_pylist()
    for row, text in enumerate(texts):  # oracle: the masks joined row by row
        assert text == ";".join(f"{n}:{k}" for n, (k, m) in flags.items() if m[row])


def _training_frame(rows: int = 600, seed: int = 3) -> pd.DataFrame:
    """A `;` export: decimal-comma amounts, ISO dates, a category with few levels and one with
    a long tail of rare levels; the label follows amount and plan."""
    rng = np.random.default_rng(seed)
    amount = rng.uniform(10, 3000, rows)
    plan = rng.choice(["basic", "pro", "max"], rows)
    towns = [f"town{i}" for i in range(40)]
    city = rng.choice(["berlin", "paris", "rome", *towns], rows, p=[0.3] * 3 + [0.1 / 40] * 40)
    signed = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 700, rows), "D")
    label = np.where((amount > 1500) ^ (plan == "max"), "Ja", "Nein")
    return pd.DataFrame(
        {
            "amount": [f"{v:.2f}".replace(".", ",") for v in amount],
            "plan": plan,
            "city": city,
            "signed": signed.strftime("%Y-%m-%d"),
            "kauf": label,
        }
    )


@pytest.fixture(scope="module")
def trained():
    from trainer.pipeline.training import TrainingConfig, train_model

    table = _training_frame().astype(str)
    config = TrainingConfig(max_rounds=60, early_stopping_rounds=10)
    return train_model(table, "kauf", config=config, delimiter=";")


def test_an_output_has_the_flags_column(trained):
    from trainer.sources import by_reference

    table = pa.table({"amount": ["abc"], "plan": ["pro"], "city": ["rome"], "signed": ["x"]})
    options = by_reference.ProdOptions()
    mine = trained.model
    scored = mine.score_frame(table)
    fresh = by_reference.output_columns(mine, scored, "f.csv", table, options, None)
    assert fresh.column("flags").cast(pa.string()).to_pylist() == [
        f"amount:{NUMERIC};signed:{DATES}"
    ]


# --- through the real services ---------------------------------------------------------------

# Prod rows, each with what it plants: {column: kind} of the cells the model cannot read.
PLANTED = [
    ({"amount": "250,00", "plan": "pro", "city": "rome", "signed": "2023-01-05"}, {}),
    ({"amount": "1,500.00 €", "plan": "basic", "city": "paris", "signed": "2023-02-01"},
     {"amount": NUMERIC}),
    ({"amount": "1.234,50", "plan": "max", "city": "berlin", "signed": "2023-03-01"}, {}),
    ({"amount": "80,5", "plan": "pro", "city": "rome", "signed": "yesterday"}, {"signed": DATES}),
    ({"amount": "99,9", "plan": "gold", "city": "rome", "signed": "2023-03-04"}, {"plan": UNSEEN}),
    ({"amount": "", "plan": "basic", "city": "", "signed": ""}, {}),  # missing is not a flag
    ({"amount": "2500", "plan": "max", "city": "atlantis", "signed": "2023-04-01"}, {}),
    ({"amount": "abc", "plan": "pro", "city": "paris", "signed": "yesterday"},
     {"amount": NUMERIC, "signed": DATES}),
    ({"amount": "10,0", "plan": "basic", "city": "town3", "signed": "07/15/2023"}, {}),
    ({"amount": "NA", "plan": "NA", "city": "rome", "signed": "NA"}, {}),
    ({"amount": "1,500.00 €", "plan": "gold", "city": "rome", "signed": "2023-13-45"},
     {"amount": NUMERIC, "plan": UNSEEN, "signed": DATES}),
    ({"amount": "3000", "plan": "max", "city": "rome", "signed": "2023-05-06"}, {}),
]  # fmt: skip


def _query(rows: list[dict]) -> bytes:
    return pd.DataFrame(rows).to_csv(sep=";", index=False).encode()


def _expected(count: int) -> list[dict]:
    """The answer's flagged_rows for PLANTED repeated to `count` rows."""
    out = []
    for row in range(count):
        planted = PLANTED[row % len(PLANTED)][1]
        if planted:
            out.append({"row": row, "columns": planted})
    return out


def _prod(stack, raw: bytes) -> dict:
    response = post_csv(stack.analyze_url, raw, phase="prod", model=MODEL)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def served(stack) -> dict:
    """MODEL trained through /analyze on a `;` export; the dev answer."""
    raw = _training_frame().to_csv(sep=";", index=False).encode()
    response = post_csv(stack.analyze_url, raw, phase="dev", model=MODEL, target="kauf")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["promoted"], answer["reason"]
    kinds = {item["name"]: item["kind"] for item in answer["features"]["used"]}
    assert kinds == {"amount": "numeric", "plan": "categorical", "city": "categorical",
                     "signed": "datetime"}  # fmt: skip
    return answer


def test_a_small_batch_flags_exactly_the_planted_rows(stack, served):
    answer = _prod(stack, _query([cells for cells, _ in PLANTED]))
    assert answer["n_rows"] == len(PLANTED)
    expected = _expected(len(PLANTED))
    assert answer["flagged_rows"] == expected
    assert answer["flagged_rows_total"] == len(expected) == 5
    assert answer["flagged_rows_omitted"] == 0
    # Per-column warnings still count every kind, the read-another-way ones included.
    warnings = answer["warnings"]
    assert warnings[NUMERIC] == {"amount": 3} and warnings[UNSEEN] == {"plan": 2}
    assert warnings[DATES] == {"signed": 3}
    assert warnings["numbers_read_with_other_grouping"] == {"amount": 1}
    assert warnings["dates_read_in_another_format"] == {"signed": 1}
    assert warnings[OTHER]["city"] >= 1  # atlantis (unseen) and town3 (maybe rare): not flags


def test_a_large_batch_flags_the_same_rows_as_a_small_one(stack, served):
    rows = 12 * 17  # above the small-batch path (64 rows): read by Arrow's kernels
    assert rows > sluice_model.SMALL_ROWS
    answer = _prod(stack, _query([PLANTED[i % len(PLANTED)][0] for i in range(rows)]))
    expected = _expected(rows)
    assert answer["flagged_rows"] == expected and answer["flagged_rows_total"] == 5 * 17
    small = _prod(stack, _query([cells for cells, _ in PLANTED]))
    for row in range(len(PLANTED)):
        assert answer["predictions"][row] == small["predictions"][row]


def test_flagged_rows_beyond_the_default_cap_are_counted(stack, served):
    rows = 1100
    cells_of = {"amount": "1,0", "plan": "pro", "city": "rome", "signed": "yesterday"}
    answer = _prod(stack, _query([cells_of] * rows))
    listed = answer["flagged_rows"]
    assert len(listed) == 1000 and [item["row"] for item in listed] == list(range(1000))
    assert answer["flagged_rows_total"] == rows and answer["flagged_rows_omitted"] == 100


def _wait_job(base: str, accepted: requests.Response, timeout: float = 240) -> dict:
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = requests.get(base + location, timeout=30).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {location} did not finish in {timeout} s")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_prod_by_reference_writes_a_flags_column(stack, served, fmt):
    root = stack.env["SLUICE_DATA_ROOT"]
    folder = os.path.join(root, "flags-in")
    os.makedirs(folder, exist_ok=True)
    os.makedirs(os.path.join(root, "flags-out"), exist_ok=True)
    rows = 12 * 9
    with open(os.path.join(folder, "query.csv"), "wb") as handle:
        handle.write(_query([PLANTED[i % len(PLANTED)][0] for i in range(rows)]))
    accepted = requests.post(
        stack.analyze_url,
        params={
            "phase": "prod",
            "data_uri": "flags-in/query.csv",
            "output_uri": f"flags-out/{MODEL}.{fmt}",
            "model": MODEL,
        },
        timeout=30,
    )
    job = _wait_job(stack.url("preprocess"), accepted)
    assert job["state"] == "succeeded", job
    path = os.path.join(root, "flags-out", f"{MODEL}.{fmt}")
    if fmt == "csv":
        written = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        written = pd.read_parquet(path)
    order = [item["name"] for item in served["features"]["used"]]  # the model's input order
    expected = []
    for row in range(rows):
        planted = PLANTED[row % len(PLANTED)][1]
        expected.append(";".join(f"{n}:{planted[n]}" for n in order if n in planted))
    assert written["row"].astype(int).tolist() == list(range(rows))
    assert written["flags"].astype(str).tolist() == expected
    answer = job["answer"]
    assert answer["flagged_rows_total"] == 5 * 9
    assert "flags" in answer["output"]["columns"]
    assert answer["warnings"][NUMERIC] == {"amount": 3 * 9}


def test_a_cluster_workers_partition_carries_the_same_flags(trained, tmp_path):
    """cluster_parts.score_file, as a Dask worker runs it (in this process: no cluster)."""
    from trainer.pipeline import cluster_parts
    from trainer.sources import files as datasource
    from trainer.sources.by_reference import ProdOptions

    (tmp_path / "query.csv").write_bytes(_query([cells for cells, _ in PLANTED]))
    settings = datasource.DataSettings(root=str(tmp_path))
    [item] = datasource.resolve_files("query.csv", settings)
    payload = cluster_parts.payload_of(trained.model)
    result = cluster_parts.score_file(item, settings, payload, ProdOptions(), None, None)
    order = [entry["name"] for entry in trained.spec["inputs"]]
    expected = [";".join(f"{n}:{p[n]}" for n in order if n in p) for _, p in PLANTED]
    assert result["output"].column("flags").cast(pa.string()).to_pylist() == expected
