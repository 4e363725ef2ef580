"""Live quality against the validation baseline, with both samples' noise (pure numpy).

The baseline is itself a mean over a finite sample (the validation rows), so it is compared
with the live loss as two samples: the difference of the mean per-row losses (log loss, or
squared error), its standard error sqrt(se_live^2 + se_baseline^2), and a one-sided z. A
baseline taken as exact alerts on unchanged data far more often than stated whenever there are
many more labels than validation rows (1 model in 5-6 in the report that led here)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# What each task's loss is per row, as the profile names it, and as the answer says it.
LOSS_METRIC = {"classification": "log_loss", "regression": "squared_error"}
LOSS_NAME = {"classification": "log loss", "regression": "mean squared error"}
SD_FROM_VALIDATION = "validation and live rows, pooled"
SD_FROM_LIVE = "live rows (the profile does not record the validation rows' spread)"


def loss_summary(task: str, losses) -> dict:
    """What a profile keeps of the validation rows' per-row losses: enough for their
    standard error (mean, standard deviation, count)."""
    values = np.asarray(losses, dtype="float64")
    values = values[np.isfinite(values)]
    n = len(values)
    return {
        "metric": LOSS_METRIC[task],
        "mean": float(values.mean()) if n else None,
        "sd": float(values.std(ddof=1)) if n > 1 else None,
        "rows": int(n),
    }


@dataclass(frozen=True)
class Baseline:
    """The validation loss, its per-row standard deviation (None when not recorded) and the
    number of rows it is the mean of."""

    value: float
    sd: float | None
    rows: int


def baseline_of(profile: dict) -> Baseline:
    """A version's baseline loss. Profiles from before Sluice kept the per-row spread have
    the validation metric and row count only: `sd` is None then."""
    metrics = profile["baseline"]
    if profile["task"] == "regression":
        value = float(metrics["rmse"]) ** 2
    else:
        value = float(metrics["log_loss"])
    stored = profile.get("baseline_loss") or {}
    rows = stored.get("rows") or profile.get("validation_rows") or 0
    return Baseline(value, stored.get("sd"), int(rows))


@dataclass(frozen=True)
class Rule:
    """When live quality alerts: worse beyond noise at `confidence` (one-sided) and by more
    than `tolerance` of the baseline (the smallest change worth an alert)."""

    tolerance: float = 0.1
    confidence: float = 0.99

    @property
    def critical_z(self) -> float:
        return NormalDist().inv_cdf(self.confidence)


def judge(task: str, live_losses, baseline: Baseline, rule: Rule) -> dict:
    """The live-vs-baseline comparison of the loss, with the numbers and the verdict.

    The live mean's standard error is its rows' standard deviation over sqrt(rows). The
    baseline's is a per-row standard deviation over sqrt(validation rows), that deviation
    estimated under the hypothesis being tested (nothing changed: both samples from one
    distribution) from both samples' spreads pooled. Per-row losses are right-skewed: a
    validation sample that happened to miss the rare large losses has both a low mean and a
    low spread, and on its own spread alone such a lucky baseline alerted about 2-3 times as
    often as stated. A version whose profile has no recorded spread (trained before Sluice
    kept it) pools the live rows' alone."""
    values = np.asarray(live_losses, dtype="float64")
    n = len(values)
    live = float(values.mean()) if n else math.nan
    live_sd = float(values.std(ddof=1)) if n > 1 else 0.0
    base_rows = max(1, baseline.rows)
    recorded = baseline.sd is not None and baseline.rows > 1 and math.isfinite(baseline.sd)
    if recorded and n > 1:
        pooled_sd = math.sqrt(
            ((n - 1) * live_sd**2 + (baseline.rows - 1) * baseline.sd**2) / (n + baseline.rows - 2)
        )
    else:
        pooled_sd = live_sd
    se_live = live_sd / math.sqrt(n) if n else math.nan
    se_base = pooled_sd / math.sqrt(base_rows)
    difference = live - baseline.value
    se = math.sqrt(se_live**2 + se_base**2)
    z_crit = rule.critical_z
    finite = math.isfinite(live) and math.isfinite(se)
    z = difference / se if finite and se > 0 else None  # no spread: any difference counts
    beyond_noise = not finite or (difference > 0 and (z is None or z >= z_crit))
    better = finite and difference < 0 and (z is None or z <= -z_crit)
    min_difference = rule.tolerance * baseline.value
    alert = not finite or (beyond_noise and difference > min_difference)
    if alert:
        verdict = "worse beyond noise"
    elif beyond_noise:
        verdict = "worse beyond noise, within the tolerance"
    elif better:
        verdict = "better beyond noise"
    else:
        verdict = "within noise"
    result = {
        "name": LOSS_NAME[task],
        "live": live,
        "live_standard_error": se_live,
        "live_rows": n,
        "baseline": baseline.value,
        "baseline_standard_error": se_base,
        "baseline_rows": baseline.rows,
        "live_sd": live_sd,
        "baseline_sd": baseline.sd if recorded else None,
        "pooled_sd": pooled_sd,
        "baseline_sd_from": SD_FROM_VALIDATION if recorded else SD_FROM_LIVE,
        "difference": difference,
        "difference_standard_error": se,
        "z": z,
        "critical_z": z_crit,
        "confidence": rule.confidence,
        # live minus baseline, ± critical_z standard errors: an alert needs its low end above 0
        "interval": [difference - z_crit * se, difference + z_crit * se] if finite else None,
        "min_difference": min_difference,
        "verdict": verdict,
        "alert": alert,
    }
    if task == "regression":
        result["rmse"] = _rmse(live, se_live, baseline.value, se_base)
    result["note"] = _note(result, rule)
    return _finite(result)


def _rmse(mse_live: float, se_live: float, mse_base: float, se_base: float) -> dict:
    """RMSE and its standard error by the delta method: se(sqrt(m)) = se(m) / (2 sqrt(m))."""

    def se_of(mse: float, se: float) -> float | None:
        return se / (2 * math.sqrt(mse)) if mse > 0 and math.isfinite(se) else None

    return {
        "live": math.sqrt(mse_live) if mse_live >= 0 else None,
        "live_standard_error": se_of(mse_live, se_live),
        "baseline": math.sqrt(mse_base),
        "baseline_standard_error": se_of(mse_base, se_base),
    }


def _note(result: dict, rule: Rule) -> str:
    """The verdict in words, with the numbers it rests on."""
    name, live, base = result["name"], result["live"], result["baseline"]
    if not math.isfinite(live):
        return f"live {name} is not finite ({result['live_rows']} labelled rows)"
    sides = (
        f"live {name} {live:.4g} ± {result['live_standard_error']:.2g} "
        f"({result['live_rows']} labelled rows) vs the validation baseline {base:.4g} ± "
        f"{result['baseline_standard_error']:.2g} ({result['baseline_rows']} rows)"
    )
    z, z_crit = result["z"], result["critical_z"]
    level = f"{rule.confidence:.0%} one-sided"
    relative = f" ({result['difference'] / base:+.0%})" if base > 0 else ""
    gap = f"difference {result['difference']:+.3g}{relative}"
    gap += f", z {z:.2f}" if z is not None else ", no spread on either side"
    verdict = result["verdict"]
    if verdict == "worse beyond noise":
        text = (
            f"{sides}: worse beyond both samples' noise ({gap} ≥ {z_crit:.2f}, {level}) "
            f"and by more than the {rule.tolerance:.0%} tolerance"
        )
    elif verdict == "worse beyond noise, within the tolerance":
        text = (
            f"{sides}: {gap}, worse beyond noise ({level}) but by no more than the "
            f"{rule.tolerance:.0%} tolerance"
        )
    elif verdict == "better beyond noise":
        text = f"{sides}: {gap}, better beyond noise ({level})"
    else:
        text = f"{sides}: {gap}, within both samples' noise (an alert needs z ≥ {z_crit:.2f})"
    if result["baseline_sd_from"] == SD_FROM_LIVE:
        text += (
            "; this version's profile does not record the spread of its validation rows' "
            "losses (versions trained before Sluice kept it), so the live rows' spread stands "
            "in for it, which holds when nothing changed"
        )
    return text


def _finite(value):
    """NaN and infinities as None: the answer is JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
