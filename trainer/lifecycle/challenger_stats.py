"""Champion against challenger on the same labelled rows: a comparison that stays valid
however often it is read (pure numpy/scipy).

The test, stated up front: an asymptotic confidence sequence (Waudby-Smith, Arbour, Sinha,
Kennedy and Ramdas 2021, "Time-uniform central limit theory and asymptotic confidence
sequences", Theorem 2.2; the two-sided normal-mixture boundary of Howard et al. 2021) on the
mean of the paired per-row differences d_i = challenger's loss - champion's loss. With
probability at least 95%, the mean difference lies in every interval it ever reports, so a
user may read the comparison after every label and stop whenever it says so. Its mixture is
tuned to be narrowest at PLANNED_LABELS labels; it is valid at every count.

- `promote`: the whole interval says the challenger is better (for accuracy, the exact
  McNemar test on the discordant rows must agree at 5% as well);
- `keep`: the whole interval says it is worse (McNemar likewise);
- `inconclusive`: the whole interval lies within the margin (the models differ by less than
  a difference worth acting on);
- `continue`: anything else, and always before MIN_LABELS labelled rows.

Accuracy's per-row loss is the 0/1 error, so the difference of means is the accuracy
difference; log loss, squared error and absolute error are per-row losses themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from trainer.fit.metrics import EPS

ALPHA = 0.05  # 95% intervals
PLANNED_LABELS = 500  # where the boundary is tightest
MIN_LABELS = 100  # no decision before this many paired labelled rows
ACCURACY_MARGIN = 0.01  # one accuracy point
LOSS_MARGIN = 0.02  # of the champion's mean loss
METRICS = {
    "classification": ("accuracy", "log_loss"),
    "regression": ("squared_error", "absolute_error"),
}
HIGHER_IS_BETTER = {"accuracy"}


@dataclass(frozen=True)
class Plan:
    """The comparison's constants (the defaults above; tests shorten them)."""

    alpha: float = ALPHA
    planned_labels: int = PLANNED_LABELS
    min_labels: int = MIN_LABELS


def mixture_rho(alpha: float, planned: int) -> float:
    """The mixture's spread that makes the boundary narrowest at `planned` observations
    (Waudby-Smith et al. 2021, eq. (11))."""
    log_term = -2 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term + 1)) / planned)


def cs_radius(t: int, sd: float, alpha: float = ALPHA, planned: int = PLANNED_LABELS) -> float:
    """Half-width of the two-sided asymptotic confidence sequence after t observations whose
    standard deviation is `sd`."""
    rho2 = mixture_rho(alpha, planned) ** 2
    return sd * math.sqrt(
        2 * (t * rho2 + 1) / (t * t * rho2) * math.log(math.sqrt(t * rho2 + 1) / alpha)
    )


def mcnemar(champion_right: np.ndarray, challenger_right: np.ndarray) -> dict:
    """The exact McNemar test: among rows exactly one model got right, is the challenger
    right as often as the champion? The two-sided binomial test at one half, which is
    symmetric: twice the smaller tail (scipy's binomtest answers the same, ~15x slower)."""
    only_challenger = int(np.sum(challenger_right & ~champion_right))
    only_champion = int(np.sum(champion_right & ~challenger_right))
    discordant = only_challenger + only_champion
    smaller = min(only_challenger, only_champion)
    p_value = min(1.0, 2 * float(stats.binom.cdf(smaller, discordant, 0.5))) if discordant else 1.0
    return {
        "discordant_rows": discordant,
        "only_challenger_right": only_challenger,
        "only_champion_right": only_champion,
        "p_value": p_value,
    }


def row_losses(metric: str, y, predictions):
    """Per-row losses of one model: `y` class indices into its own classes (-1: a class it
    does not know) or values; `predictions` class probabilities or values."""
    if metric in ("squared_error", "absolute_error"):
        error = np.asarray(predictions, dtype="float64") - np.asarray(y, dtype="float64")
        return error**2 if metric == "squared_error" else np.abs(error)
    proba = np.asarray(predictions, dtype="float64")
    y = np.asarray(y, dtype="int64")
    known = y >= 0
    if metric == "accuracy":
        return (~known | (np.argmax(proba, axis=1) != y)).astype("float64")
    picked = np.where(known, proba[np.arange(len(y)), np.where(known, y, 0)], 0.0)
    return -np.log(np.clip(picked, EPS, 1.0))


def _margin(metric: str, champion_loss: float) -> float:
    return ACCURACY_MARGIN if metric == "accuracy" else LOSS_MARGIN * abs(champion_loss)


def compare(metric: str, champion_losses, challenger_losses, plan: Plan = Plan()) -> dict:
    """The paired comparison of two models' per-row losses on the same rows (see the module's
    docstring): scores, difference (challenger - champion, in the metric's own units),
    interval, decision and the reason in words and numbers."""
    a = np.asarray(champion_losses, dtype="float64")
    b = np.asarray(challenger_losses, dtype="float64")
    n = len(a)
    higher = metric in HIGHER_IS_BETTER
    sign = -1.0 if higher else 1.0  # losses to the metric's own direction
    result = {"metric": metric, "labelled_rows": n, "test": _described(plan)}
    if n == 0:
        result.update(
            champion_score=None,
            challenger_score=None,
            difference=None,
            interval=None,
            decision="continue",
            reason="no labelled rows scored by both models yet; send labels to /feedback",
        )
        return result
    d = b - a
    mean_a = float(a.mean())
    result["champion_score"] = 1 - mean_a if higher else mean_a
    result["challenger_score"] = 1 - float(b.mean()) if higher else float(b.mean())
    sd = _spread(metric, d)
    radius = cs_radius(n, sd, plan.alpha, plan.planned_labels) if n > 1 else math.inf
    low, high = float(d.mean()) - radius, float(d.mean()) + radius
    # The interval of the difference in the metric's direction (accuracy: higher is better).
    interval = sorted((sign * low, sign * high))
    result["difference"] = result["challenger_score"] - result["champion_score"]
    result["interval"] = [interval[0], interval[1]] if math.isfinite(radius) else None
    margin = _margin(metric, mean_a)
    exact = None
    if metric == "accuracy":
        exact = result["mcnemar"] = mcnemar(a == 0, b == 0)
    result["decision"], result["reason"] = _decide(metric, n, low, high, margin, exact, plan)
    result["margin"] = margin
    return result


def _spread(metric: str, d: np.ndarray) -> float:
    """The differences' standard deviation. For accuracy, counted as if one more row had
    favoured each model: no discordant row yet is no evidence of no difference."""
    if metric == "accuracy":
        d = np.concatenate([d, [-1.0, 1.0]])
    return float(d.std(ddof=1)) if len(d) > 1 else math.inf


def _decide(metric, n, low, high, margin, exact, plan) -> tuple[str, str]:
    """Decision and reason from the interval of the mean loss difference [low, high]."""
    unit = "accuracy" if metric == "accuracy" else f"mean {metric.replace('_', ' ')}"

    def span(lo: float, hi: float) -> str:
        return f"[{lo:+.4g}, {hi:+.4g}]"

    shown = span(-high, -low) if metric == "accuracy" else span(low, high)
    if n < plan.min_labels:
        return "continue", (
            f"{n} labelled rows scored by both models; no decision before {plan.min_labels} "
            f"(the difference in {unit} lies in {shown} so far, 95% for every look)"
        )
    mc = exact["p_value"] if exact is not None else 0.0
    mc_text = f"; exact McNemar p = {mc:.3g}" if exact is not None else ""
    if high < 0 and mc < plan.alpha:
        return "promote", (
            f"the challenger is better beyond the noise: over {n} labelled rows the difference "
            f"in {unit} (challenger - champion) lies in {shown} with 95% confidence at every "
            f"look{mc_text}"
        )
    if low > 0 and mc < plan.alpha:
        return "keep", (
            f"the challenger is worse beyond the noise: over {n} labelled rows the difference "
            f"in {unit} (challenger - champion) lies in {shown} with 95% confidence at every "
            f"look{mc_text}"
        )
    if -margin < low and high < margin:
        return "inconclusive", (
            f"no difference worth acting on: over {n} labelled rows the difference in {unit} "
            f"lies in {shown}, within +/-{margin:.4g}, with 95% confidence at every look"
        )
    return "continue", (
        f"not decided yet: over {n} labelled rows the difference in {unit} lies in {shown} "
        f"(95% at every look), which holds 0 and reaches beyond +/-{margin:.4g}{mc_text}"
    )


def _described(plan: Plan) -> dict:
    return {
        "name": "asymptotic confidence sequence (always valid: read it as often as you like)",
        "confidence": 1 - plan.alpha,
        "planned_labels": plan.planned_labels,
        "min_labels": plan.min_labels,
    }
