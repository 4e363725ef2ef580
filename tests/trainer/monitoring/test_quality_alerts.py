"""Live-quality alerts that account for both samples' noise (trainer/monitoring/quality.py):
the rule over many simulated splits, its numbers against formulas written out here, the
profile's record of the baseline's spread, and the whole flow on the real services (prod,
POST /feedback, GET /monitoring)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn import metrics as skm

from testkit.stack import post_csv
from tests.datasets import shop, to_csv
from trainer.monitoring import quality, report
from trainer.monitoring.profile import RARE_OR_UNSEEN, batch_counts, build_profile

RULE = quality.Rule(tolerance=0.1, confidence=0.99)
Z_99 = 2.3263478740408408  # scipy.stats.norm.ppf(0.99), written out
SIMULATIONS = 200


def calibrated_losses(rng: np.random.Generator, n: int, flipped: bool = False) -> np.ndarray:
    """Per-row log loss of a calibrated binary classifier, most rows confident: P(class 1)
    from a U-shaped Beta, the class drawn with that probability. Heavily right-skewed, like
    real per-row log losses. `flipped`: the label posted is the other class."""
    p = np.clip(rng.beta(0.3, 0.3, n), 1e-6, 1 - 1e-6)
    y = rng.random(n) < p
    if flipped:
        y = ~y
    return -np.log(np.where(y, p, 1 - p))


def squared_errors(rng: np.random.Generator, n: int, bias: float = 0.0) -> np.ndarray:
    """Per-row squared errors of a regression whose residuals' scale varies from row to row
    (a normal times a log-normal scale: heavy tails, every moment finite)."""
    return (rng.normal(0, 1, n) * np.exp(rng.normal(0, 0.5, n)) + bias) ** 2


def exact_baseline_alerts(live: np.ndarray, baseline: float) -> bool:
    """The rule the issue reports: the baseline taken as exact, only the live noise counted."""
    se = live.std(ddof=1) / math.sqrt(len(live))
    worse = live.mean() - baseline
    return worse > 0.1 * baseline and worse > Z_99 * se


def simulate(draw, n_valid: int, n_live: int, seed: int, record_sd=True, **live_kwargs):
    """Per simulated split: (the rule's answer, the exact-baseline rule's alert)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(SIMULATIONS):
        valid = draw(rng, n_valid)
        live = draw(rng, n_live, **live_kwargs)
        baseline = quality.Baseline(
            float(valid.mean()), float(valid.std(ddof=1)) if record_sd else None, n_valid
        )
        task = "regression" if draw is squared_errors else "classification"
        out.append(
            (quality.judge(task, live, baseline, RULE), exact_baseline_alerts(live, baseline.value))
        )
    return out


def rate(flags) -> float:
    flags = [bool(f) for f in flags]
    return sum(flags) / len(flags)


# -- the rule over many simulated splits -----------------------------------------------------


def test_unchanged_data_with_many_more_labels_than_validation_rows_rarely_alerts():
    # 600 validation rows, 3,000 labelled live rows, nothing changed: the baseline's own noise
    # dominates, which is where treating it as exact raised false alerts.
    results = simulate(calibrated_losses, 600, 3000, seed=1)
    both = rate(r["alert"] for r, _ in results)
    exact = rate(e for _, e in results)
    assert exact >= 0.1, exact  # the rule: about 1 model in 5-6
    assert both <= 0.03, both  # the stated level is 1%
    assert all(r["baseline_sd_from"] == quality.SD_FROM_VALIDATION for r, _ in results)


@pytest.mark.parametrize(("n_valid", "n_live"), [(1454, 2547), (600, 300), (300, 100)])
def test_unchanged_data_alerts_at_most_about_the_stated_level(n_valid, n_live):
    results = simulate(calibrated_losses, n_valid, n_live, seed=n_valid + n_live)
    assert rate(r["alert"] for r, _ in results) <= 0.03


def test_old_profiles_use_the_live_spread_for_the_baseline_and_still_rarely_alert():
    results = simulate(calibrated_losses, 600, 3000, seed=2, record_sd=False)
    assert rate(r["alert"] for r, _ in results) <= 0.03
    for result, _ in results[:5]:
        assert result["baseline_sd_from"] == quality.SD_FROM_LIVE
        assert "stands in" in result["note"]
        # The live rows' standard deviation over the baseline's row count.
        assert result["baseline_standard_error"] == pytest.approx(
            result["live_standard_error"] * math.sqrt(3000 / 600)
        )


def test_wrong_labels_alert_every_time():
    results = simulate(calibrated_losses, 600, 300, seed=3, flipped=True)
    assert all(r["alert"] for r, _ in results)
    assert all(r["verdict"] == "worse beyond noise" for r, _ in results)
    without_sd = simulate(calibrated_losses, 600, 300, seed=4, record_sd=False, flipped=True)
    assert all(r["alert"] for r, _ in without_sd)


def test_regression_squared_errors_unchanged_and_biased():
    unchanged = simulate(squared_errors, 800, 2000, seed=5)
    assert rate(r["alert"] for r, _ in unchanged) <= 0.03
    biased = simulate(squared_errors, 800, 300, seed=6, bias=2.0)  # MSE 1.65 -> 5.65
    assert all(r["alert"] for r, _ in biased)


def test_the_rmse_standard_error_is_the_spread_of_rmse_over_samples():
    # The delta method's se(sqrt(m)) = se(m) / (2 sqrt(m)), against the RMSE's actual spread
    # over 2,000 samples of 500 rows.
    rng = np.random.default_rng(7)
    samples = [squared_errors(rng, 500) for _ in range(2000)]
    spread = np.std([math.sqrt(s.mean()) for s in samples], ddof=1)
    baseline = quality.Baseline(2.0, 2.0, 100)
    reported = [quality.judge("regression", s, baseline, RULE)["rmse"] for s in samples[:200]]
    typical = np.median([r["live_standard_error"] for r in reported])
    assert typical == pytest.approx(spread, rel=0.15)
    assert reported[0]["baseline"] == pytest.approx(math.sqrt(2.0))


# -- the numbers, against formulas written out --------------------------------------------------


def test_the_answer_shows_both_sides_the_difference_its_interval_and_z():
    live = np.array([0.1, 0.4, 0.2, 2.5, 0.05, 0.3, 0.15, 0.9] * 20)  # 160 rows
    baseline = quality.Baseline(0.3, 0.5, 400)
    result = quality.judge("classification", live, baseline, RULE)
    sd_live = pd.Series(live).std()  # pandas: ddof=1
    se_live = sd_live / math.sqrt(160)
    # The baseline's per-row spread under "nothing changed": both samples' pooled.
    pooled = math.sqrt((159 * sd_live**2 + 399 * 0.5**2) / (160 + 400 - 2))
    se_base = pooled / math.sqrt(400)
    se = math.sqrt(se_live**2 + se_base**2)
    difference = live.mean() - 0.3
    assert result["live"] == pytest.approx(live.mean())
    assert result["live_standard_error"] == pytest.approx(se_live)
    assert result["baseline_standard_error"] == pytest.approx(se_base)
    assert result["pooled_sd"] == pytest.approx(pooled) and result["baseline_sd"] == 0.5
    assert (result["live_rows"], result["baseline_rows"]) == (160, 400)
    assert result["difference_standard_error"] == pytest.approx(se)
    assert result["z"] == pytest.approx(difference / se)
    assert result["critical_z"] == pytest.approx(Z_99)
    assert result["interval"] == pytest.approx([difference - Z_99 * se, difference + Z_99 * se])
    assert result["min_difference"] == pytest.approx(0.03)
    # 0.575 vs 0.3: z = 3.35, beyond noise and the tolerance.
    assert result["alert"] and result["verdict"] == "worse beyond noise"
    assert "0.575" in result["note"] and "0.3 " in result["note"] and "160" in result["note"]
    assert "400 rows" in result["note"]


def test_worse_beyond_noise_but_within_the_tolerance_does_not_alert():
    rng = np.random.default_rng(8)
    live = 1.05 + rng.normal(0, 0.1, 20_000)  # 5% worse, measured very precisely
    result = quality.judge("regression", live, quality.Baseline(1.0, 0.1, 20_000), RULE)
    assert result["z"] > 20 and not result["alert"]
    assert result["verdict"] == "worse beyond noise, within the tolerance"
    assert "10% tolerance" in result["note"]


def test_a_live_loss_within_both_noises_is_within_noise():
    # The numbers: live 0.0997 over 2,547 rows, baseline 0.060 over 1,454 rows with
    # the same per-row spread (a low-loss model's rare confident mistakes).
    # 51 confident mistakes (loss 4) among 2,547 rows, the rest 0.02: mean 0.0997, sd 0.55.
    live = np.where(np.arange(2547) < 51, 4.0, 0.02)
    assert live.mean() == pytest.approx(0.0997, abs=1e-4)
    result = quality.judge(
        "classification", live, quality.Baseline(0.060, float(live.std(ddof=1)), 1454), RULE
    )
    assert result["verdict"] == "within noise" and not result["alert"]
    assert result["interval"][0] < 0 < result["interval"][1]
    assert exact_baseline_alerts(live, 0.060)  # the old rule alerted here


def test_a_live_loss_that_is_not_finite_alerts_and_the_answer_stays_json():
    live = np.array([1.0, 2.0, np.inf] * 50)
    result = quality.judge("regression", live, quality.Baseline(1.5, 1.0, 300), RULE)
    assert result["alert"] and "not finite" in result["note"]
    assert result["live"] is None and result["interval"] is None
    json.dumps(result, allow_nan=False)  # raises on NaN or infinity


def test_the_report_page_states_the_verdict_escaped():
    performance = {
        "labelled_rows": 300,
        "rows_scored": 400,
        "metrics": {"log_loss": 0.9},
        "baseline": {"log_loss": 0.4},
        "status": "alert",
        "note": "live log loss 0.9 <b>worse</b>",
    }
    page = report.render_report({"model": "m", "version": "1", "performance": performance})
    assert "live log loss 0.9 &lt;b&gt;worse&lt;/b&gt;" in page
    assert "<b>worse" not in page


# -- the profile keeps the baseline's spread ------------------------------------------------


SPEC = {
    "inputs": [
        {"name": "amount", "kind": "numeric"},
        {"name": "city", "kind": "categorical", "categories": ["a", "b", "c"], "other": True},
    ],
    "task": "classification",
    "target": "bought",
    "classes": ["no", "yes"],
    "target_number_format": None,
}


def _profile(valid_losses=None) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(9)
    train = np.column_stack([rng.normal(0, 1, 500), rng.integers(0, 4, 500)]).astype("float32")
    proba = rng.dirichlet([1, 1], 120)
    predictions = np.array(["no", "yes"], dtype=object)[proba.argmax(axis=1)]
    metrics = {"accuracy": 0.8, "log_loss": 0.41}
    profile = build_profile(
        SPEC, train, predictions, proba, metrics, "log_loss", valid_losses=valid_losses
    )
    return profile, train


def test_the_profile_records_the_validation_losses_mean_spread_and_rows():
    losses = np.random.default_rng(10).exponential(0.41, 120)
    profile, _ = _profile(losses)
    assert profile["baseline_loss"] == {
        "metric": "log_loss",
        "mean": pytest.approx(float(np.mean(losses))),
        "sd": pytest.approx(float(pd.Series(losses).std())),
        "rows": 120,
    }
    baseline = quality.baseline_of(profile)
    assert baseline == quality.Baseline(0.41, pytest.approx(pd.Series(losses).std()), 120)


def test_a_profile_without_the_spread_falls_back_on_its_validation_row_count():
    profile, _ = _profile()
    assert profile["baseline_loss"] is None
    old = {k: v for k, v in profile.items() if k != "baseline_loss"}  # before the key existed
    for version in (profile, old):
        assert quality.baseline_of(version) == quality.Baseline(0.41, None, 120)


def test_both_names_of_the_rare_or_unseen_warning_are_counted():
    profile, train = _profile()
    matrix = train[:50].copy()
    matrix[:, 1] = [3] * 7 + [0] * 43  # 7 cells in the rare group's code: 4 rare, 3 unseen
    counts = {}
    for key in ("unseen_categories_treated_as_rare", "rare_or_unseen_categories_read_as_other"):
        warnings = {key: {"city": 3}}
        counts[key] = batch_counts(profile, matrix, warnings, np.zeros(50))["features"]["city"]
    old, new = counts.values()
    assert old == new
    city = next(p for p in profile["features"] if p["name"] == "city")
    assert city["bins"][-1] == RARE_OR_UNSEEN
    assert old["bins"][-1] == 3


# -- the real services ----------------------------------------------------------------------


def _prod(stack, frame: pd.DataFrame, model: str) -> dict:
    answer = post_csv(
        stack.analyze_url,
        to_csv(frame.drop(columns="bought")),
        phase="prod",
        model=model,
        proba="true",
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _labels(stack, model: str, batch: str, labels) -> None:
    frame = pd.DataFrame({"batch_id": batch, "row": range(len(labels)), "bought": labels})
    posted = post_csv(f"{stack.url('preprocess')}/feedback", to_csv(frame), model=model)
    assert posted.status_code == 200, posted.text


def _monitoring(stack, **params) -> dict:
    answer = requests.get(f"{stack.url('preprocess')}/monitoring", params=params, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_true_labels_of_unchanged_rows_do_not_alert_and_wrong_labels_do(stack, model_name):
    dev = post_csv(stack.analyze_url, to_csv(shop(3000, 21)), phase="dev", model=model_name)
    assert dev.status_code == 200, dev.text
    dev = dev.json()
    rows_validation = dev["training"]["rows_validation"]

    held_out = shop(2400, 22)  # the same distribution, rows the model never saw
    truth, proba, classes = [], [], None
    for start in range(0, 2400, 800):
        part = held_out.iloc[start : start + 800]
        answer = _prod(stack, part, model_name)
        _labels(stack, model_name, answer["batch_id"], part["bought"].tolist())
        truth += part["bought"].tolist()
        proba += answer["probabilities"]
        classes = answer["classes"]

    summary = _monitoring(stack, model=model_name)
    perf = summary["performance"]
    assert perf["labelled_rows"] == 2400
    loss = perf["loss"]
    assert perf["status"] == "ok", perf["note"]
    assert not any("log loss" in alert for alert in summary["alerts"]), summary["alerts"]
    assert loss["verdict"] in ("within noise", "better beyond noise")
    # The numbers, recomputed here from the prod answers' probabilities.
    proba = np.asarray(proba)
    picked = proba[np.arange(2400), [classes.index(t) for t in truth]]
    per_row = -np.log(np.clip(picked, 1e-15, 1))
    assert loss["live"] == pytest.approx(skm.log_loss(truth, proba, labels=classes), rel=1e-5)
    assert loss["live_standard_error"] == pytest.approx(per_row.std(ddof=1) / math.sqrt(2400))
    assert loss["baseline"] == pytest.approx(dev["metrics"]["log_loss"])
    assert loss["baseline_rows"] == rows_validation
    # The trainer records the validation rows' losses in the profile (old profiles without
    # them fall back to the live rows' spread: this file's unit tests).
    assert loss["baseline_sd_from"] == quality.SD_FROM_VALIDATION
    sd = loss["baseline_sd"]
    assert 0 < sd < 5 * per_row.std()
    pooled = math.sqrt(
        (2399 * per_row.var(ddof=1) + (rows_validation - 1) * sd**2) / (2400 + rows_validation - 2)
    )
    assert loss["baseline_standard_error"] == pytest.approx(pooled / math.sqrt(rows_validation))
    se = math.sqrt(loss["live_standard_error"] ** 2 + loss["baseline_standard_error"] ** 2)
    assert loss["z"] == pytest.approx((loss["live"] - loss["baseline"]) / se)
    assert loss["z"] < Z_99

    wrong = shop(400, 23)
    answer = _prod(stack, wrong, model_name)
    flipped = wrong["bought"].map({"yes": "no", "no": "yes"}).tolist()
    _labels(stack, model_name, answer["batch_id"], flipped)
    alone = _monitoring(stack, model=model_name, batch_id=answer["batch_id"])["performance"]
    assert alone["status"] == "alert" and alone["loss"]["verdict"] == "worse beyond noise"
    assert alone["loss"]["interval"][0] > 0
    # Over the whole window too (2,400 right labels and 400 wrong ones).
    summary = _monitoring(stack, model=model_name)
    assert summary["status"] == "alert"
    assert summary["alerts"][0] == summary["performance"]["note"]
    assert "worse beyond both samples' noise" in summary["alerts"][0]
    page = requests.get(
        f"{stack.url('preprocess')}/monitoring/report", params={"model": model_name}, timeout=60
    )
    assert page.status_code == 200 and "worse beyond both samples&#x27;" in page.text
