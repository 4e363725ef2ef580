"""What GET /models/<name>/challenger reports of a challenge: the paired comparison on the
labelled rows both models scored, and what the shadow did (batches, latency, errors)."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np

from sluice_common import error_codes
from sluice_common.errors import ApiError
from trainer.lifecycle import challenger_stats
from trainer.monitoring import shadow_store
from trainer.monitoring.store import MonitoringStore

KNOWN_METRICS = [m for metrics in challenger_stats.METRICS.values() for m in metrics]


def check_metric(metric: str | None) -> None:
    """400 for a metric no task has (the task's own check comes with its profile)."""
    if metric is not None and metric not in KNOWN_METRICS:
        raise ApiError(
            error_codes.INVALID_METRIC,
            f"metric must be one of {', '.join(KNOWN_METRICS)} (the first two for "
            f"classification, the others for regression); got {metric[:40]!r}.",
        )


def report(
    store: MonitoringStore, name: str, champion, version: str, since: datetime, metric
) -> dict:
    """The comparison of challenger `version` with `champion` since `since`, its coverage, and
    the shadow's batches, latency and errors."""
    store.flush(timeout=2 * store.flush_seconds + 1)
    profile = store.profile(name, champion) if champion else None
    if profile is None:  # the champion has answered no batch yet
        comparison = challenger_stats.compare(metric or "accuracy", [], [])
        comparison["metric"] = metric
    else:
        comparison = paired_comparison(store, name, champion, version, since, profile, metric)
    done = shadow_store.activity(store.engine, name, version, since)
    scored_rows = done["by_status"].get("scored", (0, 0))[1]
    labelled = comparison["labelled_rows"]
    comparison["coverage"] = round(labelled / scored_rows, 6) if scored_rows else 0.0
    comparison.update(_activity(done))
    return comparison


def _activity(done: dict) -> dict:
    """Batches by outcome, each side's latency (ms) and errors."""
    counts = {s: n for s, (n, _) in done["by_status"].items()}
    return {
        "batches": {
            "shadowed": counts.get("scored", 0),
            "skipped": counts.get("skipped", 0),
            "rows_shadowed": done["by_status"].get("scored", (0, 0))[1],
        },
        "latency_ms": {
            "champion": _percentiles(done["champion_seconds"]),
            "challenger": _percentiles(done["challenger_seconds"]),
        },
        "errors": {
            "champion": counts.get("champion_error", 0),
            "challenger": counts.get("error", 0),
            "last_challenger_error": done["last_error"],
        },
    }


def _percentiles(seconds: list) -> dict | None:
    if not seconds:
        return None
    values = np.asarray(seconds, dtype="float64") * 1000
    return {
        "p50": round(float(np.percentile(values, 50)), 3),
        "p95": round(float(np.percentile(values, 95)), 3),
        "batches": len(values),
    }


def metric_for(task: str, metric: str | None) -> str:
    """The metric asked for (400 when the task has no such one), else the task's first."""
    allowed = challenger_stats.METRICS[task]
    if metric is None:
        return allowed[0]
    if metric not in allowed:
        raise ApiError(
            error_codes.INVALID_METRIC,
            f"metric must be one of {', '.join(allowed)} for a {task} model; got {metric!r}.",
        )
    return metric


def paired_comparison(store, name, champion, version, since, profile, metric) -> dict:
    """The comparison on every labelled row both models scored since the challenge began."""
    task = profile["task"]
    metric = metric_for(task, metric)
    ours, theirs = [], []
    for champ, chall, texts, classes in shadow_store.paired(
        store.engine, name, champion, version, since
    ):
        if task == "regression":
            y = np.array([float(t) for t in texts], dtype="float64")
            keep = np.isfinite(y)
            a = challenger_stats.row_losses(metric, y[keep], champ[keep])
            b = challenger_stats.row_losses(metric, y[keep], chall[keep])
        else:
            a = challenger_stats.row_losses(metric, _codes(profile["classes"], texts), champ)
            b = challenger_stats.row_losses(metric, _codes(classes or [], texts), chall)
        ours.append(a)
        theirs.append(b)
    a = np.concatenate(ours) if ours else np.zeros(0)
    b = np.concatenate(theirs) if theirs else np.zeros(0)
    result = challenger_stats.compare(metric, a, b)
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()
    }


def _codes(classes: list, texts: list[str]) -> np.ndarray:
    """Each label's index in a model's classes (-1 for a class it does not know)."""
    index = {str(label): code for code, label in enumerate(classes)}
    return np.array([index.get(text, -1) for text in texts], dtype="int64")
