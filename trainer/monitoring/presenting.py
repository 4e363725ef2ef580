"""Shape a monitoring summary for the JSON answer and for the HTML report (pure)."""

from __future__ import annotations

from datetime import datetime

from sluice_common.database import iso_utc
from trainer.monitoring import drift
from trainer.monitoring.profile import merge_counts

MAX_POINTS = 200  # points of a drift timeline; minutes are merged beyond that


def public(summary: dict) -> dict:
    """The /monitoring answer: the summary without what only the report uses."""
    return {key: value for key, value in summary.items() if not key.startswith("_")}


def timeline(profile: dict, minutes: list, settings: drift.DriftSettings) -> dict:
    """Drift score per feature over time: minutes merged into at most MAX_POINTS buckets,
    each bucket scored on its own counts (None where it has too few rows)."""
    buckets: list[tuple[datetime, dict]] = []
    size = max(1, -(-len(minutes) // MAX_POINTS))
    for start in range(0, len(minutes), size):
        merged = None
        for _, counts in minutes[start : start + size]:
            merged = merge_counts(merged, counts)
        buckets.append((minutes[start][0], merged))
    series: dict[str, list] = {part["name"]: [] for part in profile["features"]}
    series["prediction"] = []
    for _, counts in buckets:
        assessed = drift.assess(profile, counts, settings)
        for name, result in assessed["features"].items():
            series[name].append(result["score"])
        series["prediction"].append(assessed["prediction"]["score"])
    method = settings.numeric_method
    return {
        "times": [iso_utc(moment) for moment, _ in buckets],
        "series": series,
        "method": method,
        "thresholds": {
            "warning": settings.threshold("warning", method),
            "alert": settings.threshold("alert", method),
        },
    }


def _feature(part: dict, reference: dict, recent: dict | None, result: dict) -> dict:
    ref = drift.proportions(drift.distribution(part, reference))
    now = drift.proportions(drift.distribution(part, recent)) if recent else None
    return {
        "name": part.get("name", "prediction"),
        "kind": part["kind"],
        "bins": drift.bin_labels(part),
        "reference": [float(x) for x in ref],
        "recent": None if now is None or not now.sum() else [float(x) for x in now],
        "score": result["score"],
        "method": result["method"],
        "drifted": result["drifted"],
        "status": result["status"],
    }


def report_data(summary: dict, settings: drift.DriftSettings, generated_at: datetime) -> dict:
    """The input of report.render_report (its docstring has the shape)."""
    profile = summary.get("_profile")
    features, prediction, line = [], None, None
    if profile is not None and summary.get("drift"):
        counts = None
        for _, minute in summary.get("_minutes", []):
            counts = merge_counts(counts, minute)
        counts = counts or {}
        reference = profile["reference"]
        for part in profile["features"]:
            features.append(
                _feature(
                    part,
                    reference["features"][part["name"]],
                    counts.get("features", {}).get(part["name"]),
                    summary["drift"]["features"][part["name"]],
                )
            )
        prediction = _feature(
            {**profile["prediction"], "name": "prediction"},
            reference["prediction"],
            counts.get("prediction"),
            summary["drift"]["prediction"],
        )
        line = timeline(profile, summary.get("_points") or summary.get("_minutes", []), settings)
    performance = summary.get("performance") or {}
    return {
        "model": summary["model"],
        "version": summary["version"],
        "generated_at": iso_utc(generated_at),
        "window": {"since": summary["window"]["since"], "until": summary["window"]["until"]},
        "summary": {
            "batches": summary["batches"],
            "rows_scored": summary["rows_scored"],
            "status": summary["status"],
            "alerts": summary["alerts"],
            "min_rows": settings.min_rows,
        },
        "features": features,
        "prediction": prediction,
        "timeline": line
        or {"times": [], "series": {}, "method": settings.numeric_method, "thresholds": {}},
        "performance": {
            "labelled_rows": performance.get("labelled_rows", 0),
            "rows_scored": performance.get("rows_scored", summary["rows_scored"]),
            "coverage": performance.get("coverage", 0.0),
            "primary": performance.get("primary"),
            "metrics": performance.get("metrics", {}),
            "baseline": performance.get("baseline", {}),
            "timeline": performance.get("timeline", {"times": [], "metrics": {}}),
            "status": performance.get("status"),
            "note": performance.get("note"),
        },
    }
