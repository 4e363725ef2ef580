"""Task choice, split, XGBoost fit and validation metrics (pure; no MLflow, no Flask)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn import metrics as skm
from sklearn.model_selection import train_test_split

from sluice_common.cleaning import to_number
from sluice_common.errors import ApiError
from sluice_common.params import TASKS
from trainer.features import feature_types, fit_feature_spec
from trainer.sluice_model import SluiceModel, feature_matrix

MAX_CLASSES = 200
MIN_ROWS = 10
# Metric used to compare a new model with the champion, and whether lower is better.
PRIMARY_METRIC = {"classification": ("log_loss", False), "regression": ("rmse", False)}


@dataclass(frozen=True)
class TrainingConfig:
    """Knobs for a training run; defaults suit most tabular data."""

    seed: int = 42
    validation_fraction: float = 0.2
    early_stopping_fraction: float = 0.15
    learning_rate: float = 0.1
    max_depth: int = 6
    max_rounds: int = 1000
    early_stopping_rounds: int = 100
    refit_max_rows: int = 200_000
    max_categories: int = 1000
    nthread: int = 0


@dataclass
class TrainedModel:
    """Everything a dev run produced, before it is logged."""

    model: SluiceModel
    spec: dict
    task: str
    task_reason: str
    metrics: dict
    params: dict
    best_rounds: int
    train_seconds: float
    n_train: int
    n_valid: int
    validation_frame: pd.DataFrame  # raw validation rows (features + target), for comparisons
    dropped_target_rows: int = 0  # regression rows whose target is not a finite number


def detect_task(target: pd.Series, requested: str = "auto") -> tuple[str, str]:
    """Classification or regression, and the reason for the choice."""
    if requested not in TASKS:
        raise ApiError(
            400, "invalid_task", f"task must be one of {', '.join(TASKS)}; got {requested!r}."
        )
    numbers = to_number(target, finite=False)
    all_numeric = bool(numbers.notna().all())
    distinct = int(target.nunique())
    if requested == "regression":
        if not all_numeric:
            bad = target[numbers.isna()].iloc[0]
            raise ApiError(
                422,
                "target_not_numeric",
                f"Regression needs a numeric target; {target.name!r} has values like {bad!r}. "
                "Use task=classification or pick another target.",
            )
        return "regression", "requested with task=regression"
    if requested == "classification":
        return "classification", "requested with task=classification"
    if not all_numeric:
        return "classification", f"target has text values ({distinct} distinct)"
    with np.errstate(invalid="ignore"):
        integral = bool(np.all(np.mod(numbers.to_numpy(), 1) == 0))
    if integral and (distinct <= 2 or (distinct <= 20 and distinct * 5 <= len(target))):
        return "classification", f"integer target with {distinct} distinct values"
    if integral:
        return (
            "regression",
            f"integer target with {distinct} distinct values (too many for classes)",
        )
    return "regression", "target has continuous numeric values"


def encode_target(target: pd.Series, task: str) -> tuple[np.ndarray, list[str] | None]:
    """Numeric training labels, and the class labels (original text) for classification."""
    if task == "regression":
        return to_number(target, finite=False).to_numpy(dtype="float64"), None
    labels = target.astype("object").map(str)
    numbers = to_number(target)
    if numbers.notna().all():  # numeric labels sort by value, not as text
        order = pd.DataFrame({"label": labels, "n": numbers}).drop_duplicates("label")
        classes = order.sort_values(["n", "label"])["label"].tolist()
    else:
        classes = sorted(labels.unique().tolist())
    if len(classes) < 2:
        raise ApiError(
            422,
            "single_class",
            f"The target {target.name!r} has a single value ({classes[0]!r}); "
            "classification needs at least two classes.",
        )
    if len(classes) > MAX_CLASSES:
        raise ApiError(
            422,
            "too_many_classes",
            f"The target has {len(classes)} distinct values; at most {MAX_CLASSES} classes are "
            "supported. Use task=regression for a numeric target.",
        )
    codes = pd.Categorical(labels, categories=classes).codes.astype("float64")
    return codes, classes


def split_rows(
    y: np.ndarray, task: str, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices for fitting and for held-out validation; stratified when it can be."""
    index = np.arange(len(y))
    stratify = None
    if task == "classification":
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and round(len(y) * fraction) >= len(counts):
            stratify = y
    fit_idx, held_idx = train_test_split(
        index, test_size=fraction, random_state=seed, stratify=stratify
    )
    return np.sort(fit_idx), np.sort(held_idx)


def booster_params(task: str, n_classes: int, config: TrainingConfig) -> dict:
    """XGBoost parameters for the task."""
    params = {
        "tree_method": "hist",
        "eta": config.learning_rate,
        "max_depth": config.max_depth,
        "min_child_weight": 1,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "max_cat_to_onehot": 4,
        "seed": config.seed,
        "nthread": config.nthread,
    }
    if task == "regression":
        params.update(objective="reg:squarederror", eval_metric="rmse")
    elif n_classes == 2:
        params.update(objective="binary:logistic", eval_metric="logloss")
    else:
        params.update(objective="multi:softprob", eval_metric="mlogloss", num_class=n_classes)
    return params


def score(task: str, y_true: np.ndarray, predictions: np.ndarray, proba: np.ndarray | None) -> dict:
    """Validation metrics; y_true are class codes (classification) or values."""
    if task == "regression":
        err = predictions - y_true
        return {
            "rmse": float(np.sqrt(np.mean(err**2))),
            "mae": float(np.mean(np.abs(err))),
            "r2": float(skm.r2_score(y_true, predictions)) if len(y_true) > 1 else float("nan"),
        }
    labels = np.arange(proba.shape[1])
    predicted = np.argmax(proba, axis=1)
    result = {
        "accuracy": float(skm.accuracy_score(y_true, predicted)),
        "f1_macro": float(skm.f1_score(y_true, predicted, average="macro", labels=labels)),
        "log_loss": float(skm.log_loss(y_true, np.clip(proba, 1e-15, 1), labels=labels)),
    }
    if proba.shape[1] == 2 and len(np.unique(y_true)) == 2:
        result["roc_auc"] = float(skm.roc_auc_score(y_true, proba[:, 1]))
    return result


def _fit(params, matrix, y, types, names, rounds, valid=None, early_stopping=None):
    train = xgb.DMatrix(
        matrix, label=y, feature_types=types, feature_names=names, enable_categorical=True
    )
    evals = []
    if valid is not None:
        evals = [
            (
                xgb.DMatrix(
                    valid[0],
                    label=valid[1],
                    feature_types=types,
                    feature_names=names,
                    enable_categorical=True,
                ),
                "valid",
            )
        ]
    return xgb.train(
        params,
        train,
        num_boost_round=rounds,
        evals=evals,
        early_stopping_rounds=early_stopping if evals else None,
        verbose_eval=False,
    )


def train_model(
    frame: pd.DataFrame, target: str, task: str = "auto", config: TrainingConfig | None = None
) -> TrainedModel:
    """Fit feature handling and booster on cleaned rows; score held-out validation rows."""
    config = config or TrainingConfig()
    if len(frame) < MIN_ROWS:
        raise ApiError(
            422,
            "too_few_rows",
            f"Training needs at least {MIN_ROWS} rows with a target; this file has {len(frame)}.",
        )
    task, reason = detect_task(frame[target], task)
    y, classes = encode_target(frame[target], task)
    finite = np.isfinite(y)
    dropped_target_rows = int((~finite).sum())
    if dropped_target_rows:  # inf or overflowing targets: nothing to learn from those rows
        frame, y = frame[finite].reset_index(drop=True), y[finite]
        if len(frame) < MIN_ROWS:
            raise ApiError(
                422,
                "too_few_rows",
                f"Only {len(frame)} rows have a finite target; training needs {MIN_ROWS}.",
            )
    fit_idx, valid_idx = split_rows(y, task, config.validation_fraction, config.seed)
    fit_rows = frame.iloc[fit_idx]
    spec = fit_feature_spec(fit_rows, target, config.max_categories)
    if not spec["inputs"]:
        reasons = "; ".join(f"{d['name']}: {d['reason']}" for d in spec["dropped"]) or "none"
        raise ApiError(
            422,
            "no_usable_features",
            f"No column besides the target can be used as a feature (dropped: {reasons}).",
        )
    spec.update(task=task, target=target, classes=classes)
    matrix, _ = feature_matrix(frame, spec)
    types, names = feature_types(spec), spec["feature_names"]
    params = booster_params(task, len(classes or []), config)

    started = time.perf_counter()
    inner_fit, inner_stop = split_rows(
        y[fit_idx], task, config.early_stopping_fraction, config.seed + 1
    )
    fit_rows_idx, stop_rows_idx = fit_idx[inner_fit], fit_idx[inner_stop]
    booster = _fit(
        params,
        matrix[fit_rows_idx],
        y[fit_rows_idx],
        types,
        names,
        config.max_rounds,
        valid=(matrix[stop_rows_idx], y[stop_rows_idx]),
        early_stopping=config.early_stopping_rounds,
    )
    best_rounds = booster.best_iteration + 1
    if len(fit_idx) <= config.refit_max_rows:
        # Small data: every fitting row counts, so refit on all of them with the rounds found,
        # scaled for the larger sample.
        rounds = max(1, round(best_rounds / (1 - config.early_stopping_fraction)))
        booster = _fit(params, matrix[fit_idx], y[fit_idx], types, names, rounds)
        best_rounds = rounds
    else:
        booster = booster[:best_rounds]
    train_seconds = time.perf_counter() - started

    model = SluiceModel(booster, spec)
    predictions, proba = model.score_matrix(matrix[valid_idx])
    values = proba if task == "classification" else predictions
    metrics = score(task, y[valid_idx], values, proba)
    return TrainedModel(
        model=model,
        spec=spec,
        task=task,
        task_reason=reason,
        metrics=metrics,
        params=params,
        best_rounds=best_rounds,
        train_seconds=train_seconds,
        n_train=len(fit_idx),
        n_valid=len(valid_idx),
        validation_frame=frame.iloc[valid_idx].reset_index(drop=True),
        dropped_target_rows=dropped_target_rows,
    )


def score_on_frame(model: SluiceModel, frame: pd.DataFrame) -> dict:
    """Metrics of any Sluice model on labelled rows (used to compare with the champion)."""
    spec = model.spec
    target = spec["target"]
    scored = model.score_frame(frame)
    if spec["task"] == "regression":
        y = to_number(frame[target]).to_numpy(dtype="float64")
        return score("regression", y, scored.predictions, None)
    codes = pd.Categorical(frame[target].astype("object").map(str), categories=spec["classes"])
    return score("classification", codes.codes.astype("float64"), None, scored.probabilities)
