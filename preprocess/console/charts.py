"""The console's charts, drawn on the server as SVG by sluice_common.svg (which escapes every
string it is given), and the words for the numbers beside them."""

from __future__ import annotations

from markupsafe import Markup

from sluice_common.svg import finite, lines, number

LOWER_IS_BETTER = {"log_loss", "rmse", "mae", "mse", "squared_error"}
AT_MOST_ONE = {"accuracy", "balanced_accuracy", "roc_auc", "f1", "precision", "recall", "r2"}


def primary_metric(versions: list[dict]) -> str | None:
    """The metric the promotion gate compares (the newest decision's), else the first one
    the versions logged."""
    for version in versions:
        metric = (version.get("promotion") or {}).get("metric")
        if metric:
            return str(metric)
    for version in versions:
        for name in version.get("metrics") or {}:
            return str(name).removeprefix("valid_")
    return None


def metric_over_versions(model: str, versions: list[dict], metric: str) -> Markup | None:
    """A line of `metric` (validation) from the oldest version to the newest shown."""
    ordered = sorted(versions, key=lambda v: int(v.get("version") or 0))
    values = [(v.get("metrics") or {}).get(f"valid_{metric}") for v in ordered]
    if not any(finite(value) for value in values):
        return None
    labels = [f"v{v.get('version')}" for v in ordered]
    svg = lines(
        "metric-over-versions",
        model,
        labels,
        [(metric, values)],
        y_label=metric,
        from_zero=False,
        x_label="version",
        ceiling=1.0 if metric in AT_MOST_ONE else None,
        every_tick=True,
    )
    return Markup(svg)  # built by sluice_common.svg, which escapes every string


def quality_over_time(model: str, performance: dict) -> Markup | None:
    """The live primary metric over time against the validation baseline (a dashed rule)."""
    primary = performance.get("primary")
    timeline = performance.get("timeline") or {}
    values = (timeline.get("metrics") or {}).get(primary)
    times = timeline.get("times") or []
    if not primary or not times or not values:
        return None
    baseline = (performance.get("baseline") or {}).get(primary)
    svg = lines(
        "quality",
        model,
        times,
        [(f"live {primary}", values)],
        rules=[(f"validation baseline {number(baseline)}", baseline, "baseline")],
        y_label=str(primary),
        from_zero=False,
    )
    return Markup(svg)  # built by sluice_common.svg, which escapes every string


VERDICTS = {
    "ok": "stable: within the thresholds, or no change beyond the noise",
    "warning": "shifting: above the warning threshold",
    "alert": "drifted: above the alert threshold",
    "insufficient_data": "not judged yet",
}


def drift_rows(drift: dict) -> list[dict]:
    """One row per monitored column (then the prediction): score, thresholds and a verdict."""
    thresholds = (drift.get("settings") or {}).get("thresholds") or {}
    rows = []
    named = list((drift.get("features") or {}).items())
    if drift.get("prediction"):
        named.append(("prediction", drift["prediction"]))
    for name, result in named:
        method = result.get("method")
        status = result.get("status") or "insufficient_data"
        verdict = VERDICTS.get(status, status.replace("_", " "))
        if result.get("note"):
            verdict = f"{verdict} ({result['note']})"
        rows.append(
            {
                "name": name,
                "method": method,
                "score": number(result.get("score")),
                "warning": number((thresholds.get("warning") or {}).get(method)),
                "alert": number((thresholds.get("alert") or {}).get(method)),
                "status": status,
                "verdict": verdict,
            }
        )
    return rows
