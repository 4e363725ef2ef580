"""The references of the speed-floor bench, in this process: plain XGBoost for dev, the
champion's own booster for prod, and where the prod path's time goes.

The plain-XGBoost side reproduces what Sluice trains on with its own code (pandas, numpy,
`xgboost.train`), so it stays the same reference whatever the trainer does: the rows left after
the validation hold-out, split into fit and early-stopping rows by the trainer's rule
(`trainer/fit/booster.py: inner_split`), the trainer's booster parameters, early stopping on
the stop rows. Row keys come from a hash of each row instead of the trainer's content keys:
the same fractions and rule, the same row counts up to hashing noise (see `split_rows`).
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

# The trainer's defaults (trainer/fit/config.py, TrainingConfig) as the issue states them.
VALIDATION_FRACTION = 0.2
STOP_FRACTION = 0.15
MAX_ROUNDS = 1000
EARLY_STOPPING = 100
MAX_CATEGORIES = 1000
# The trainer's booster takes 80% of the columns per tree from this width on.
COLSAMPLE_MIN_COLUMNS = 10


def train_threads() -> int:
    """The trainer's XGBoost threads: TRAIN_NTHREAD, 0 (its default) meaning every core."""
    configured = int(os.environ.get("TRAIN_NTHREAD", "0") or 0)
    return configured if configured > 0 else (os.cpu_count() or 1)


def plain_params(n_columns: int, nthread: int) -> dict:
    """`trainer/fit/booster.py: booster_params` for a binary target, spelled out."""
    return {
        "tree_method": "hist",
        "eta": 0.1,
        "max_depth": 6,
        "min_child_weight": 1,
        "subsample": 0.8,
        "colsample_bytree": 0.8 if n_columns >= COLSAMPLE_MIN_COLUMNS else 1.0,
        "max_cat_to_onehot": 4,
        "seed": 42,
        "nthread": nthread,
        "objective": "binary:logistic",
        "eval_metric": "logloss",
    }


def row_keys(frame: pd.DataFrame) -> np.ndarray:
    """A key in [0, 1) per row from its cells: equal rows get equal keys (one side each)."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def split_rows(keys: np.ndarray, validation: float = VALIDATION_FRACTION, stop=STOP_FRACTION):
    """Fit and early-stopping row indices: keys below `validation` are held out, the next
    `stop` share of the remaining key range watches early stopping (the trainer's rule)."""
    held = keys < validation
    stopping = ~held & (keys < validation + stop * (1 - validation))
    return np.flatnonzero(~held & ~stopping), np.flatnonzero(stopping)


def features(frame: pd.DataFrame, target: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """What a plain-XGBoost user feeds the booster: numbers as float32, text columns of at
    most MAX_CATEGORIES levels as category codes (missing: NaN), free text left out; the
    target's second sorted label as 1."""
    y_raw = frame[target].astype(str)
    labels = sorted(y_raw.unique())
    y = (y_raw == labels[-1]).to_numpy(dtype=np.float32)
    columns, types = [], []
    for name in frame.columns:
        if name == target:
            continue
        series = frame[name]
        if pd.api.types.is_numeric_dtype(series):
            columns.append(series.to_numpy(dtype=np.float32))
            types.append("q")
        elif series.nunique() <= MAX_CATEGORIES:
            codes = series.astype("category").cat.codes.to_numpy().astype(np.float32)
            codes[codes < 0] = np.nan
            columns.append(codes)
            types.append("c")
    return np.column_stack(columns), types, y


@dataclass
class PlainDev:
    """One plain-XGBoost dev run."""

    prepare_seconds: float  # read_csv, features, split, both DMatrix
    train_seconds: float  # xgboost.train alone
    rounds: int  # best iteration + 1
    fit_rows: int
    stop_rows: int
    columns: int


def plain_dev(csv: bytes, target: str, nthread: int) -> PlainDev:
    """Read, split and train as a plain XGBoost script would; only `xgboost.train` is in
    `train_seconds`, everything before it in `prepare_seconds`."""
    import xgboost as xgb

    started = time.perf_counter()
    frame = pd.read_csv(io.BytesIO(csv))
    frame = frame.dropna(subset=[target])
    matrix, types, y = features(frame, target)
    fit_idx, stop_idx = split_rows(row_keys(frame))
    train = xgb.DMatrix(
        matrix[fit_idx], label=y[fit_idx], feature_types=types, enable_categorical=True
    )
    watch = xgb.DMatrix(
        matrix[stop_idx], label=y[stop_idx], feature_types=types, enable_categorical=True
    )
    prepared = time.perf_counter()
    booster = xgb.train(
        plain_params(matrix.shape[1], nthread),
        train,
        num_boost_round=MAX_ROUNDS,
        evals=[(watch, "valid")],
        early_stopping_rounds=EARLY_STOPPING,
        verbose_eval=False,
    )
    done = time.perf_counter()
    return PlainDev(
        prepare_seconds=prepared - started,
        train_seconds=done - prepared,
        rounds=booster.best_iteration + 1,
        fit_rows=len(fit_idx),
        stop_rows=len(stop_idx),
        columns=matrix.shape[1],
    )


def load_champion(tracking_uri: str, model: str):
    """The champion's pyfunc and its SluiceModel (booster, spec, rules)."""
    import warnings

    import mlflow

    warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method")
    mlflow.set_tracking_uri(tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model}@champion")
    return pyfunc, pyfunc.unwrap_python_model()


def booster_reference(model, csv: bytes, nthread: int):
    """The champion's booster (a copy on `nthread` threads, as the trainer scores a large
    batch) and the feature matrix of the rows, built by the model's own reader before any
    clock runs. Returns (booster, matrix)."""
    from trainer.model.sluice_model import feature_matrix

    cells = pd.read_csv(io.BytesIO(csv), dtype=str, keep_default_na=False)
    matrix, _ = feature_matrix(cells, model.spec, model.rules)
    booster = model.booster.copy()
    booster.set_param({"nthread": nthread})
    return booster, matrix


def timed_predict(booster, matrix) -> float:
    """Seconds of one `inplace_predict` over the matrix."""
    started = time.perf_counter()
    booster.inplace_predict(matrix)
    return time.perf_counter() - started


def agreement(booster, matrix, classes: list[str], predictions: list) -> int:
    """Rows where Sluice's answer differs from the booster's own labels (0: the same work)."""
    raw = booster.inplace_predict(matrix)
    labels = np.asarray(classes, dtype=object)[(raw > 0.5).astype(int)]
    return int((labels != np.asarray(predictions, dtype=object)).sum())


def prod_steps(csv: bytes, model, reps: int) -> dict:
    """Median seconds of each in-process step of the prod path for these rows: parse (as
    preprocess does), the Arrow hop (write and read), the feature matrix, inplace_predict,
    the answer JSON. Steps whose code moved report an error string instead of failing the run."""
    import orjson

    steps: dict[str, list[float]] = {}

    def dumps(answer):
        return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)

    def timed(name, fn, *args):
        started = time.perf_counter()
        out = fn(*args)
        steps.setdefault(name, []).append(time.perf_counter() - started)
        return out

    try:
        from sluice_common.tables.transport import columns_to_arrow, read_arrow, table_to_arrow
        from sluice_common.web.upload import parse_upload
        from trainer.model.sluice_model import feature_matrix

        for _ in range(reps):
            table, report, _ = timed("parse", parse_upload, csv, "prod", None)
            write = columns_to_arrow if isinstance(table, dict) else table_to_arrow
            payload = timed("arrow_write", write, table, report)
            received, report = timed("arrow_read", read_arrow, payload)
            matrix, _ = timed("feature_matrix", feature_matrix, received, model.spec, model.rules)
            raw = timed("inplace_predict", model.score_matrix, matrix)[0]
            answer = {"predictions": raw.tolist() if raw.dtype == object else raw}
            timed("answer_json", dumps, answer)
    except Exception as error:  # noqa: BLE001 - a moved internal must not sink the bench
        return {"error": f"{type(error).__name__}: {error}"[:300]}
    return {name: float(np.median(values)) for name, values in steps.items()}
