"""The trainer's monitoring settings (docs/monitoring.md), declared."""

from __future__ import annotations

from sluice_common.settings import Setting


def _monitoring(name, type_, default, meaning, **more) -> Setting:
    return Setting(name, type_, default, meaning, ("trainer",), "Monitoring", **more)


def _thresholds() -> list[Setting]:
    """Drift thresholds of each method (trainer/__init__.py reads them by method)."""
    found = []
    for method, warning, alert in (("psi", 0.1, 0.25), ("js", 0.1, 0.2), ("ks", 0.1, 0.2)):
        listed = method == "psi"  # .env.example shows PSI's, the default method's
        for level, threshold in (("warning", warning), ("alert", alert)):
            name = f"MONITORING_{method.upper()}_{level.upper()}"
            meaning = (
                f"{method} drift at or above this is {'a' if level == 'warning' else 'an'} {level}"
            )
            found.append(_monitoring(name, float, threshold, meaning, env_example=listed))
    return found


MONITORING_SETTINGS = [
    _monitoring(
        "MONITORING_ENABLED",
        bool,
        True,
        ("record prod batches (0: no batch_id, /monitoring answers 404 `monitoring_off`)"),
        env_example=True,
    ),
    _monitoring(
        "MONITORING_RETENTION_DAYS",
        float,
        90.0,
        "batches older than this many days go",
        env_example=True,
    ),
    _monitoring(
        "MONITORING_RETENTION_ROWS",
        int,
        10_000_000,
        ("beyond this many kept prediction rows, the oldest batches' predictions (and labels) go"),
        env_example=True,
    ),
    _monitoring(
        "MONITORING_MIN_ROWS", int, 200, "rows a window needs before drift speaks", env_example=True
    ),
    _monitoring(
        "MONITORING_NUMERIC_METHOD",
        str,
        "psi",
        "drift method of numeric columns: psi, js or ks",
        env_example=True,
    ),
    _monitoring(
        "MONITORING_CATEGORICAL_METHOD",
        str,
        "psi",
        "drift method of categorical columns: psi or js",
        env_example=True,
    ),
    *_thresholds(),
    _monitoring(
        "MONITORING_ALPHA", float, 0.01, "significance a drift must also reach", env_example=True
    ),
    _monitoring(
        "MONITORING_SHARE_ALERT",
        float,
        0.5,
        ("share of drifted columns that makes the model's status `alert`"),
        env_example=True,
    ),
    _monitoring(
        "MONITORING_MIN_LABELS", int, 100, "labels needed to judge live quality", env_example=True
    ),
    _monitoring(
        "MONITORING_METRIC_TOLERANCE",
        float,
        0.1,
        (
            "the smallest relative loss increase that alerts (it must also be beyond both"
            " the live and the validation sample's noise, 99% one-sided)"
        ),
        env_example=True,
    ),
    _monitoring(
        "MONITORING_METRICS_MINUTES",
        float,
        60.0,
        "the window behind the drift and live metrics on /metrics",
    ),
]
