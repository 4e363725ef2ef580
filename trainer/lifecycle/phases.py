"""The dev and prod phases: train-log-register-promote, and score with the champion."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import requests
from mlflow.exceptions import MlflowException

from sluice_common import error_codes
from sluice_common.errors import ApiError
from sluice_common.web import metrics
from trainer.fit.config import TrainingConfig
from trainer.fit.metrics import PRIMARY_METRIC, row_losses
from trainer.lifecycle import registry, tracking_health
from trainer.lifecycle.promotion import (
    GateConfig,
    compare,
    decide,
    needs_ranking,
    ranking,
    schema_difference,
    schema_of,
    split_mismatch,
)
from trainer.lifecycle.serving import ChampionCache
from trainer.lifecycle.signing import SIGNATURE_TAG, UntrustedVersion
from trainer.model.sluice_model import SMALL_ROWS, column_names, table_rows
from trainer.pipeline import row_flags
from trainer.pipeline.training import TrainedModel, train_model
from trainer.sources.by_reference import listed_ignored

log = logging.getLogger(__name__)
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()
# What the tracking server's failures look like from here. requests' errors are OSErrors too,
# so a local disk or lock failure (a plain OSError) is told apart below, not reported as
# "MLflow unreachable".
TRACKING_ERRORS = (MlflowException, requests.RequestException)


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
        error_codes.TRACKING_UNAVAILABLE,
        "The MLflow tracking server is not reachable; try again when it is back.",
    )


def tracking_refused_credentials(err: Exception) -> ApiError:
    """The 503 answered when the tracking server refuses the trainer's account."""
    log.error("MLflow refused the trainer's credentials: %s", err)
    return ApiError(
        error_codes.TRACKING_UNAUTHORIZED,
        "The MLflow tracking server refused the trainer's credentials; the operator must give "
        "the trainer the tracking server's account (MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_PASSWORD_FILE). Nothing was promoted.",
    )


def storage_unavailable(err: OSError) -> ApiError:
    """The 503 answered when the trainer cannot use its own disk (state directory, temp)."""
    log.error("trainer storage error: %s", err)
    return ApiError(
        error_codes.STORAGE_UNAVAILABLE,
        "The trainer could not write its local state (disk full, or permissions on "
        "TRAINER_STATE_DIR or the temp directory); the operator must fix it. Nothing was "
        "promoted.",
    )


@contextlib.contextmanager
def dependency_errors():
    """Turn tracking-server and local-disk failures into their 503 answers."""
    try:
        yield
    except TRACKING_ERRORS as err:
        if isinstance(err, MlflowException) and err.error_code == "INVALID_PARAMETER_VALUE":
            log.warning("MLflow refused a request: %s", err)  # it answered, and said no
            raise ApiError(
                error_codes.TRACKING_REJECTED,
                f"The MLflow tracking server refused this run ({str(err.message)[:300]}). "
                "Nothing was promoted.",
            ) from err
        if tracking_health.refuses_account(err):
            raise tracking_refused_credentials(err) from err
        raise tracking_unavailable(err) from err
    except OSError as err:
        raise storage_unavailable(err) from err


# Warnings that mean a model could not read a cell (unseen levels are not: a challenger may
# fairly know levels the champion never saw).
UNREADABLE_WARNINGS = ("not_numeric_treated_as_missing", "unreadable_dates_treated_as_missing")


def _unreadable(warnings: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind in UNREADABLE_WARNINGS:
        for name, count in warnings.get(kind, {}).items():
            counts[name] = counts.get(name, 0) + count
    return counts


def _champion_comparison(
    trained: TrainedModel, champion, metric: str, gate: GateConfig
) -> tuple[str | None, str | None, object]:
    """Schema change, unfairness, and the paired comparison on the rows neither model was
    trained on (the challenger's validation rows that the champion's split also held out).

    The comparison is computed whenever the champion predicts the same target, task and
    classes and can score those rows, so a schema change is refused with the numbers too.
    """
    ours, theirs_schema = schema_of(trained.spec), schema_of(champion.spec)
    schema_change = schema_difference(ours, theirs_schema)
    unfair = split_mismatch(trained.spec.get("split"), champion.spec.get("split"))
    validation = trained.validation
    needed = set(champion.required_columns)
    # Scores compare only for the same target, task and classes (in the same order): a
    # champion predicting another column, or other classes, has no loss on these labels.
    same_question = all(ours[key] == theirs_schema[key] for key in ("target", "task", "classes"))
    if unfair is not None or not same_question or not needed <= set(validation.table.column_names):
        return schema_change, unfair, None
    shared = validation.keys < float(champion.spec["split"]["fraction"])
    rows = np.flatnonzero(shared)
    table = validation.table.take(pa.array(rows, type=pa.int64()))
    scored = champion.score_frame(table)
    theirs = row_losses(trained.task, validation.y[rows], scored.predictions, scored.probabilities)
    comparison = compare(metric, validation.losses[rows], theirs, gate)
    if schema_change is None:
        # Cells the champion cannot read but the challenger can (say, a re-export with other
        # number formats) would make the champion lose for the file's sake, not the model's.
        theirs_bad = _unreadable(scored.warnings)
        ours_bad = _unreadable(trained.model.score_frame(table).warnings)
        excess = {
            n: c - ours_bad.get(n, 0) for n, c in theirs_bad.items() if c > ours_bad.get(n, 0)
        }
        if sum(excess.values()) > max(1, 0.01 * len(rows)):
            names = ", ".join(f"{name!r} ({count})" for name, count in sorted(excess.items()))
            unfair = (
                f"it cannot read cells of the comparison rows that the challenger reads "
                f"({names}): the upload writes values another way than the champion's did"
            )
    return schema_change, unfair, comparison


def dev_run(
    table,
    parsing: dict,
    *,
    model_name: str,
    target: str,
    task: str,
    promote: str,
    config: TrainingConfig,
    gate: GateConfig,
    cache: ChampionCache,
    state_dir: str,
    tags: dict[str, str],
    on_round=None,
    train=None,
    checkpoint=None,
) -> dict:
    """Train, log, register and decide promotion; the dev answer.

    `train`, when given, trains instead of `train_model` (on a cluster: pipeline/cluster.py),
    returning the same TrainedModel; the rest is the same for both.
    """
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    with dependency_errors():
        tracking_health.ping()  # fail fast: no point training what cannot be logged
    lap("tracking_check")
    if train is not None:
        trained = train()
    else:
        trained = train_model(
            table, target, task, config, delimiter=parsing.get("delimiter", ","), on_round=on_round
        )
    lap("train")
    if checkpoint is not None:
        checkpoint()  # a job cancelled now stops before anything is logged
    metric = PRIMARY_METRIC[trained.task]
    validation = trained.validation
    baseline = compare(metric, validation.losses, validation.baseline_losses, gate)
    ranked = None
    if validation.proba is not None and needs_ranking(trained.task, baseline):
        ranked = ranking(validation.proba, validation.y, gate)
    cleaning = {**parsing, **trained.report}
    with dependency_errors():
        run_id, model_uri, written = registry.log_run(trained, model_name, cleaning, tags)
        lap("log_run")
        try:
            staging, signature = registry.sign_logged(
                model_uri,
                written,
                cache.models_dir,
                cache.key,
                registry.binding(model_name, run_id),
            )
        except UntrustedVersion as err:
            log.error("refusing to sign run %s of %r: %s", run_id, model_name, err)
            raise ApiError(
                error_codes.SIGNING_FAILED,
                f"The logged model did not hold exactly what Sluice wrote ({err}); it was not "
                "registered. Someone may be writing to the tracking server's artifacts.",
            ) from err
        lap("sign")
        if checkpoint is not None:
            checkpoint()  # the run is logged, but nothing is registered or promoted
        with promotion_lock(state_dir, model_name):
            version_tags = {
                "sluice.run_id": run_id,
                SIGNATURE_TAG: signature,
                **registry.inputs_tag(trained.model.required_columns),
            }
            try:
                version = registry.register(model_uri, model_name, run_id, version_tags)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            registry.keep_local_copy(staging, signature, model_name, version, cache.models_dir)
            lap("register")
            current = registry.champion_version(model_name)
            schema_change = unfair = comparison = untrusted = None
            if current is not None and promote == "auto":
                try:
                    champion = cache.model(model_name, current)
                except UntrustedVersion as err:
                    untrusted = f"v{current} ({err})"
                else:
                    try:
                        schema_change, unfair, comparison = _champion_comparison(
                            trained, champion, metric, gate
                        )
                    except Exception as err:  # noqa: BLE001 - the version is registered already
                        # A comparison that fails must still leave a decision on the version,
                        # never a registered version without one (and a 500).
                        log.exception("comparing %s v%s with its champion", model_name, version)
                        unfair = f"the champion could not score the comparison rows ({err!r:.200})"
            decision = decide(
                promote,
                current,
                metric,
                trained.metrics.get(metric),
                config=gate,
                baseline=baseline,
                schema_change=schema_change,
                unfair=unfair,
                champion=comparison,
                untrusted=untrusted,
                follows_latest=model_name == gate.default_model,
                ranked=ranked,
            )
            registry.record_decision(model_name, version, decision.to_dict())
            if decision.promoted:
                registry.set_champion(model_name, version)
                cache.adopt(model_name, version, trained.model)
                cache.notify_promoted(model_name, version)
            champion_now = version if decision.promoted else current
            cache.forget_others(model_name, keep={champion_now})
            keep = {v for v in (champion_now, version, cache.last_known(model_name)) if v}
            registry.prune_local_copies(model_name, keep, cache.models_dir)
            lap("promotion")
    champion_version = version if decision.promoted else current
    return {
        "phase": "dev",
        "model": model_name,
        "version": version,
        "run_id": run_id,
        "target": trained.spec["target"],
        "task": {"type": trained.task, "reason": trained.task_reason},
        "metrics": trained.metrics,
        "promoted": decision.promoted,
        "reason": decision.reason,
        "promotion": {**decision.to_dict(), "champion_version": current},
        "champion_version": champion_version,
        "features": {
            "used": [_feature_summary(item) for item in trained.spec["inputs"]],
            "dropped": trained.spec["dropped"],
            "n_matrix_columns": len(trained.spec["feature_names"]),
        },
        "training": {
            "rows_train": trained.n_train,
            "rows_validation": trained.n_valid,
            "split": trained.spec["split"],
            "rounds": trained.best_rounds,
            "booster_seconds": round(trained.train_seconds, 4),
            "stage_seconds": timings,
        },
        "cleaning": cleaning,
        "monitoring": _profile_summary(trained.profile),
    }


def _profile_summary(profile: dict | None) -> dict | None:
    """What the version's monitoring reference covers."""
    if profile is None:
        return None
    return {
        "columns": len(profile["features"]),
        "not_monitored": profile["not_monitored"]["count"],
        "reference_rows": profile["rows"],
        "prediction_reference_rows": profile["validation_rows"],
    }


def _feature_summary(item: dict) -> dict:
    """What the answer says about one input: its kind and how its cells are read."""
    summary = {"name": item["name"], "kind": item["kind"]}
    if item["kind"] == "numeric" and item.get("number_format"):
        summary["number_format"] = item["number_format"]
    elif item["kind"] == "datetime":
        summary["date_formats"] = item["date_formats"]
    elif item["kind"] == "categorical":
        summary["levels"] = len(item["categories"])
        if item.get("other"):
            summary["rare_levels_grouped"] = item["rare_levels"]
    if item.get("ambiguous_format"):
        summary["ambiguous_format"] = True
    if item.get("note"):
        summary["note"] = item["note"]
    return summary


def prod_run(
    table,
    parsing: dict,
    *,
    model_name: str,
    proba: bool,
    cache: ChampionCache,
    monitor=None,
    max_flagged_rows: int = row_flags.DEFAULT_MAX_FLAGGED_ROWS,
) -> dict:
    """Score every row with the champion, in input order; the prod answer (listing at most
    `max_flagged_rows` flagged rows).

    `table` holds raw cells (an Arrow table, a DataFrame or a dict of column lists for a few
    rows); the champion reads them with the rules it was trained with.
    """
    champion = champion_for(model_name, cache)
    names = column_names(table)
    required = champion.model.required_columns
    present = set(names)
    missing = [name for name in required if name not in present]
    if missing:
        raise missing_columns_error(model_name, champion.version, missing, present)
    reads = set(required)
    ignored = [name for name in names if name not in reads]
    table = _read_columns(table, required if ignored else None)
    return _scored_answer(
        table, parsing, model_name, proba, champion, monitor, ignored, max_flagged_rows
    )


def _read_columns(table, required: list[str] | None):
    """The `required` columns of the table (all when None) as the model takes them: a dict
    of lists for a few rows, else Arrow. Columns the model ignores are never converted: they
    were most of a wide upload's cost."""
    if isinstance(table, dict):
        return {name: table[name] for name in required} if required else table
    if not isinstance(table, pa.Table):  # a DataFrame, from a CSV posted here
        table = pa.Table.from_pandas(table[required] if required else table, preserve_index=False)
    elif required:
        table = table.select(required)
    return table.to_pydict() if table.num_rows <= SMALL_ROWS else table


def missing_columns_error(
    model_name: str, version: str, missing: list[str], names: set[str], what: str = "file"
) -> ApiError:
    """The 422 for a batch that lacks columns of the champion `version`, naming a newer,
    unpromoted version that reads the batch's columns `names` when there is one."""
    message = (
        f"The {what} lack{'s' if what == 'file' else ''} columns the model {model_name!r} "
        f"v{version} needs: {', '.join(map(repr, missing))}."
    )
    details = {"missing_columns": missing}
    found = _registry_hint(_newer_version_reading, model_name, version, set(names))
    if found is not None:
        candidate, decision, exact = found
        message += " " + _candidate_hint(model_name, candidate, decision, exact)
        details["candidate_version"] = candidate
    return ApiError(error_codes.MISSING_COLUMNS, message, **details)


# Hints in error answers come from the registry, on the error path only, within this time and
# with at most this many look-ups under way: a slow tracking server leaves the hint out.
HINT_SECONDS = 3.0
HINT_VERSIONS = 20  # the newest versions searched for one that reads a batch
_hint_slots = threading.BoundedSemaphore(2)
_hint_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sluice-hint")


def _registry_hint(lookup, *args):
    """`lookup(*args)`, or None when the tracking server is down, slow or fails, or when
    other look-ups already hold every slot: a hint never turns an answer into another."""
    if not _hint_slots.acquire(blocking=False):
        return None

    def run():
        try:
            return lookup(*args)
        finally:
            _hint_slots.release()

    submitted = False
    try:
        if not tracking_health.reachable():
            return None
        future = _hint_pool.submit(run)
        submitted = True
        return future.result(timeout=HINT_SECONDS)
    except Exception as err:  # a hint is optional, whatever went wrong
        log.info("no registry hint for the error answer: %s", err)
        return None
    finally:
        if not submitted:
            _hint_slots.release()


def _newer_version_reading(model_name: str, champion_version: str, columns: set[str]):
    """The newest version after the champion whose input columns are all in `columns`: its
    version, recorded decision, and whether it reads exactly those columns; or None."""
    for found in registry.recent_versions(model_name, HINT_VERSIONS):
        if int(found.version) <= int(champion_version):
            break
        inputs = registry.inputs_of(found)
        if inputs and set(inputs) <= columns:
            return str(found.version), registry.decision_of(found), set(inputs) == columns
    return None


# Where the advice starts in a recorded reason (promotion.decide): an error answer gives its
# own advice, so it quotes the finding only.
_ADVICE = ("; upload ", "; use promote=always")


def _why_not(decision: dict | None) -> str:
    """Why a version was not promoted, briefly, from its recorded decision."""
    reason = str((decision or {}).get("reason") or "")
    for marker in _ADVICE:
        if marker in reason:
            reason = reason[: reason.index(marker)]
    return reason if len(reason) <= 400 else reason[:399] + "…"


def _candidate_hint(model_name: str, version: str, decision: dict | None, exact: bool) -> str:
    """What to say about a newer version that could answer the batch, and how to make it
    the champion."""
    reads = "reads exactly these columns" if exact else "reads only columns this file has"
    if (decision or {}).get("promoted"):
        why = " It was the champion once; the alias 'champion' has been moved since."
    else:
        why = _why_not(decision)
        why = f" It was not promoted: {why}." if why else ""
    return (
        f"Version {version} of {model_name!r} (not the champion) {reads}.{why} To make it the "
        f"champion, train on its data again with phase=dev and promote=always (client: "
        f"--promote always), or point the alias 'champion' of {model_name!r} at version "
        f"{version} in the MLflow UI (MlflowClient().set_registered_model_alias("
        f"{model_name!r}, 'champion', '{version}'))."
    )


def _latest_decision(model_name: str):
    """The newest version of `model_name` and its recorded decision, or None."""
    versions = registry.recent_versions(model_name, 1)
    if not versions:
        return None
    return str(versions[0].version), registry.decision_of(versions[0])


def champion_for(model_name: str, cache: ChampionCache):
    """The champion to score with; 404/409 saying what to do when there is none."""
    with dependency_errors():
        try:
            champion = cache.get(model_name)
        except UntrustedVersion as err:
            raise ApiError(
                error_codes.UNTRUSTED_CHAMPION,
                f"The champion alias of {model_name!r} points at a version Sluice did not sign "
                f"({err}), and no trusted champion was served before. Train it with phase=dev "
                "and promote=always, or point the alias at a version Sluice registered.",
            ) from err
        exists = champion is not None or registry.model_exists(model_name)
    if champion is None:
        if exists:
            raise _no_champion(model_name)
        raise ApiError(
            error_codes.MODEL_NOT_FOUND,
            f"No model named {model_name!r} has been trained. Train it first with phase=dev "
            f"(model={model_name}).",
        )
    return champion


def _no_champion(model_name: str) -> ApiError:
    """The 409 for a name whose versions were all refused: why the latest one was, and what
    to do."""
    todo = (
        "Upload more rows, or data with more signal, with phase=dev (a version becomes the "
        "champion when it beats the trivial baseline beyond the noise), or train with "
        "promote=always (client: --promote always) to serve a version anyway."
    )
    latest = _registry_hint(_latest_decision, model_name)
    if latest is None:
        return ApiError(
            error_codes.NO_CHAMPION,
            f"Model {model_name!r} has versions but none is the champion. {todo}",
        )
    version, decision = latest
    details = {"latest_version": version, "latest_rule": (decision or {}).get("rule")}
    if decision is not None and decision.get("promoted"):
        state = (
            f"its latest version v{version} was promoted, and the alias 'champion' has "
            "been moved or removed in MLflow since"
        )
    else:
        why = _why_not(decision)
        state = f"its latest version v{version} was not promoted" + (f" ({why})" if why else "")
    return ApiError(
        error_codes.NO_CHAMPION,
        f"Model {model_name!r} has no champion: {state}. {todo} Or point the alias 'champion' "
        "at a version in the MLflow UI.",
        **details,
    )


def _scored_answer(
    table, parsing, model_name, proba, champion, monitor, ignored, max_flagged_rows
) -> dict:
    if getattr(champion.model, "rules", None) is None and isinstance(table, pa.Table):
        table = table.to_pandas()  # a model logged before cell rules took DataFrames only
    # Checked by name: the champion runs its own logged copy of sluice_model, so its
    # exception classes are not this process's.
    started = time.perf_counter()
    try:
        scored = champion.model.score_frame(table)
    except (ValueError, TypeError) as err:
        raise ApiError(
            error_codes.INVALID_VALUES, f"Some values could not be scored: {str(err)[:300]}"
        ) from err
    n_rows = table_rows(table)
    metrics.record_prediction(model_name, champion.version, n_rows, time.perf_counter() - started)
    predictions = scored.predictions
    answer = {
        "phase": "prod",
        "model": model_name,
        "version": champion.version,
        "n_rows": n_rows,
        "predictions": predictions.tolist() if predictions.dtype == object else predictions,
        **listed_ignored(ignored),
        "warnings": scored.warnings,
        **row_flags.flagged_rows(scored.flags, max_flagged_rows),
        "cleaning": parsing,
    }
    if proba and scored.probabilities is not None:
        answer["classes"] = champion.model.classes
        answer["probabilities"] = scored.probabilities
    if monitor is not None:
        # Counted here, written by a background thread: the answer never waits on storage.
        answer["batch_id"] = monitor.observe(
            model_name, champion.version, champion.model, scored, n_rows
        )
    return answer
