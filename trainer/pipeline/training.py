"""A dev run on one machine: the upload read, typed, split, fitted, validated and profiled."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from sluice_common import error_codes
from sluice_common.errors import ApiError
from sluice_common.tables.parsing import one_column_error
from trainer.fit import rows as rowsets
from trainer.fit.booster import boost, booster_params, fit, inner_split
from trainer.fit.config import TrainingConfig
from trainer.fit.features import (
    clean_table,
    feature_types,
    fit_feature_spec,
    fit_kinds,
    text_columns_of,
)
from trainer.fit.metrics import PRIMARY_METRIC, baseline_losses, baseline_of, row_losses, score
from trainer.fit.target import Target, read_target
from trainer.model import sluice_cells as cells
from trainer.model.sluice_model import SluiceModel, feature_matrix
from trainer.monitoring.profile import build_profile

MIN_ROWS = 10


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
    inner_fit, inner_stop = inner_split(
        keys[fit_idx], config.validation_fraction, config.early_stopping_fraction
    )
    fit_rows, stop_rows = fit_idx[inner_fit], fit_idx[inner_stop]

    def train(rows: str, rounds: int, early_stopping: int | None):
        if rows == "train":
            return fit(params, matrix[fit_idx], y[fit_idx], types, names, rounds, on_round=on_round)
        valid = (matrix[stop_rows], y[stop_rows])
        return fit(
            params,
            matrix[fit_rows],
            y[fit_rows],
            types,
            names,
            rounds,
            valid=valid,
            early_stopping=early_stopping,
            on_round=on_round,
        )

    booster, best_rounds = boost(train, len(fit_idx), config)
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
        baseline_losses=baseline_losses(
            read.task, baseline_of(read.task, y[fit_idx], len(read.classes or [])), y_valid
        ),
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
