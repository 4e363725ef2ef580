"""Drift of a window's counts against the reference profile (pure).

Scores, on the same bins for both sides (missing cells are a bin of their own, so a change in
how often a column is empty counts as drift):
- psi: population stability index, sum((q - p) * ln(q / p)), proportions floored at 1e-4;
- js: Jensen-Shannon distance (base 2, 0..1);
- ks: the largest gap between the two cumulative distributions on the quantile grid (numeric
  columns; a KS statistic measured at the grid's points, so never above the exact one).

A score speaks only with at least `min_rows` rows, and flags drift only when the difference is
also beyond noise: a chi-square test of the bin counts (psi, js) or the KS critical value (ks)
at `alpha`. Large, certain, small-sample wobbles apart, both must hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from trainer.monitoring.profile import numeric_bins, out_of_range

FLOOR = 1e-4
METHODS = ("psi", "js", "ks")


@dataclass(frozen=True)
class DriftSettings:
    """Methods and thresholds (docs/monitoring.md)."""

    numeric_method: str = "psi"
    categorical_method: str = "psi"
    warning: dict | None = None  # method -> threshold
    alert: dict | None = None
    min_rows: int = 200
    alpha: float = 0.01
    share_alert: float = 0.5

    def threshold(self, level: str, method: str) -> float:
        given = (self.warning if level == "warning" else self.alert) or {}
        return given.get(method, DEFAULT_THRESHOLDS[level][method])


DEFAULT_THRESHOLDS = {
    "warning": {"psi": 0.1, "js": 0.1, "ks": 0.1},
    "alert": {"psi": 0.25, "js": 0.2, "ks": 0.2},
}


def distribution(part: dict, counts: dict) -> np.ndarray:
    """Counts per bin, missing last (the bins every score compares)."""
    bins = numeric_bins(part, counts) if part["kind"] == "numeric" else counts["bins"]
    return np.asarray(bins + [counts["missing"]], dtype="float64")


def bin_labels(part: dict) -> list[str]:
    """Readable labels of a column's bins, missing last."""
    if part["kind"] == "categorical":
        return [str(label) for label in part["bins"]] + ["missing"]
    edges = part["edges"]
    if not edges:
        return ["all values", "missing"]
    labels = [f"≤ {edges[0]:.4g}"]
    labels += [f"{low:.4g} – {high:.4g}" for low, high in zip(edges, edges[1:], strict=False)]
    return labels + [f"> {edges[-1]:.4g}", "missing"]


def proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros_like(counts)


def psi(reference: np.ndarray, recent: np.ndarray) -> float:
    p = np.maximum(proportions(reference), FLOOR)
    q = np.maximum(proportions(recent), FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference: np.ndarray, recent: np.ndarray) -> float:
    p, q = proportions(reference), proportions(recent)
    m = (p + q) / 2

    def kl(a):
        present = a > 0
        return float(np.sum(a[present] * np.log2(a[present] / m[present])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def ks_on_grid(reference_grid: list[int], recent_grid: list[int]) -> float:
    ref = np.cumsum(reference_grid, dtype="float64")
    now = np.cumsum(recent_grid, dtype="float64")
    if not ref[-1] or not now[-1]:
        return 0.0
    return float(np.max(np.abs(ref / ref[-1] - now / now[-1])))


def chi_square_p(reference: np.ndarray, recent: np.ndarray) -> float:
    """p-value that both samples come from one distribution over these bins."""
    used = (reference + recent) > 0
    table = np.vstack([reference[used], recent[used]])
    if table.shape[1] < 2:
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def ks_critical(n_reference: int, n_recent: int, alpha: float) -> float:
    """The two-sample KS statistic's critical value at `alpha` (asymptotic)."""
    c = math.sqrt(-math.log(alpha / 2) / 2)
    return c * math.sqrt((n_reference + n_recent) / (n_reference * n_recent))


def assess_column(part: dict, reference: dict, recent: dict | None, settings: DriftSettings):
    """One column's drift: score, method, status, and the numbers behind them."""
    method = settings.numeric_method if part["kind"] == "numeric" else settings.categorical_method
    if method == "ks" and part["kind"] != "numeric":
        method = "psi"
    ref = distribution(part, reference)
    rows = (
        int(sum(recent["grid" if part["kind"] == "numeric" else "bins"]) + recent["missing"])
        if recent
        else 0
    )
    result = {"method": method, "rows": rows, "score": None, "drifted": None}
    if rows < settings.min_rows:
        result["status"] = "insufficient_data"
        result["note"] = f"needs at least {settings.min_rows} rows; has {rows}"
        return result
    now = distribution(part, recent)
    scores = {"psi": psi(ref, now), "js": js_distance(ref, now)}
    if part["kind"] == "numeric":
        scores["ks"] = ks_on_grid(reference["grid"], recent["grid"])
        result["out_of_range"] = out_of_range(recent)
    else:
        result["unseen"] = recent["bins"][-1]
    result["missing_share"] = round(recent["missing"] / rows, 6)
    if method == "ks":
        present = int(sum(recent["grid"]))
        n_ref = int(sum(reference["grid"]))
        beyond_noise = (
            present > 0
            and n_ref > 0
            and (scores["ks"] > ks_critical(n_ref, present, settings.alpha))
        )
        result["ks_critical"] = round(
            ks_critical(max(n_ref, 1), max(present, 1), settings.alpha), 6
        )
    else:
        p_value = chi_square_p(ref, now)
        beyond_noise = p_value < settings.alpha
        result["p_value"] = p_value
    score = scores[method]
    result["score"] = round(score, 6)
    result["scores"] = {name: round(value, 6) for name, value in scores.items()}
    if beyond_noise and score >= settings.threshold("alert", method):
        result["status"] = "alert"
    elif beyond_noise and score >= settings.threshold("warning", method):
        result["status"] = "warning"
    else:
        result["status"] = "ok"
    result["drifted"] = result["status"] == "alert"
    return result


def assess(profile: dict, counts: dict | None, settings: DriftSettings) -> dict:
    """Drift of every monitored column and of the prediction over a window's counts."""
    reference = profile["reference"]
    recent_features = (counts or {}).get("features", {})
    features = {}
    for part in profile["features"]:
        features[part["name"]] = assess_column(
            part,
            reference["features"][part["name"]],
            recent_features.get(part["name"]),
            settings,
        )
    prediction = assess_column(
        profile["prediction"],
        reference["prediction"],
        (counts or {}).get("prediction"),
        settings,
    )
    score = None
    if profile.get("prediction_score"):
        score = assess_column(
            profile["prediction_score"],
            reference["prediction_score"],
            (counts or {}).get("prediction_score"),
            settings,
        )
    assessed = [f for f in features.values() if f["status"] != "insufficient_data"]
    drifted = sorted(name for name, f in features.items() if f["drifted"])
    share = len(drifted) / len(assessed) if assessed else None
    return {
        "features": features,
        "drifted_features": drifted,
        "share_drifted": None if share is None else round(share, 6),
        "prediction": prediction,
        "prediction_score": score,
        "settings": {
            "numeric_method": settings.numeric_method,
            "categorical_method": settings.categorical_method,
            "thresholds": {
                level: {m: settings.threshold(level, m) for m in METHODS}
                for level in ("warning", "alert")
            },
            "min_rows": settings.min_rows,
            "alpha": settings.alpha,
            "share_alert": settings.share_alert,
        },
    }
