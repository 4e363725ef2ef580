"""Task choice, split, XGBoost fit and validation metrics (pure; no MLflow, no Flask)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import xgboost as xgb
from sklearn import metrics as skm

from sluice_common import error_codes
from sluice_common.choices import TASKS
from sluice_common.errors import ApiError
from sluice_common.tables.parsing import one_column_error
from trainer.fit import rows as rowsets
from trainer.fit.features import (
    Distinct,
    clean_table,
    distinct_of,
    feature_types,
    fit_feature_spec,
    fit_kinds,
    fit_number_format,
    text_columns_of,
)
from trainer.model import sluice_cells as cells
from trainer.model.sluice_model import SluiceModel, feature_matrix
from trainer.monitoring.profile import build_profile

MAX_CLASSES = 200
MIN_ROWS = 10
# Metric used to compare a new model with the champion; every one of them is a loss.
PRIMARY_METRIC = {"classification": "log_loss", "regression": "rmse"}
_EPS = 1e-15


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
    min_category_rows: int = 5
    nthread: int = 0


@dataclass
class Target:
    """The target column read as labels (classification) or numbers (regression)."""

    task: str
    reason: str
    y: np.ndarray  # class codes or values, per kept row
    classes: list[str] | None
    number_format: dict | None
    keep: np.ndarray  # rows whose target was read


@dataclass
class Validation:
    """The held-out rows and how the new model did on each of them."""

    table: pa.Table  # raw cells of the validation rows, for scoring other models
    y: np.ndarray
    keys: np.ndarray  # row keys in [0, 1): a row is held out when its key < the fraction
    losses: np.ndarray  # the new model's loss per row
    baseline_losses: np.ndarray  # the trivial baseline's (class prior or training mean)
    # The new model's class probabilities (classification): the promotion gate's ranking test
    # shows skill that a few confident mistakes hide from the log loss.
    proba: np.ndarray | None = None


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
    validation: Validation
    report: dict = field(default_factory=dict)  # rows and cells: what was dropped or unread
    table: pa.Table | None = None  # the rows trained and validated on (cleaned cells)
    split_keys: np.ndarray | None = None  # every row's key: held out when below the fraction
    profile: dict | None = None  # the monitoring reference (trainer/monitoring/profile.py)


def _first_unreadable(distinct: Distinct, result: dict) -> str:
    bad = np.flatnonzero(result["bad"])
    return str(distinct.values[int(bad[0])].as_py()) if len(bad) else ""


def read_target(column: pa.Array, name: str, requested: str, prefer_comma: bool) -> Target:
    """Classification or regression (with the reason), and the target read accordingly.

    A target is numeric when one number convention reads at least 95% of its values, as for
    feature columns; the rows whose target it cannot read are dropped and counted. A numeric
    target with few distinct integers, every value readable, is a set of classes. Classes
    of one row each (a date or an id picked as the target) are refused.
    """
    read = _read_target(column, name, requested, prefer_comma)
    if read.task == "classification":
        check_repeated_classes(read.y, name)
    return read


def check_repeated_classes(codes: np.ndarray, name: str) -> None:
    """Refuse a target in which every class has a single row: no class can be learned, and
    such a target is almost always the wrong column (a date, an id, free text)."""
    counts = np.bincount(codes.astype("int64")) if len(codes) else np.zeros(0, "int64")
    if len(counts) and counts.max() <= 1:
        raise ApiError(
            error_codes.NO_REPEATED_CLASSES,
            f"The target {name!r} has {len(codes)} rows and {len(codes)} distinct values: "
            "every class has a single row, so no class can be learned (is it a date, an id "
            "or free text?). Name the column to predict with target=NAME (without it the "
            "target is the column named 'target', else the last column).",
            rows=int(len(codes)),
            distinct_values=int(len(codes)),
        )


def _read_target(column: pa.Array, name: str, requested: str, prefer_comma: bool) -> Target:
    if requested not in TASKS:
        raise ApiError(
            error_codes.INVALID_TASK, f"task must be one of {', '.join(TASKS)}; got {requested!r}."
        )
    distinct = distinct_of(column)
    number = fit_number_format(distinct, prefer_comma, share=0.0)
    all_numeric = number is not None and number["unreadable"] == 0
    mostly_numeric = number is not None and number["unreadable"] <= 0.05 * distinct.total
    n_distinct = len(distinct.counts)
    if requested == "regression" and not mostly_numeric:
        example = _first_unreadable(distinct, number) if number else ""
        raise ApiError(
            error_codes.TARGET_NOT_NUMERIC,
            f"Regression needs a numeric target; {name!r} has values like {example!r}. "
            "Use task=classification or pick another target.",
        )
    if requested == "regression" or (requested == "auto" and mostly_numeric):
        fmt = number["format"]
        values = cells.read_numbers(column, fmt).values
        # XGBoost keeps labels as float32: beyond its range a target cannot be learned.
        values[np.abs(values) > np.finfo(np.float32).max] = np.nan
        read = values[~np.isnan(values)]
        n_distinct = len(np.unique(read))  # 1 and 1.0 are one value
        if requested == "auto":
            integral = bool(np.all(np.mod(read, 1) == 0))
            few = n_distinct <= 2 or (n_distinct <= 20 and n_distinct * 5 <= len(read))
            if integral and few:
                if not all_numeric:  # codes with some text among them: all of it labels
                    return _classes(
                        column, name, f"target has text values ({len(distinct.counts)} distinct)"
                    )
                return _classes(column, name, f"integer target with {n_distinct} distinct values")
            reason = (
                f"integer target with {n_distinct} distinct values (too many for classes)"
                if integral
                else "target has continuous numeric values"
            )
        else:
            reason = "requested with task=regression"
        keep = ~np.isnan(values)
        return Target("regression", reason, values[keep], None, fmt.to_dict(), keep)
    if requested == "classification":
        return _classes(column, name, "requested with task=classification")
    if number is not None and n_distinct > 20 and number["unreadable"] <= 0.5 * distinct.total:
        # Mostly numbers among text: as classes, nearly every value would be a class of its
        # own (a 150-class model of one row each), and too few are numbers for regression.
        share = 1 - number["unreadable"] / distinct.total
        raise ApiError(
            error_codes.AMBIGUOUS_TARGET,
            f"{name!r} is {share:.0%} numbers and the rest text (such as "
            f"{_first_unreadable(distinct, number)!r}): clean the column so that its values "
            "are numbers (at least 95%) or labels, or set task=classification to keep every "
            "distinct value as a class.",
        )
    return _classes(column, name, f"target has text values ({n_distinct} distinct)")


def _classes(column: pa.Array, name: str, reason: str) -> Target:
    """Class labels as category keys (text as written, numbers written one way)."""
    labels = cells.category_keys(column)
    present = sorted((key for key in pd.unique(labels) if key is not None), key=_label_order)
    if len(present) < 2:
        raise ApiError(
            error_codes.SINGLE_CLASS,
            f"The target {name!r} has a single value ({present[0]!r}); "
            "classification needs at least two classes.",
        )
    if len(present) > MAX_CLASSES:
        raise ApiError(
            error_codes.TOO_MANY_CLASSES,
            f"The target has {len(present)} distinct values; at most {MAX_CLASSES} classes are "
            "supported. Use task=regression for a numeric target.",
        )
    index = {label: code for code, label in enumerate(present)}
    codes = np.array([index.get(label, -1) for label in labels], dtype="float64")
    keep = codes >= 0
    return Target("classification", reason, codes[keep], present, None, keep)


def _label_order(label: str):
    """Numeric labels sort by value, text labels as text (numbers first)."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


# Column subsampling only for wide matrices: with few columns, 0.8 of them leaves trees that
# cannot see two columns together (2 columns: one per tree), so interactions go unlearned.
COLSAMPLE_MIN_COLUMNS = 10


def booster_params(task: str, n_classes: int, config: TrainingConfig, n_columns: int) -> dict:
    """XGBoost parameters for the task and the matrix width."""
    params = {
        "tree_method": "hist",
        "eta": config.learning_rate,
        "max_depth": config.max_depth,
        "min_child_weight": 1,
        "subsample": 0.8,
        "colsample_bytree": 0.8 if n_columns >= COLSAMPLE_MIN_COLUMNS else 1.0,
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


def row_losses(task: str, y: np.ndarray, predictions: np.ndarray, proba) -> np.ndarray:
    """Each row's loss: log loss of the true class, or squared error."""
    if task == "regression":
        return (predictions - y) ** 2
    picked = proba[np.arange(len(y)), y.astype("int64")]
    return -np.log(np.clip(picked, _EPS, 1.0))


def score(task: str, y_true: np.ndarray, predictions: np.ndarray, proba: np.ndarray | None) -> dict:
    """Validation metrics; y_true are class codes (classification) or values."""
    if len(y_true) == 0:
        return {}
    if task == "regression":
        err = predictions - y_true
        return {
            "rmse": float(np.sqrt(np.mean(err**2))),
            "mae": float(np.mean(np.abs(err))),
            "r2": float(skm.r2_score(y_true, predictions)) if len(y_true) > 1 else float("nan"),
        }
    labels = np.arange(proba.shape[1])
    predicted = np.argmax(proba, axis=1)
    present = np.unique(y_true).astype("int64")  # classes absent here say nothing about f1
    result = {
        "accuracy": float(skm.accuracy_score(y_true, predicted)),
        "f1_macro": float(
            skm.f1_score(y_true, predicted, average="macro", labels=present, zero_division=0)
        ),
        "log_loss": float(skm.log_loss(y_true, np.clip(proba, _EPS, 1), labels=labels)),
    }
    if proba.shape[1] == 2 and len(present) == 2:
        result["roc_auc"] = float(skm.roc_auc_score(y_true, proba[:, 1]))
    return result


def _inner_split(keys: np.ndarray, validation: float, fraction: float):
    """Early-stopping rows among the training rows (keys at or above `validation`): the next
    `fraction` of the key range. Decided by the same keys as the split, so copies of a record
    are never on both sides of early stopping either (it would never stop)."""
    stop = keys < validation + fraction * (1 - validation)
    if stop.all() or not stop.any():  # a few rows: the lowest keys, at least one each side
        count = min(len(keys) - 1, max(1, round(fraction * len(keys))))
        stop = np.zeros(len(keys), dtype=bool)
        stop[np.argsort(keys, kind="stable")[:count]] = True
    return np.flatnonzero(~stop), np.flatnonzero(stop)


class RoundProgress(xgb.callback.TrainingCallback):
    """Reports each boosting round to `on_round(done, planned)`; a true answer stops
    training (a cancelled job)."""

    def __init__(self, on_round, planned: int):
        super().__init__()
        self.on_round = on_round
        self.planned = planned

    def after_iteration(self, model, epoch, evals_log) -> bool:
        return bool(self.on_round(epoch + 1, self.planned))


def _fit(params, matrix, y, types, names, rounds, valid=None, early_stopping=None, on_round=None):
    # Feature names go on the booster after training, not on the matrices: XGBoost checks a
    # matrix's names against the booster's on every round, converting each name from C, which
    # made a 20,000-column upload spend most of its training time there.
    def dmatrix(x, label):
        return xgb.DMatrix(x, label=label, feature_types=types, enable_categorical=True)

    evals = [(dmatrix(*valid), "valid")] if valid is not None else []
    booster = xgb.train(
        params,
        dmatrix(matrix, y),
        num_boost_round=rounds,
        evals=evals,
        early_stopping_rounds=early_stopping if evals else None,
        verbose_eval=False,
        callbacks=[RoundProgress(on_round, rounds)] if on_round else None,
    )
    booster.feature_names = names
    return booster


def baseline_losses(task: str, y_fit: np.ndarray, y_valid: np.ndarray, n_classes: int):
    """Per-row losses of the trivial model: the class prior of the training rows, or their
    mean."""
    if task == "regression":
        return baseline_losses_from(task, float(y_fit.mean()), y_valid)
    counts = np.bincount(y_fit.astype("int64"), minlength=n_classes)
    return baseline_losses_from(task, counts, y_valid)


def baseline_losses_from(task: str, reference, y_valid: np.ndarray) -> np.ndarray:
    """The trivial model's losses from the training rows' mean (regression) or class counts
    (classification), which partitions can sum."""
    if task == "regression":
        return (y_valid - reference) ** 2
    prior = np.asarray(reference, dtype="float64") / np.sum(reference)
    return -np.log(np.clip(prior[y_valid.astype("int64")], _EPS, 1.0))


def complete_spec(
    spec: dict,
    read: Target,
    target: str,
    columns: list[str],
    fraction: float,
    key_columns: list[str],
) -> dict:
    """What a spec records besides its inputs: task, target, classes, the upload's columns and
    the split (one definition, for the trainer's and the cluster's training)."""
    spec.update(
        task=read.task,
        target=target,
        classes=read.classes,
        target_number_format=read.number_format,
        upload_columns=[name for name in columns if name != target],
        split={
            "method": rowsets.SPLIT_METHOD,
            "fraction": fraction,
            "columns": sorted(key_columns),
        },
    )
    return spec


def train_model(
    data,
    target: str,
    task: str = "auto",
    config: TrainingConfig | None = None,
    delimiter: str = ",",
    on_round=None,
) -> TrainedModel:
    """Read the raw cells, decide each column's kind, split by row content, fit feature
    handling and booster on the training rows, score the validation rows."""
    config = config or TrainingConfig()
    table = clean_table(rowsets.as_table(data))
    rows_in = table.num_rows
    if target not in table.column_names:
        raise ApiError(error_codes.UNKNOWN_TARGET, f"Target column {target!r} is not in the table.")
    if table.column_names == [target]:
        raise one_column_error(target)  # a file read as one column: say so, not "no features"
    if table.column(target).null_count == rows_in:
        raise ApiError(
            error_codes.EMPTY_TARGET,
            f"Target column {target!r} has no values. Pick another column with ?target=NAME.",
        )
    empty = rowsets.empty_rows(table)
    no_target = rowsets.is_null(table.column(target)) & ~empty
    table = rowsets.keep_rows(table, ~empty & ~no_target)
    dropped_rows = {"empty": int(empty.sum()), "missing_target": int(no_target.sum())}
    if table.num_rows < MIN_ROWS:
        raise ApiError(
            error_codes.TOO_FEW_ROWS,
            f"Training needs at least {MIN_ROWS} rows with a target; this file has "
            f"{table.num_rows}.",
        )
    prefer_comma = delimiter == ";"
    read = read_target(table.column(target).combine_chunks(), target, task, prefer_comma)
    if not read.keep.all():
        dropped_rows["unreadable_target"] = int((~read.keep).sum())
        table = rowsets.keep_rows(table, read.keep)
        if table.num_rows < MIN_ROWS:
            raise ApiError(
                error_codes.TOO_FEW_ROWS,
                f"Only {table.num_rows} rows have a readable target; training needs {MIN_ROWS}.",
            )
    y = read.y
    # Text columns read together: each rule runs once per block of columns (wide tables).
    texts = text_columns_of(table, target)
    kinds, dropped, unreadable = fit_kinds(
        table, target, delimiter, config.min_category_rows, texts=texts
    )
    read_cells = rowsets.read_cells(table, kinds, target, y, texts=texts)
    content = rowsets.content_hashes(read_cells)
    keys = rowsets.row_keys(content, rowsets.observations(read_cells, target, content))
    key_columns = list(read_cells)
    del read_cells
    held = keys < config.validation_fraction
    fit_idx, valid_idx = np.flatnonzero(~held), np.flatnonzero(held)
    if len(fit_idx) < 2:
        raise ApiError(
            error_codes.TOO_FEW_ROWS,
            f"The {table.num_rows} rows hold too few distinct rows to train on; add more data.",
        )
    spec = fit_feature_spec(
        table,
        target,
        ~held,
        kinds,
        dropped,
        config.min_category_rows,
        config.max_categories,
        texts=texts,
    )
    del texts
    if not spec["inputs"]:
        reasons = "; ".join(f"{d['name']}: {d['reason']}" for d in spec["dropped"]) or "none"
        raise ApiError(
            error_codes.NO_USABLE_FEATURES,
            f"No column besides the target can be used as a feature (dropped: {reasons}).",
        )
    complete_spec(spec, read, target, table.column_names, config.validation_fraction, key_columns)
    matrix, _ = feature_matrix(table, spec, cells)
    types, names = feature_types(spec), spec["feature_names"]
    params = booster_params(read.task, len(read.classes or []), config, len(names))

    started = time.perf_counter()
    inner_fit, inner_stop = _inner_split(
        keys[fit_idx], config.validation_fraction, config.early_stopping_fraction
    )
    fit_rows, stop_rows = fit_idx[inner_fit], fit_idx[inner_stop]
    booster = _fit(
        params,
        matrix[fit_rows],
        y[fit_rows],
        types,
        names,
        config.max_rounds,
        valid=(matrix[stop_rows], y[stop_rows]),
        early_stopping=config.early_stopping_rounds,
        on_round=on_round,
    )
    best_rounds = booster.best_iteration + 1
    if len(fit_idx) <= config.refit_max_rows:
        # Small data: every training row counts, so refit on all of them with the rounds
        # found, scaled for the larger sample.
        rounds = max(1, round(best_rounds / (1 - config.early_stopping_fraction)))
        booster = _fit(params, matrix[fit_idx], y[fit_idx], types, names, rounds, on_round=on_round)
        best_rounds = rounds
    else:
        booster = booster[:best_rounds]
    train_seconds = time.perf_counter() - started

    model = SluiceModel(booster, spec, cells)
    predictions, proba = model.score_matrix(matrix[valid_idx])
    y_valid = y[valid_idx]
    metrics = score(read.task, y_valid, predictions, proba)
    validation = Validation(
        table=rowsets.take_rows(table, valid_idx),
        y=y_valid,
        keys=keys[valid_idx],
        losses=row_losses(read.task, y_valid, predictions, proba),
        baseline_losses=baseline_losses(read.task, y[fit_idx], y_valid, len(read.classes or [])),
        proba=proba,
    )

    def fit_cells(columns: list[str]) -> pa.Table:
        return rowsets.take_rows(table.select(columns), fit_idx)

    profile = reference_profile(
        model,
        fit_cells,
        matrix[fit_idx],
        predictions,
        proba,
        metrics,
        valid_losses=validation.losses,
    )
    model.profile = profile
    report = {
        "rows_in": rows_in,
        "rows_out": table.num_rows,
        "dropped_rows": dropped_rows,
        "duplicate_rows": rowsets.duplicate_count(content),
        "missing_values": rowsets.null_counts(table),
        "unreadable_treated_as_missing": unreadable,
    }
    return TrainedModel(
        model=model,
        spec=spec,
        task=read.task,
        task_reason=read.reason,
        metrics=metrics,
        params=params,
        best_rounds=best_rounds,
        train_seconds=train_seconds,
        n_train=len(fit_idx),
        n_valid=len(valid_idx),
        validation=validation,
        report=report,
        table=table,
        split_keys=keys,
        profile=profile,
    )


def reference_profile(model, fit_cells, fit_matrix, predictions, proba, metrics, valid_losses=None):
    """The monitoring reference of a trained model: its training rows (matrix, and
    `fit_cells(columns)` giving their cells; a keyed sample on a cluster) and its validation
    predictions."""
    spec = model.spec
    # What the model reports reading the training rows' categorical cells (levels outside its
    # kept ones).
    grouped = [i for i in spec["inputs"] if i["kind"] == "categorical" and i.get("other")]
    train_warnings = {}
    if grouped:
        grouped_spec = {"inputs": grouped, "feature_names": [i["name"] for i in grouped]}
        _, train_warnings = feature_matrix(
            fit_cells([i["name"] for i in grouped]), grouped_spec, cells
        )
    gain = model.booster.get_score(importance_type="total_gain")
    position = {name: i for i, name in enumerate(spec["feature_names"])}
    return build_profile(
        spec,
        fit_matrix,
        predictions,
        proba,
        metrics,
        PRIMARY_METRIC[spec["task"]],
        gain={position[name]: value for name, value in gain.items() if name in position},
        train_warnings=train_warnings,
        valid_losses=valid_losses,
    )


def labels_of(spec: dict, column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A target column read the way a model reads its target: class codes (or values), and
    which rows were readable (known class, or a number in the target's format)."""
    if spec["task"] == "regression":
        fmt = cells.NumberFormat.from_dict(spec.get("target_number_format"))
        values = cells.read_numbers(column, fmt).values
        # XGBoost keeps labels as float32: beyond its range a target cannot be learned.
        values[np.abs(values) > np.finfo(np.float32).max] = np.nan
        return values, ~np.isnan(values)
    index = {label: code for code, label in enumerate(spec["classes"])}
    distinct, positions = cells.distinct_cells(column)
    codes = np.array(
        [index.get(cells.category_key(value), -1) for value in distinct] + [-1], dtype="float64"
    )[positions]
    return codes, codes >= 0
