"""The dev pipeline, written once: ordered stages that an engine runs.

read -> target -> kinds -> split (keys) -> spec -> matrices -> fit -> validate -> profile.

The engine holds the rows (one Arrow table in memory: pipeline/training.py; partitions on
Dask workers: pipeline/dask_engine.py) and does each stage's work on them; the sequence, the
checks, the booster's parameters and rounds, the metrics and the monitoring reference are
decided here, from what the stages return.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pyarrow as pa

from sluice_common import error_codes
from sluice_common.errors import ApiError
from trainer.fit import rows as rowsets
from trainer.fit.booster import boost, booster_params
from trainer.fit.config import TrainingConfig
from trainer.fit.features import feature_types
from trainer.fit.metrics import PRIMARY_METRIC, baseline_losses, row_losses, score
from trainer.fit.target import Target
from trainer.model import sluice_cells as cells
from trainer.model.sluice_model import SluiceModel, feature_matrix
from trainer.monitoring.profile import build_profile

MIN_ROWS = 10


@dataclass
class Read:
    """What reading decided: the target column's name, the columns, the delimiter."""

    target: str
    columns: list[str]
    delimiter: str = ","


@dataclass
class Split:
    """Rows kept (a readable target), those at or above the validation fraction, and the
    columns whose read cells make a row's key."""

    rows: int
    n_train: int
    key_columns: list[str]


@dataclass
class Held:
    """The validation rows brought to the trainer (all of them, or a keyed sample) and the
    training rows' label summary for the baseline (mean, or class counts)."""

    table: pa.Table
    matrix: np.ndarray
    y: np.ndarray
    keys: np.ndarray
    baseline: object


@dataclass
class Reference:
    """The training rows the monitoring reference is made of (all, or a keyed sample)."""

    matrix: np.ndarray
    cells: object  # cells(columns) -> those columns' cells of the same rows
    table: pa.Table  # the rows the run logs as its dataset (all of them in memory)
    keys: np.ndarray | None  # every row's key, when the engine holds every row


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
    refit: bool = False  # retrained on every training row with the rounds early stopping found
    profile: dict | None = None  # the monitoring reference (trainer/monitoring/profile.py)


class Engine(Protocol):
    """Where the rows are and how each stage's work is done on them."""

    booster_overrides: dict  # parameters the engine sets (the cluster's threads)

    def progress(self, stage: str) -> None: ...
    def checkpoint(self) -> None: ...  # raises when the work was cancelled
    def read(self, requested_target: str | None) -> Read: ...
    def target(self, read: Read, task: str) -> Target: ...
    def kinds(self, read: Read, target: Target, config: TrainingConfig) -> tuple: ...
    def split(self, read: Read, target: Target, kinds, config: TrainingConfig) -> Split: ...
    def spec(self, read: Read, kinds, dropped, split: Split, config) -> dict: ...
    def matrices(self, spec: dict, split: Split, config: TrainingConfig) -> None: ...
    def trainer(self, params: dict, types: list, names: list[str]): ...
    def local_booster(self, booster, names: list[str]): ...
    def held_out(self) -> Held: ...
    def reference(self) -> Reference: ...
    def report(self, split: Split, held: Held, reference: Reference) -> dict: ...


def too_few_rows(rows: int, where: str) -> ApiError:
    return ApiError(
        error_codes.TOO_FEW_ROWS,
        f"Training needs at least {MIN_ROWS} rows with a target; {where} {rows}.",
    )


def check_readable_rows(rows: int) -> None:
    """Rows left once those whose target cannot be read are dropped."""
    if rows < MIN_ROWS:
        raise ApiError(
            error_codes.TOO_FEW_ROWS,
            f"Only {rows} rows have a readable target; training needs {MIN_ROWS}.",
        )


def too_few_distinct(rows: int) -> ApiError:
    return ApiError(
        error_codes.TOO_FEW_ROWS,
        f"The {rows} rows hold too few distinct rows to train on; add more data.",
    )


def check_features(spec: dict) -> None:
    if not spec["inputs"]:
        reasons = "; ".join(f"{d['name']}: {d['reason']}" for d in spec["dropped"]) or "none"
        raise ApiError(
            error_codes.NO_USABLE_FEATURES,
            f"No column besides the target can be used as a feature (dropped: {reasons}).",
        )


def complete_spec(
    spec: dict,
    read: Target,
    target: str,
    columns: list[str],
    fraction: float,
    key_columns: list[str],
) -> dict:
    """What a spec records besides its inputs: task, target, classes, the upload's columns and
    the split."""
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


def train(engine: Engine, requested_target: str | None, task: str, config: TrainingConfig):
    """The dev pipeline: a TrainedModel from the engine's rows."""
    read = engine.read(requested_target)
    engine.progress("typing")
    target = engine.target(read, task)
    kinds, dropped = engine.kinds(read, target, config)
    engine.progress("splitting")
    split = engine.split(read, target, kinds, config)
    if split.n_train < 2:
        raise too_few_distinct(split.rows)
    engine.progress("fitting features")
    spec = engine.spec(read, kinds, dropped, split, config)
    check_features(spec)
    fraction = config.validation_fraction
    complete_spec(spec, target, read.target, read.columns, fraction, split.key_columns)
    engine.matrices(spec, split, config)
    types, names = feature_types(spec), spec["feature_names"]
    params = booster_params(target.task, len(target.classes or []), config, len(names))
    params.update(engine.booster_overrides)
    started = time.perf_counter()
    booster, best_rounds, refit = boost(engine.trainer(params, types, names), split.n_train, config)
    train_seconds = time.perf_counter() - started

    engine.progress("validating")
    model = SluiceModel(engine.local_booster(booster, names), spec, cells)
    held = engine.held_out()
    validation, metrics, predictions = validate(model, target.task, held)
    reference = engine.reference()
    profile = reference_profile(
        model,
        reference.cells,
        reference.matrix,
        predictions,
        validation.proba,
        metrics,
        valid_losses=validation.losses,
    )
    model.profile = profile
    return TrainedModel(
        model=model,
        spec=spec,
        task=target.task,
        task_reason=target.reason,
        metrics=metrics,
        params=params,
        best_rounds=best_rounds,
        refit=refit,
        train_seconds=train_seconds,
        n_train=split.n_train,
        n_valid=split.rows - split.n_train,
        validation=validation,
        report=engine.report(split, held, reference),
        table=reference.table,
        split_keys=reference.keys,
        profile=profile,
    )


def validate(model: SluiceModel, task: str, held: Held):
    """The new model's scores on the held-out rows: metrics, and each row's loss and the
    baseline's."""
    predictions, proba = model.score_matrix(held.matrix)
    metrics = score(task, held.y, predictions, proba)
    validation = Validation(
        table=held.table,
        y=held.y,
        keys=held.keys,
        losses=row_losses(task, held.y, predictions, proba),
        baseline_losses=baseline_losses(task, held.baseline, held.y),
        proba=proba,
    )
    return validation, metrics, predictions


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
