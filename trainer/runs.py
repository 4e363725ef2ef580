"""The dev and prod phases: train-log-register-promote, and score with the champion."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time

import pandas as pd
import requests
from mlflow.exceptions import MlflowException

from sluice_common.errors import ApiError
from trainer import registry
from trainer.promotion import decide, schema_difference, schema_of
from trainer.serving import ChampionCache
from trainer.sluice_model import table_rows
from trainer.training import PRIMARY_METRIC, TrainingConfig, score_on_frame, train_model

log = logging.getLogger(__name__)
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()
TRACKING_ERRORS = (MlflowException, requests.RequestException, OSError)


@contextlib.contextmanager
def promotion_lock(state_dir: str, model_name: str):
    """Serialise register-and-promote per model name across threads and worker processes."""
    with _thread_locks_guard:
        thread_lock = _thread_locks.setdefault(model_name, threading.Lock())
    lock_dir = os.path.join(state_dir, "locks")
    os.makedirs(lock_dir, exist_ok=True)
    path = os.path.join(lock_dir, hashlib.sha1(model_name.encode()).hexdigest() + ".lock")
    with thread_lock, open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tracking_unavailable(err: Exception) -> ApiError:
    """The 503 answered when the MLflow tracking server cannot be used."""
    log.warning("MLflow tracking server error: %s", err)
    return ApiError(
        503,
        "tracking_unavailable",
        "The MLflow tracking server is not reachable; try again when it is back.",
    )


def dev_run(
    frame: pd.DataFrame,
    cleaning: dict,
    *,
    model_name: str,
    target: str,
    task: str,
    promote: str,
    config: TrainingConfig,
    cache: ChampionCache,
    state_dir: str,
    tags: dict[str, str],
) -> dict:
    """Train, log, register and decide promotion; the dev answer."""
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    try:
        registry.ping()  # fail fast: no point training what cannot be logged
    except TRACKING_ERRORS as err:
        raise tracking_unavailable(err) from err
    lap("tracking_check")
    trained = train_model(frame, target, task, config)
    lap("train")
    metric, higher_is_better = PRIMARY_METRIC[trained.task]
    try:
        run_id, model_uri = registry.log_run(trained, model_name, frame, cleaning, tags)
        lap("log_run")
        with promotion_lock(state_dir, model_name):
            version = registry.register(model_uri, model_name, run_id, {"sluice.run_id": run_id})
            lap("register")
            current = registry.champion_version(model_name)
            schema_change = champion_score = None
            if current is not None and promote == "auto":
                champion = cache.model(model_name, current)
                schema_change = schema_difference(schema_of(trained.spec), schema_of(champion.spec))
                if schema_change is None:
                    champion_score = score_on_frame(champion, trained.validation_frame)[metric]
            decision = decide(
                promote,
                current,
                schema_change,
                metric,
                trained.metrics[metric],
                champion_score,
                higher_is_better,
            )
            if decision.promoted:
                registry.set_champion(model_name, version, decision.to_dict())
                cache.adopt(model_name, version, trained.model)
                cache.notify_promoted(model_name, version)
            lap("promotion")
    except TRACKING_ERRORS as err:
        raise tracking_unavailable(err) from err
    champion_version = version if decision.promoted else current
    return {
        "phase": "dev",
        "model": model_name,
        "version": version,
        "run_id": run_id,
        "target": target,
        "task": {"type": trained.task, "reason": trained.task_reason},
        "metrics": trained.metrics,
        "promoted": decision.promoted,
        "reason": decision.reason,
        "promotion": decision.to_dict(),
        "champion_version": champion_version,
        "features": {
            "used": [
                {"name": item["name"], "kind": item["kind"]} for item in trained.spec["inputs"]
            ],
            "dropped": trained.spec["dropped"],
            "n_matrix_columns": len(trained.spec["feature_names"]),
        },
        "training": {
            "rows_train": trained.n_train,
            "rows_validation": trained.n_valid,
            "rounds": trained.best_rounds,
            "seconds": round(trained.train_seconds, 4),
            "dropped_rows_non_finite_target": trained.dropped_target_rows,
            "booster_seconds": round(trained.train_seconds, 4),
            "stage_seconds": timings,
        },
        "cleaning": cleaning,
    }


def prod_run(
    frame: pd.DataFrame | dict[str, list],
    cleaning: dict,
    *,
    model_name: str,
    proba: bool,
    cache: ChampionCache,
) -> dict:
    """Score every row with the champion, in input order; the prod answer.

    `frame` may be a dict of column lists (small batches); champions logged before models
    accepted one get a DataFrame.
    """
    try:
        champion = cache.get(model_name)
        if champion is None:
            exists = registry.model_exists(model_name)
    except TRACKING_ERRORS as err:
        raise tracking_unavailable(err) from err
    if champion is None:
        if exists:
            raise ApiError(
                409,
                "no_champion",
                f"Model {model_name!r} has versions but none is the champion. Promote one "
                "(alias 'champion' in the MLflow UI) or train with phase=dev.",
            )
        raise ApiError(
            404,
            "model_not_found",
            f"No model named {model_name!r} has been trained. Train it first with phase=dev "
            f"(model={model_name}).",
        )
    # Checked by name here: the champion runs its own logged copy of sluice_model, so its
    # exception classes are not this process's.
    if isinstance(frame, dict) and not getattr(champion.model, "accepts_columns", False):
        frame = pd.DataFrame(frame)
    missing = [name for name in champion.model.required_columns if name not in frame]
    if missing:
        raise ApiError(
            422,
            "missing_columns",
            f"The file lacks columns the model {model_name!r} v{champion.version} needs: "
            f"{', '.join(map(repr, missing))}.",
            missing_columns=missing,
        )
    try:
        scored = champion.model.score_frame(frame)
    except (ValueError, TypeError) as err:
        raise ApiError(
            422, "invalid_values", f"Some values could not be scored: {str(err)[:300]}"
        ) from err
    warnings = dict(scored.warnings)
    required = set(champion.model.required_columns)
    coerced = {
        name: count
        for name, count in (cleaning.get("coerced_to_missing") or {}).items()
        if name in required
    }
    if coerced:
        warnings["not_numeric_treated_as_missing"] = {
            **coerced,
            **warnings.get("not_numeric_treated_as_missing", {}),
        }
    predictions = scored.predictions
    answer = {
        "phase": "prod",
        "model": model_name,
        "version": champion.version,
        "n_rows": table_rows(frame),
        "predictions": predictions.tolist() if predictions.dtype == object else predictions,
        "ignored_columns": scored.ignored_columns,
        "warnings": warnings,
        "cleaning": cleaning,
    }
    if proba and scored.probabilities is not None:
        answer["classes"] = champion.model.classes
        answer["probabilities"] = scored.probabilities
    return answer
