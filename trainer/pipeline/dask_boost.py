"""Boosting on the cluster: `xgboost.dask` on the partitions' matrices, followed from the job's
thread (rounds reported, cancellation, a lost worker or a stall failing clearly)."""

from __future__ import annotations

import threading
import time

import dask.dataframe as dd
import numpy as np
import pandas as pd
import xgboost as xgb
import xgboost.dask as dxgb  # explicitly: xgboost does not import its dask module
from distributed import Event, Variable, get_client
from xgboost import collective
from xgboost.collective import Config

from sluice_common import error_codes
from sluice_common.errors import ApiError
from trainer.pipeline import cluster_parts as parts
from trainer.pipeline.dask_client import lost, workers_of

COLLECTIVE_TIMEOUT_SECONDS = 120  # a worker lost mid-training fails the others this fast
STALL_SECONDS = 600  # no boosting round for this long: failed, never left hanging
CANCEL_GRACE_SECONDS = 15


def trainer(client, built, counts, params: dict, types: list, names: list[str], context):
    """`train(rows, rounds, early_stopping)` for fit/booster.py's `boost`: on the fit rows with
    the stop rows watched ("fit"), or on every training row ("train")."""

    def matrix(which: str, keep, ref=None):
        chosen = [b for b, c in zip(built, counts, strict=True) if keep(c)]
        x = dask_frame(client, chosen, which, 0, names)
        y = dask_frame(client, chosen, which, 1, None)
        return dxgb.DaskQuantileDMatrix(
            client, x, y, feature_types=types, enable_categorical=True, ref=ref
        )

    def train(rows: str, rounds: int, early_stopping: int | None):
        if rows == "train":
            every = matrix("train", lambda c: c["fit"] + c["stop"] > 0)
            return boost_on_cluster(client, params, every, rounds, [], None, context)
        fit = matrix("fit", lambda c: c["fit"] > 0)
        stop = matrix("stop", lambda c: c["stop"] > 0, ref=fit)
        return boost_on_cluster(
            client, params, fit, rounds, [(stop, "valid")], early_stopping, context
        )

    return train


def dask_frame(client, built, which: str, position: int, names):
    getter = parts.training_rows if which == "train" else parts.pick
    args = (position,) if which == "train" else (which, position)
    pieces = [client.submit(getter, b, *args, pure=False) for b in built]
    if names is None:
        meta = pd.Series([], dtype="float64")
    else:
        meta = pd.DataFrame({f"f{i}": pd.Series([], dtype="float32") for i in range(len(names))})
    return dd.from_delayed(pieces, meta=meta, verify_meta=False)


def boost_on_cluster(client, params, dtrain, rounds, evals, early_stopping, context):
    """xgboost.dask.train in a thread; the job's thread follows it, reports rounds, cancels,
    and fails clearly when a worker is lost (the others' collective would wait for it)."""
    name = f"sluice-{context.job_id}-{time.monotonic_ns()}"
    progress = Variable(f"{name}-rounds", client=client)
    stop = Event(f"{name}-stop", client=client)
    progress.set(0)  # a get before the first round would log an error on the scheduler
    workers = workers_of(client)  # as the training starts: lost ones were replaced meanwhile
    callback = RoundsCallback(f"{name}-rounds", f"{name}-stop", rounds)
    result: dict = {}

    def run():
        try:
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
                # The workers did not stop in time: left to the timeout. check() raises the
                # job's cancellation.
                context.check()
        if time.monotonic() - last_change > STALL_SECONDS:
            stop.set()
            raise ApiError(
                error_codes.CLUSTER_TRAINING_STALLED,
                f"Training on the cluster made no progress for {STALL_SECONDS} s (a worker "
                "busy with an earlier training cut off by a restart, or a stuck collective). "
                "Nothing was registered; restart the Dask workers and send the request again.",
            )
        gone = workers - workers_of(client)
        if gone:
            stop.set()
            raise lost("Training", f"{len(gone)} worker(s) left the cluster during training")
    if "error" in result:
        err = result["error"]
        if context.cancelled:
            context.check()  # raises the job's cancellation
        raise ApiError(
            error_codes.CLUSTER_TRAINING_FAILED, f"Training on the cluster failed: {str(err)[:300]}"
        ) from err
    if context.cancelled:
        context.check()  # raises the job's cancellation
    return result["out"]["booster"]


class RoundsCallback(xgb.callback.TrainingCallback):
    """Run on every worker each round: reports rounds (the first worker) and stops all
    workers together when the job is cancelled (a collective decision, so none hangs)."""

    def __init__(self, progress_name: str, stop_name: str, planned: int):
        super().__init__()
        self.progress_name = progress_name
        self.stop_name = stop_name
        self.planned = planned

    def after_iteration(self, model, epoch, evals_log) -> bool:
        client = get_client()
        stop = 1.0 if Event(self.stop_name, client=client).is_set() else 0.0
        if collective.get_rank() == 0 and (epoch % 5 == 0 or epoch + 1 == self.planned):
            Variable(self.progress_name, client=client).set(epoch + 1)
        decided = collective.allreduce(np.array([stop]), collective.Op.MAX)
        return bool(decided[0] > 0)
