"""Feature handling, the served model object, training and the promotion rule (no HTTP)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import datasets
from sklearn.metrics import log_loss, mean_squared_error

from sluice_common.errors import ApiError
from tests.datasets import churn, diabetes, iris
from trainer.features import fit_feature_spec
from trainer.promotion import decide, schema_difference, schema_of
from trainer.sluice_model import MissingColumnsError, canonical_text, feature_matrix
from trainer.training import (
    TrainingConfig,
    detect_task,
    score_on_frame,
    split_rows,
    train_model,
)


def test_feature_spec_drops_ids_and_constants_and_expands_dates():
    frame = churn(300)
    frame["constant"] = "same"
    frame["row_number"] = np.arange(len(frame))
    spec = fit_feature_spec(frame, "churned")
    kinds = {item["name"]: item["kind"] for item in spec["inputs"]}
    dropped = {item["name"]: item["reason"] for item in spec["dropped"]}
    assert kinds["plan"] == "categorical" and kinds["tenure_months"] == "numeric"
    assert kinds["signup_date"] == "datetime"
    assert "signup_date__month" in spec["feature_names"]
    assert dropped["customer_id"].startswith("id-like")
    assert dropped["row_number"].startswith("id-like")
    assert dropped["constant"].startswith("constant")


def test_canonical_text_writes_numbers_one_way():
    values = pd.Series(["1", "1.0", " 01 ", "a", None, "2.5"], dtype="object")
    keys = canonical_text(values)
    assert keys[[0, 1, 2, 3, 5]].tolist() == ["1", "1", "1", "a", "2.5"] and pd.isna(keys[4])
    numbers = canonical_text(pd.Series([1.0, 2.5, np.nan]))
    assert numbers[:2].tolist() == ["1", "2.5"] and pd.isna(numbers[2])


def test_matrix_matches_columns_by_name_and_treats_unseen_as_missing():
    frame = churn(300)
    spec = fit_feature_spec(frame, "churned")
    reordered = frame[list(reversed(frame.columns))].drop(columns="churned").copy()
    reordered["extra"] = 1
    base, _ = feature_matrix(frame, spec)
    again, warnings = feature_matrix(reordered, spec)
    np.testing.assert_array_equal(base, again)
    assert warnings == {}
    reordered.loc[0, "plan"] = "platinum"  # never seen in training
    _, warnings = feature_matrix(reordered, spec)
    assert warnings["unseen_categories_treated_as_missing"] == {"plan": 1}
    with pytest.raises(MissingColumnsError) as err:
        feature_matrix(frame.drop(columns=["plan", "region"]), spec)
    assert err.value.columns == ["plan", "region"]


@pytest.mark.parametrize(
    ("values", "requested", "task"),
    [
        (["yes", "no", "yes"], "auto", "classification"),
        (["0", "1"] * 10, "auto", "classification"),
        (["1", "2", "3"] * 10, "auto", "classification"),
        ([str(v / 7) for v in range(30)], "auto", "regression"),
        ([str(v) for v in range(100)], "auto", "regression"),
        ([str(v) for v in range(100)], "classification", "classification"),
        (["1", "2", "3"] * 10, "regression", "regression"),
    ],
)
def test_task_detection(values, requested, task):
    detected, reason = detect_task(pd.Series(values, name="y"), requested)
    assert detected == task and reason


def test_regression_on_text_target_is_a_clear_error():
    with pytest.raises(ApiError) as err:
        detect_task(pd.Series(["a", "b"], name="y"), "regression")
    assert err.value.status == 422 and err.value.code == "target_not_numeric"


def test_split_is_stratified_and_seeded():
    y = np.array([0] * 80 + [1] * 20)
    fit_a, valid_a = split_rows(y, "classification", 0.2, seed=1)
    fit_b, valid_b = split_rows(y, "classification", 0.2, seed=1)
    np.testing.assert_array_equal(valid_a, valid_b)
    assert y[valid_a].sum() == 4 and len(valid_a) == 20 and len(fit_a) == 80


@pytest.mark.parametrize("make", [churn, iris, diabetes])
def test_training_is_deterministic_and_reports_metrics(make):
    frame = make()
    target = "churned" if make is churn else "target"
    first = train_model(frame, target)
    second = train_model(frame, target)
    query = frame.drop(columns=target).head(50)
    np.testing.assert_array_equal(
        first.model.score_frame(query).predictions, second.model.score_frame(query).predictions
    )
    expected = {"rmse", "mae", "r2"} if first.task == "regression" else {"accuracy", "log_loss"}
    assert expected <= set(first.metrics)
    assert score_on_frame(first.model, first.validation_frame) == pytest.approx(first.metrics)


def test_labels_come_back_as_written():
    frame = iris()
    trained = train_model(frame, "target")
    predictions = trained.model.score_frame(frame.drop(columns="target")).predictions
    assert set(predictions) <= {"setosa", "versicolor", "virginica"}
    assert (predictions == frame["target"].to_numpy()).mean() > 0.9


def _default_xgboost_score(trained, frame, target):
    """Plain XGBoost with default settings on the same fitting rows and validation rows."""
    spec = trained.spec
    valid = trained.validation_frame
    matrix_all, _ = feature_matrix(frame, spec)
    valid_matrix, _ = feature_matrix(valid, spec)
    # Rows used for fitting are the ones not in validation: match them by content hash.
    valid_keys = set(pd.util.hash_pandas_object(valid, index=False))
    keys = pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False).to_numpy()
    fit_mask = np.array([k not in valid_keys for k in keys])
    types = ["c" if item["kind"] == "categorical" else "q" for item in spec["inputs"]]
    kw = {"feature_types": types, "enable_categorical": True}
    if trained.task == "regression":
        model = xgb.XGBRegressor(**kw)
        model.fit(matrix_all[fit_mask], frame[target].to_numpy(dtype=float)[fit_mask])
        prediction = model.predict(valid_matrix)
        return float(np.sqrt(mean_squared_error(valid[target].astype(float), prediction)))
    classes = spec["classes"]
    codes = pd.Categorical(frame[target].astype(str), categories=classes).codes
    model = xgb.XGBClassifier(**kw)
    model.fit(matrix_all[fit_mask], codes[fit_mask])
    valid_codes = pd.Categorical(valid[target].astype(str), categories=classes).codes
    return float(
        log_loss(valid_codes, model.predict_proba(valid_matrix), labels=range(len(classes)))
    )


@pytest.mark.parametrize("name", ["breast_cancer", "wine", "diabetes", "digits", "iris"])
def test_quality_at_least_default_xgboost(name):
    data = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = data.frame.copy()
    if name != "diabetes":
        frame["target"] = frame["target"].map(lambda v: f"class_{v}")
    trained = train_model(frame, "target", config=TrainingConfig())
    ours = trained.metrics["rmse" if trained.task == "regression" else "log_loss"]
    default = _default_xgboost_score(trained, frame, "target")
    assert ours <= default, f"{name}: ours {ours:.4f} vs default XGBoost {default:.4f}"


def test_promotion_rules():
    assert decide("auto", None, None, "rmse", 1.0, None, False).promoted
    assert not decide("never", None, None, "rmse", 1.0, None, False).promoted
    assert decide("always", "3", None, "rmse", 9.0, 1.0, False).promoted
    assert decide("auto", "3", "target changed", "rmse", 9.0, None, False).promoted
    tie = decide("auto", "3", None, "rmse", 1.0, 1.0, False)
    assert tie.promoted and "at least as good" in tie.reason
    worse = decide("auto", "3", None, "log_loss", 0.7, 0.5, False)
    assert not worse.promoted and "worse" in worse.reason and worse.champion_score == 0.5


def test_schema_difference_names_the_change():
    spec = {"target": "y", "task": "regression", "classes": None, "inputs": [{"name": "a"}]}
    other = dict(spec, inputs=[{"name": "a"}, {"name": "b"}])
    assert schema_difference(schema_of(spec), schema_of(spec)) is None
    assert "added: ['b']" in schema_difference(schema_of(other), schema_of(spec))
    assert "target" in schema_difference(schema_of(dict(spec, target="z")), schema_of(spec))


def test_canonical_text_is_the_same_for_large_and_small_batches():
    values = pd.Series([" a ", "1", "1.0", "01", None, "2.5", "Inf", "b2"] * 200, dtype="str")
    big = canonical_text(values)
    small = pd.concat([canonical_text(values.iloc[i : i + 8]) for i in range(0, 1600, 8)])
    assert big.fillna("<na>").tolist() == small.fillna("<na>").tolist()


_cells = st.one_of(
    st.none(),
    st.floats(allow_nan=True),
    st.integers(-(10**17), 10**17),
    st.booleans(),
    st.text(alphabet="0123456789+-.eE ,$%_€infINFatyxa\t\xa0\u2003", max_size=8),
    st.sampled_from(["1", "1.0", " 01 ", "a", "2.5", "x y", "1e20", "$1,234", "inf"]),
)
_SPEC = {
    "inputs": [
        {"name": "n", "kind": "numeric"},
        {"name": "c", "kind": "categorical", "categories": ["1", "a", "2.5", "x y", "0", "1e+20"]},
    ],
    "feature_names": ["n", "c"],
}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_cells, _cells), min_size=1, max_size=10), st.booleans())
def test_small_batches_score_exactly_like_large_ones(rows, as_text):
    # Up to SMALL_ROWS rows, feature_matrix converts cells in plain Python; same matrix required.
    from trainer import sluice_model

    frame = pd.DataFrame(rows, columns=["n", "c"]).astype(object)
    if as_text:
        frame = frame.map(lambda v: None if pd.isna(v) else str(v)).astype("str")
    small, small_warnings = feature_matrix(frame, _SPEC)
    saved, sluice_model.SMALL_ROWS = sluice_model.SMALL_ROWS, -1
    try:
        big, big_warnings = feature_matrix(frame, _SPEC)
    finally:
        sluice_model.SMALL_ROWS = saved
    assert np.array_equal(small, big, equal_nan=True)
    assert small_warnings == big_warnings
    # Small prod batches reach the model as a dict of column lists (nulls as None).
    columns = {
        name: frame[name].astype(object).where(frame[name].notna(), None).tolist()
        for name in frame.columns
    }
    as_dict, dict_warnings = feature_matrix(columns, _SPEC)
    assert np.array_equal(as_dict, big, equal_nan=True)
    assert dict_warnings == big_warnings


def test_dates_with_mixed_utc_offsets_train_and_score():
    rng = np.random.default_rng(3)
    stamps = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 10_000, 200), "h")
    offsets = rng.choice(["+0000", "+0530", "-0800"], 200)
    frame = pd.DataFrame(
        {
            "when": [f"{t:%Y-%m-%dT%H:%M:%S}{o}" for t, o in zip(stamps, offsets, strict=True)],
            "x": rng.normal(size=200),
        }
    )
    frame["target"] = np.where(frame["x"] > 0, "up", "down")
    trained = train_model(frame, "target")
    kinds = {item["name"]: item["kind"] for item in trained.spec["inputs"]}
    assert kinds["when"] == "datetime"
    matrix, _ = feature_matrix(frame.head(2), trained.spec)
    hour = trained.spec["feature_names"].index("when__hour")
    expected = pd.to_datetime(frame["when"].head(2), utc=True).dt.hour.tolist()
    assert matrix[:, hour].tolist() == expected


def test_number_rules_copied_into_the_model_file_match_the_cleaning():
    # sluice_model.py must stay self-contained (it is logged with every model), so it keeps
    # copies of the cleaning's number rules; they must not drift apart.
    from sluice_common import cleaning
    from trainer import sluice_model

    assert sluice_model.NUMBER.pattern == cleaning._NUMBER.pattern
    assert sluice_model.NUMBER.flags == cleaning._NUMBER.flags
    assert sluice_model.NUMBER_NOISE == cleaning._NUMBER_NOISE
    assert sluice_model.WHITESPACE == cleaning.WHITESPACE


def test_large_text_categories_take_the_arrow_path_with_the_same_codes(monkeypatch):
    from trainer import sluice_model

    categories = ["north", "south", "ch29", "x y"]
    values = ["north", " south ", "ch29", None, "east", "x y", "\u2003north"] * 300
    spec = {
        "inputs": [{"name": "c", "kind": "categorical", "categories": categories}],
        "feature_names": ["c"],
    }
    frame = pd.DataFrame({"c": pd.array(values, dtype="str")})
    assert sluice_model._arrow_codes(frame["c"], categories) is not None  # the fast path runs
    fast, fast_warnings = feature_matrix(frame, spec)
    monkeypatch.setattr(sluice_model, "_arrow_codes", lambda values, categories: None)
    slow, slow_warnings = feature_matrix(frame, spec)
    assert np.array_equal(fast, slow, equal_nan=True)
    assert fast_warnings == slow_warnings == {"unseen_categories_treated_as_missing": {"c": 300}}
