"""Training and batch scoring on a Dask cluster (DASK_SCHEDULER_ADDRESS).

The data never comes to the trainer: each file is a partition read, typed and scored on a
worker (trainer/pipeline/cluster_parts.py). The trainer decides the rules from what the passes sum:

1. read and clean every file; an evenly spaced sample (CLUSTER_SAMPLE_ROWS) decides the task
   and each column's kind and format, with the single-machine rules; class labels and
   unreadable cells are counted over every row;
2. rows are hashed as the single-machine split hashes them; repeated rows are found over all
   partitions, so copies get the keys they would get on one machine;
3. category levels are counted over every training row, so all partitions read one set;
4. `xgboost.dask` trains on `DaskQuantileDMatrix` partitions, early stopping on the stop rows
   spread over the workers;
5. validation metrics, the promotion comparison and the monitoring reference use keyed
   samples of the validation and training rows brought to the trainer (at most
   CLUSTER_SAMPLE_ROWS each), reported as such.
"""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa

from sluice_common import error_codes
from sluice_common.choices import resolve_target
from sluice_common.errors import ApiError
from sluice_common.tables.parsing import one_column_error
from trainer.fit import rows as rowsets
from trainer.fit.booster import booster_params
from trainer.fit.features import feature_types, fit_kinds, spec_from_level_counts
from trainer.fit.metrics import baseline_losses, row_losses, score
from trainer.fit.target import classes_of, labels_of, read_target
from trainer.model import sluice_cells as cells
from trainer.model.sluice_model import SluiceModel
from trainer.pipeline import cluster_parts as parts
from trainer.pipeline.training import (
    MIN_ROWS,
    TrainedModel,
    Validation,
    complete_spec,
    reference_profile,
)
from trainer.sources import by_reference
from trainer.sources import files as datasource

log = logging.getLogger(__name__)
_clients: dict[str, object] = {}
_clients_guard = threading.Lock()
IN_FLIGHT_PER_WORKER = 2  # prod partitions scored ahead of the writer, per worker
COLLECTIVE_TIMEOUT_SECONDS = 120  # a worker lost mid-training fails the others this fast
STALL_SECONDS = 600  # no boosting round for this long: failed, never left hanging
CANCEL_GRACE_SECONDS = 15


def public_address(address: str) -> str:
    """The scheduler's address without any credentials in it."""
    parts_ = urlsplit(address)
    return f"{parts_.scheme}://{parts_.hostname}:{parts_.port}" if parts_.hostname else address


def client_for(address: str, timeout: float = 20.0):
    """This process's client of the scheduler (made once, remade when it was closed), the
    cluster holding this trainer's code (trainer/pipeline/shipping.py)."""
    from distributed import Client  # heavy, and only with a cluster

    from trainer.pipeline import shipping  # imports distributed

    with _clients_guard:
        client = _clients.get(address)
        try:
            if client is None or client.status != "running":
                # xgboost.dask looks the client up as the default one.
                client = Client(address, timeout=timeout, set_as_default=True)
                _clients[address] = client
            shipping.ship(client)  # before any graph: a stock cluster cannot import Sluice
        except (OSError, TimeoutError, ValueError) as err:
            raise ApiError(
                error_codes.CLUSTER_UNAVAILABLE,
                f"The Dask scheduler at {public_address(address)} did not answer ({err}); the "
                "operator must check DASK_SCHEDULER_ADDRESS and the cluster.",
            ) from err
        return client


def _workers(client) -> set[str]:
    """The workers the scheduler has now, asked each time (the client's cached scheduler
    info is refreshed in the background without its worker list, and can read empty)."""
    try:
        return set(client.nthreads())
    except (OSError, TimeoutError) as err:
        raise ApiError(
            error_codes.CLUSTER_UNAVAILABLE,
            f"The Dask scheduler stopped answering ({type(err).__name__}); nothing was "
            "registered. Send the request again once the cluster is back.",
        ) from err


def _gather(client, futures, context, what: str, workers: set[str] | None = None):
    """Results of futures, with progress and cancellation; a clear failure when the cluster
    loses what they need (a task whose worker died is retried by Dask first)."""
    checked = time.monotonic()
    while True:
        not_done = [f for f in futures if not f.done()]
        if not not_done:
            break
        time.sleep(0.05 if time.monotonic() - checked < 1 else 0.2)
        try:
            context.check()
        except BaseException:
            client.cancel(list(not_done))
            raise
        if not _workers(client):
            client.cancel(list(not_done))
            raise _lost(what, "no worker is left")
    errors = [f for f in futures if f.status == "error"]
    if errors:
        err = errors[0].exception()
        if isinstance(err, ApiError):
            raise err
        if type(err).__name__ == "KilledWorker":
            raise _lost(what, "a worker died repeatedly running it")
        raise ApiError(
            error_codes.CLUSTER_TASK_FAILED, f"{what} failed on the cluster: {str(err)[:300]}"
        ) from err
    if any(f.status == "cancelled" for f in futures):
        raise _lost(what, "its tasks were cancelled (a worker or the scheduler restarted)")
    return client.gather(list(futures))


def _lost(what: str, why: str) -> ApiError:
    return ApiError(
        error_codes.CLUSTER_WORKER_LOST,
        f"{what} stopped: {why}. Nothing was registered; send the request again once the "
        "cluster is whole.",
    )


def _tree_sum(client, futures):
    """Sum pandas count series over partitions on the workers, two at a time."""
    level = list(futures)
    while len(level) > 1:
        level = [
            client.submit(parts.add_counts, *level[i : i + 4], pure=False)
            for i in range(0, len(level), 4)
        ]
    return level[0]


def _read(client, files, settings, context):
    loaded = client.map(parts.load, files, settings=settings, pure=False)
    described = _gather(
        client, client.map(parts.describe, loaded, pure=False), context, "Reading the files"
    )
    columns = described[0]["columns"]
    for item in described[1:]:
        missing = [c for c in columns if c not in item["columns"]]
        extra = [c for c in item["columns"] if c not in columns]
        if missing or extra:
            raise ApiError(
                error_codes.COLUMNS_DIFFER,
                f"{item['name'][:200]!r} has columns {item['columns'][:10]} where the first "
                f"file has {columns[:10]}: every file of a data_uri must have the same columns.",
            )
    rows = sum(item["rows"] for item in described)
    context.progress(stage="read", rows_read=rows)
    report = by_reference.file_report([item["report"] for item in described], files, columns, rows)
    return loaded, columns, rows, report


def train_on_cluster(
    address, files, settings, requested_target, task, config, context, sample_rows: int = 200_000
):
    """A TrainedModel from data on the cluster, as training.train_model makes one."""
    import xgboost as xgb
    import xgboost.dask as dxgb  # explicitly: xgboost does not import its dask module

    client = client_for(address)
    workers = _workers(client)
    if not workers:
        raise ApiError(error_codes.CLUSTER_UNAVAILABLE, "The Dask cluster has no workers.")
    context.progress(stage="reading", rows_read=0)
    loaded, columns, rows_in, report = _read(client, files, settings, context)
    target = resolve_target([str(c) for c in columns], requested_target)
    delimiter = report.get("delimiter", ",")
    prefer_comma = delimiter == ";"

    # 1. kinds and formats from an even sample; class labels over every row.
    context.progress(stage="typing")
    per_part = max(1, sample_rows // len(files))
    samples = _gather(
        client,
        client.map(parts.sample, loaded, columns=columns, target=target, rows=per_part, pure=False),
        context,
        "Sampling",
    )
    sample = pa.concat_tables(datasource.unify([s for s in samples if s.num_rows] or samples))
    if sample.num_rows < MIN_ROWS:
        raise ApiError(
            error_codes.TOO_FEW_ROWS,
            f"Training needs at least {MIN_ROWS} rows with a target; the files have "
            f"{sample.num_rows}.",
        )
    if sample.column_names == [target]:
        raise one_column_error(target)  # a file read as one column: say so, not "no features"
    read = read_target(sample.column(target).combine_chunks(), target, task, prefer_comma)
    if read.task == "classification":
        counted = _gather(
            client,
            [
                _tree_sum(
                    client,
                    [
                        client.submit(
                            lambda d: pd.Series(d, dtype="int64"),
                            client.submit(parts.target_levels, p, columns, target, pure=False),
                            pure=False,
                        )
                        for p in loaded
                    ],
                )
            ],
            context,
            "Counting the classes",
        )[0]
        labels = pa.array([str(k) for k in counted.index], pa.large_string())
        read = classes_of(labels, target, read.reason)
        read.y = np.empty(0)
    target_spec = {
        "task": read.task,
        "classes": read.classes,
        "target_number_format": read.number_format,
    }
    sample_y, sample_ok = _sample_labels(target_spec, sample, target)
    kept_sample = rowsets.keep_rows(sample, sample_ok)
    kinds, dropped, _ = fit_kinds(kept_sample, target, delimiter, config.min_category_rows)

    # 2. rows hashed, repeated rows found over every partition, keys.
    context.progress(stage="splitting")
    prepared = client.map(
        parts.prepare,
        loaded,
        columns=columns,
        target=target,
        target_spec=target_spec,
        kinds=kinds,
        pure=False,
    )
    summaries = _gather(
        client,
        client.map(parts.prepared_summary, prepared, task=read.task, n_classes=0, pure=False),
        context,
        "Reading the cells",
    )
    del loaded
    rows_out = sum(s["rows"] for s in summaries)
    if rows_out < MIN_ROWS:
        raise ApiError(
            error_codes.TOO_FEW_ROWS,
            f"Only {rows_out} rows have a readable target; training needs {MIN_ROWS}.",
        )
    counts_total = _tree_sum(client, client.map(parts.content_counts, prepared, pure=False))
    repeated, n_distinct = _gather(
        client, [client.submit(parts.repeated, counts_total, pure=False)], context, "Hashing rows"
    )[0]
    del counts_total
    offsets = _spread_offsets(client, prepared, kinds, target, repeated, context)
    prepared = [
        client.submit(parts.assign_keys, p, o, pure=False)
        for p, o in zip(prepared, offsets, strict=True)
    ]

    # 3. category levels over every training row.
    context.progress(stage="fitting features")
    categorical = [k.name for k in kinds if k.kind == "categorical"]
    level_parts = _gather(
        client,
        client.map(
            parts.training_levels,
            prepared,
            names=categorical,
            fraction=config.validation_fraction,
            pure=False,
        ),
        context,
        "Counting category levels",
    )
    level_totals: dict[str, dict[str, int]] = {name: {} for name in categorical}
    for part in level_parts:
        for name, counted in part.items():
            into = level_totals[name]
            for key, count in counted.items():
                into[key] = into.get(key, 0) + count
    keys_seen = _gather(
        client,
        [client.submit(_train_count, p, config.validation_fraction) for p in prepared],
        context,
        "Counting training rows",
    )
    n_train_rows = sum(keys_seen)
    spec = spec_from_level_counts(
        kinds,
        dropped,
        level_totals,
        n_train_rows,
        config.min_category_rows,
        config.max_categories,
    )
    if not spec["inputs"]:
        reasons = "; ".join(f"{d['name']}: {d['reason']}" for d in spec["dropped"]) or "none"
        raise ApiError(
            error_codes.NO_USABLE_FEATURES,
            f"No column besides the target can be used as a feature (dropped: {reasons}).",
        )
    key_columns = [k.name for k in kinds] + [target]
    complete_spec(spec, read, target, columns, config.validation_fraction, key_columns)

    # 4. matrices on the workers, xgboost.dask.
    n_valid_total = rows_out - n_train_rows
    valid_share = min(1.0, sample_rows / max(1, n_valid_total))
    fit_share = min(1.0, sample_rows / max(1, n_train_rows))
    built = client.map(
        parts.matrices,
        prepared,
        spec=spec,
        fraction=config.validation_fraction,
        stop_fraction=config.early_stopping_fraction,
        valid_share=valid_share,
        fit_share=fit_share,
        pure=False,
    )
    del prepared
    counts = _gather(
        client,
        [client.submit(parts.pick, b, "counts", pure=False) for b in built],
        context,
        "Building the feature matrices",
    )
    n_fit = sum(c["fit"] for c in counts)
    n_stop = sum(c["stop"] for c in counts)
    if n_fit < 2 or n_stop < 1:
        raise ApiError(
            error_codes.TOO_FEW_ROWS,
            f"The {rows_out} rows hold too few distinct rows to train on; add more data.",
        )
    names = spec["feature_names"]
    types = feature_types(spec)
    params = booster_params(read.task, len(read.classes or []), config, len(names))
    params["nthread"] = 0

    def frames(which: str, keep):
        chosen = [b for b, c in zip(built, counts, strict=True) if keep(c)]
        x = _dask_frame(client, chosen, which, 0, names)
        y = _dask_frame(client, chosen, which, 1, None)
        return x, y

    started = time.perf_counter()
    x_fit, y_fit = frames("fit", lambda c: c["fit"] > 0)
    x_stop, y_stop = frames("stop", lambda c: c["stop"] > 0)
    dtrain = dxgb.DaskQuantileDMatrix(
        client, x_fit, y_fit, feature_types=types, enable_categorical=True
    )
    dstop = dxgb.DaskQuantileDMatrix(
        client, x_stop, y_stop, feature_types=types, enable_categorical=True, ref=dtrain
    )
    booster = _train(
        client,
        dxgb,
        params,
        dtrain,
        config.max_rounds,
        [(dstop, "valid")],
        config.early_stopping_rounds,
        context,
        workers,
    )
    best_rounds = booster.best_iteration + 1
    if n_fit + n_stop <= config.refit_max_rows:
        # As on one machine: small data refits on every training row with the rounds found.
        rounds = max(1, round(best_rounds / (1 - config.early_stopping_fraction)))
        x_all, y_all = frames("train", lambda c: c["fit"] + c["stop"] > 0)
        dall = dxgb.DaskQuantileDMatrix(
            client, x_all, y_all, feature_types=types, enable_categorical=True
        )
        booster = _train(client, dxgb, params, dall, rounds, [], None, context, workers)
        best_rounds = rounds
    else:
        booster = booster[:best_rounds]
    booster.feature_names = names
    booster.feature_types = None
    train_seconds = time.perf_counter() - started
    del x_fit, y_fit, x_stop, y_stop, dtrain, dstop

    # 5. validation and profile samples on the trainer.
    context.progress(stage="validating")
    valid = _gather(
        client,
        [client.submit(parts.pick, b, "valid_sample", pure=False) for b in built],
        context,
        "Collecting the validation sample",
    )
    fitted = _gather(
        client,
        [client.submit(parts.pick, b, "fit_sample", pure=False) for b in built],
        context,
        "Collecting the training sample",
    )
    warnings = _gather(
        client,
        [client.submit(parts.pick, b, "warnings", pure=False) for b in built],
        context,
        "Collecting warnings",
    )
    built = None
    model = SluiceModel(xgb.Booster(model_file=bytearray(booster.save_raw("ubj"))), spec, cells)
    model.booster.feature_names = names
    valid_table = pa.concat_tables(datasource.unify([v["table"] for v in valid]))
    valid_matrix = np.concatenate([v["matrix"] for v in valid])
    y_valid = np.concatenate([v["y"] for v in valid])
    valid_keys = np.concatenate([v["keys"] for v in valid])
    predictions, proba = model.score_matrix(valid_matrix)
    metrics = score(read.task, y_valid, predictions, proba)
    label_sum = np.sum([c["label_sum"] for c in counts], axis=0)
    reference = label_sum[0] / label_sum[1] if read.task == "regression" else label_sum
    validation = Validation(
        table=valid_table,
        y=y_valid,
        keys=valid_keys,
        losses=row_losses(read.task, y_valid, predictions, proba),
        baseline_losses=baseline_losses(read.task, reference, y_valid),
        proba=proba,
    )
    fit_matrix = np.concatenate([f["matrix"] for f in fitted])
    fit_table = pa.concat_tables(datasource.unify([f["table"] for f in fitted]))
    profile = reference_profile(
        model,
        fit_table.select,
        fit_matrix,
        predictions,
        proba,
        metrics,
        valid_losses=validation.losses,
    )
    model.profile = profile
    dropped_rows: dict[str, int] = {}
    unreadable: dict[str, int] = {}
    missing: dict[str, int] = {}
    for s in summaries:
        for into, values in (
            (dropped_rows, s["dropped"]),
            (unreadable, s["unreadable"]),
            (missing, s["missing"]),
        ):
            for key, value in values.items():
                into[key] = into.get(key, 0) + value
    dropped_rows.setdefault("empty", 0)
    dropped_rows.setdefault("missing_target", 0)
    report.update(
        rows_out=rows_out,
        dropped_rows=dropped_rows,
        duplicate_rows=int(rows_out - n_distinct),
        missing_values=missing,
        unreadable_treated_as_missing=unreadable,
        cluster={
            "workers": len(workers),
            "partitions": len(files),
            "rows_sampled_for_column_kinds": sample.num_rows,
            "validation_rows": n_valid_total,
            "validation_rows_scored": len(y_valid),
            "reference_rows": len(fit_matrix),
            "reading_warnings": _merged(warnings),
        },
    )
    del sample_y
    return TrainedModel(
        model=model,
        spec=spec,
        task=read.task,
        task_reason=read.reason,
        metrics=metrics,
        params=params,
        best_rounds=best_rounds,
        train_seconds=train_seconds,
        n_train=n_fit + n_stop,
        n_valid=n_valid_total,
        validation=validation,
        report=report,
        table=fit_table,
        split_keys=None,
        profile=profile,
    )


def _merged(warnings: list[dict]) -> dict:
    total: dict = {}
    for item in warnings:
        by_reference.merge_warnings(total, item)
    return total


def _train_count(prepared, fraction: float) -> int:
    return int((prepared.keys >= fraction).sum())


def _sample_labels(target_spec: dict, sample: pa.Table, target: str):
    return labels_of(target_spec, sample.column(target).combine_chunks())


def _spread_offsets(client, prepared, kinds, target, repeated: pd.Series, context):
    """Per partition: copies before it of each repeated content whose copies are separate
    observations (trainer/fit/rows.py `observations`), so keys match a single-machine split."""
    if not len(repeated):
        return [None] * len(prepared)
    index = repeated.index.to_numpy()
    values = _gather(
        client,
        client.map(
            parts.repeated_values,
            prepared,
            kinds=kinds,
            target=target,
            repeated_index=index,
            pure=False,
        ),
        context,
        "Finding repeated rows",
    )
    frame = pd.concat([v for v in values if len(v)]).drop_duplicates("_content")
    wanted = {name: frame[name].unique() for name in frame.columns if name != "_content"}
    totals_parts = _gather(
        client,
        client.map(
            parts.value_totals, prepared, kinds=kinds, target=target, wanted=wanted, pure=False
        ),
        context,
        "Counting shared values",
    )
    spread = np.ones(len(frame), dtype=bool)
    copies = repeated.reindex(frame["_content"].to_numpy()).to_numpy()
    for name in wanted:
        total = pd.concat([t[name] for t in totals_parts]).groupby(level=0).sum()
        rows_with_value = total.reindex(frame[name].to_numpy()).to_numpy()
        # Shared by another distinct row exactly when more rows hold it than this row's copies.
        spread &= rows_with_value > copies
    spread_contents = frame["_content"].to_numpy()[spread]
    if not len(spread_contents):
        return [None] * len(prepared)
    here = _gather(
        client,
        client.map(parts.repeated_here, prepared, repeated_index=spread_contents, pure=False),
        context,
        "Counting copies",
    )
    offsets, running = [], pd.Series(0, index=spread_contents, dtype="int64")
    for counted in here:
        offsets.append(running.copy())
        running = running.add(counted, fill_value=0).astype("int64")
    return offsets


def _dask_frame(client, built, which: str, position: int, names):
    import dask.dataframe as dd

    getter = parts.training_rows if which == "train" else parts.pick
    args = (position,) if which == "train" else (which, position)
    pieces = [client.submit(getter, b, *args, pure=False) for b in built]
    if names is None:
        meta = pd.Series([], dtype="float64")
    else:
        meta = pd.DataFrame({f"f{i}": pd.Series([], dtype="float32") for i in range(len(names))})
    return dd.from_delayed(pieces, meta=meta, verify_meta=False)


def _train(client, dxgb, params, dtrain, rounds, evals, early_stopping, context, _workers_then):
    """xgboost.dask.train in a thread; the job's thread follows it, reports rounds, cancels,
    and fails clearly when a worker is lost (the others' collective would wait for it)."""
    from distributed import Event, Variable

    from trainer.jobs.runner import JobCancelled

    name = f"sluice-{context.job_id}-{time.monotonic_ns()}"
    progress = Variable(f"{name}-rounds", client=client)
    stop = Event(f"{name}-stop", client=client)
    progress.set(0)  # a get before the first round would log an error on the scheduler
    workers = _workers(client)  # as the training starts: lost ones were replaced meanwhile
    callback = RoundsCallback(f"{name}-rounds", f"{name}-stop", rounds)
    result: dict = {}

    def run():
        try:
            from xgboost.collective import Config

            result["out"] = dxgb.train(
                client,
                params,
                dtrain,
                num_boost_round=rounds,
                evals=evals,
                early_stopping_rounds=early_stopping,
                callbacks=[callback],
                verbose_eval=False,
                coll_cfg=Config(timeout=COLLECTIVE_TIMEOUT_SECONDS),
            )
        except BaseException as err:  # reported by the job's thread
            result["error"] = err

    thread = threading.Thread(target=run, name=f"{name}-train", daemon=True)
    thread.start()
    last_done, last_change, cancelled_at = 0, time.monotonic(), None
    while thread.is_alive():
        thread.join(1.0)
        try:
            done = int(progress.get(timeout=2) or 0)
        except Exception:
            done = last_done
        if done != last_done:
            last_done, last_change = done, time.monotonic()
            context.report(stage="training", rounds_done=done, rounds_max=rounds)
        if context.cancelled:
            stop.set()
            cancelled_at = cancelled_at or time.monotonic()
            if time.monotonic() - cancelled_at > CANCEL_GRACE_SECONDS:
                raise JobCancelled()  # the workers did not stop in time: left to the timeout
        if time.monotonic() - last_change > STALL_SECONDS:
            stop.set()
            raise ApiError(
                error_codes.CLUSTER_TRAINING_STALLED,
                f"Training on the cluster made no progress for {STALL_SECONDS} s (a worker "
                "busy with an earlier training cut off by a restart, or a stuck collective). "
                "Nothing was registered; restart the Dask workers and send the request again.",
            )
        lost = workers - _workers(client)
        if lost:
            stop.set()
            raise _lost("Training", f"{len(lost)} worker(s) left the cluster during training")
    if "error" in result:
        err = result["error"]
        if context.cancelled:
            raise JobCancelled() from err
        raise ApiError(
            error_codes.CLUSTER_TRAINING_FAILED, f"Training on the cluster failed: {str(err)[:300]}"
        ) from err
    if context.cancelled:
        raise JobCancelled()
    return result["out"]["booster"]


def _rounds_callback_base():
    import xgboost as xgb

    return xgb.callback.TrainingCallback


class RoundsCallback(_rounds_callback_base()):
    """Run on every worker each round: reports rounds (the first worker) and stops all
    workers together when the job is cancelled (a collective decision, so none hangs)."""

    def __init__(self, progress_name: str, stop_name: str, planned: int):
        super().__init__()
        self.progress_name = progress_name
        self.stop_name = stop_name
        self.planned = planned

    def after_iteration(self, model, epoch, evals_log) -> bool:
        from distributed import Event, Variable, get_client
        from xgboost import collective

        client = get_client()
        stop = 1.0 if Event(self.stop_name, client=client).is_set() else 0.0
        if collective.get_rank() == 0 and (epoch % 5 == 0 or epoch + 1 == self.planned):
            Variable(self.progress_name, client=client).set(epoch + 1)
        decided = collective.allreduce(np.array([stop]), collective.Op.MAX)
        return bool(decided[0] > 0)


def score_on_cluster(
    address, files, settings, output, options, champion, model_name, monitor, context
) -> dict:
    """Prod by reference: every file scored on a worker; the trainer writes the output in
    input order and records each file's monitoring counts as a batch."""
    from trainer.monitoring.monitor import new_batch_id

    client = client_for(address)
    workers = _workers(client)
    if not workers:
        raise ApiError(error_codes.CLUSTER_UNAVAILABLE, "The Dask cluster has no workers.")
    model = champion.model
    payload = client.scatter(parts.payload_of(model), broadcast=True)
    writer = by_reference.OutputWriter(output, settings)
    warnings: dict = {}
    reports, batch_ids, ignored, columns = [], [], None, None
    in_flight = max(2, IN_FLIGHT_PER_WORKER * len(workers))
    batches: list = []
    try:
        pending: list = []
        queue = list(files)
        while queue or pending:
            while queue and len(pending) < in_flight:
                item = queue.pop(0)
                batch_id = new_batch_id() if monitor is not None else None
                future = client.submit(
                    parts.score_file, item, settings, payload, options, None, batch_id, pure=False
                )
                pending.append((batch_id, future))
            batch_id, future = pending.pop(0)
            result = _gather(client, [future], context, "Scoring")[0]
            if columns is None:
                columns = result["columns"]
            elif set(result["columns"]) != set(columns):
                datasource.align(
                    pa.table({c: [] for c in result["columns"]}), columns, result["name"]
                )
            reports.append(result["report"])
            by_reference.merge_warnings(warnings, result["warnings"])
            ignored = result["ignored"]
            output_table = result["output"]
            if writer.schema is not None:
                output_table = output_table.select(writer.schema.names)
            writer.write(output_table)
            if monitor is not None:
                batches.append((batch_id, result["counts"], result["kept"], result["rows"]))
            context.progress(
                stage=f"scored {len(reports)} of {len(files)} files", rows_read=writer.rows
            )
        written = writer.close()
    except BaseException:
        writer.abort()
        raise
    batch_ids = by_reference.record_batches(monitor, model_name, champion, batches)
    answer = by_reference.prod_answer(
        model_name,
        champion,
        written["rows"],
        written,
        warnings,
        ignored,
        reports,
        files,
        columns,
        batch_ids,
    )
    answer["cleaning"]["workers"] = len(workers)
    return answer
