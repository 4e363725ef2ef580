"""The paired champion/challenger comparison against independent oracles: hand-computed
binomial tails, the normal mixture integrated numerically, and simulated streams."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from trainer.lifecycle import challenger_stats as cs


def test_mcnemar_matches_the_hand_computed_binomial_tail():
    # 10 discordant rows, 9 won by the challenger: P = 2 * (C(10,0) + C(10,1)) / 2^10.
    champion = np.array([False] * 9 + [True] + [True] * 5 + [False] * 3)
    challenger = np.array([True] * 9 + [False] + [True] * 5 + [False] * 3)
    result = cs.mcnemar(champion, challenger)
    assert result["discordant_rows"] == 10
    assert result["only_challenger_right"] == 9
    assert result["p_value"] == pytest.approx(22 / 1024)


@pytest.mark.parametrize("n", [1, 2, 7, 50, 301])
def test_mcnemar_is_scipys_binomtest_on_the_discordant_rows(n):
    for k in range(n + 1):
        champion = np.array([False] * k + [True] * (n - k))
        expected = stats.binomtest(k, n, 0.5).pvalue
        assert cs.mcnemar(champion, ~champion)["p_value"] == pytest.approx(expected, rel=1e-9)


def test_no_discordant_rows_is_no_evidence():
    same = np.array([True, False, True])
    assert cs.mcnemar(same, same)["p_value"] == 1.0


@pytest.mark.parametrize("t", [30, 500, 5000])
def test_the_boundary_is_where_the_normal_mixture_reaches_one_over_alpha(t):
    # Oracle: the mixture martingale integrated numerically over lambda ~ N(0, rho^2), for
    # standardised sums S_t of t observations; the boundary is the S_t where it equals 1/alpha.
    rho = cs.mixture_rho(0.05, 500)
    s_t = t * cs.cs_radius(t, 1.0, 0.05, 500)

    def density(lam):
        return math.exp(lam * s_t - lam * lam * t / 2) * stats.norm.pdf(lam, scale=rho)

    top = 40 * rho
    mixture, _ = integrate.quad(density, -top, top, points=[s_t / t], limit=200)
    assert mixture == pytest.approx(1 / 0.05, rel=1e-6)


def test_a_clearly_better_challenger_is_promoted_and_a_worse_one_kept():
    rng = np.random.default_rng(1)
    champion = (rng.random(400) > 0.70).astype(float)  # ~70% right
    challenger = (rng.random(400) > 0.88).astype(float)  # ~88% right
    better = cs.compare("accuracy", champion, challenger)
    assert better["decision"] == "promote", better["reason"]
    assert better["difference"] > 0.1
    assert 0 < better["interval"][0] < better["difference"] < better["interval"][1]
    assert better["mcnemar"]["p_value"] < 1e-4
    assert better["champion_score"] == pytest.approx(1 - champion.mean())
    worse = cs.compare("accuracy", challenger, champion)
    assert worse["decision"] == "keep", worse["reason"]
    assert worse["interval"][1] < 0


def test_regression_squared_and_absolute_error():
    rng = np.random.default_rng(2)
    y = rng.normal(size=600)
    champion = y + rng.normal(scale=1.0, size=600)
    challenger = y + rng.normal(scale=0.5, size=600)
    for metric in ("squared_error", "absolute_error"):
        a = cs.row_losses(metric, y, champion)
        b = cs.row_losses(metric, y, challenger)
        result = cs.compare(metric, a, b)
        assert result["decision"] == "promote", result["reason"]
        assert result["difference"] == pytest.approx(b.mean() - a.mean())
        assert result["interval"][1] < 0  # losses: lower is better
        assert "mcnemar" not in result
    assert cs.compare("squared_error", b, a)["decision"] == "keep"


def test_nothing_is_decided_before_the_minimum_labels():
    champion = np.ones(99)  # every row wrong
    challenger = np.zeros(99)  # every row right
    result = cs.compare("accuracy", champion, challenger)
    assert result["decision"] == "continue"
    assert "no decision before 100" in result["reason"]
    assert cs.compare("accuracy", [], [])["decision"] == "continue"


def test_equal_models_over_many_labels_are_inconclusive():
    champion, challenger = _equal_classifiers(np.random.default_rng(3), 60_000)
    result = cs.compare("accuracy", champion, challenger)
    assert result["decision"] == "inconclusive", result["reason"]
    assert -0.01 < result["interval"][0] and result["interval"][1] < 0.01


def test_log_loss_reads_classes_the_model_does_not_know_as_certain_misses():
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    losses = cs.row_losses("log_loss", np.array([0, -1]), proba)
    assert losses[0] == pytest.approx(-math.log(0.9))
    assert losses[1] == pytest.approx(-math.log(cs.EPS))
    assert list(cs.row_losses("accuracy", np.array([0, -1]), proba)) == [0.0, 1.0]


def _false_winner_rate(draw, metric, streams, labels, every) -> tuple[float, float]:
    """Share of streams between equal models in which some look (every `every` labels)
    declares a winner, by the confidence sequence and by a naive fixed-sample z test."""
    wrong = naive = 0
    for stream in range(streams):
        a, b = draw(np.random.default_rng(1000 + stream), labels)
        declared = naive_declared = False
        for t in range(every, labels + 1, every):
            if not declared:
                declared = cs.compare(metric, a[:t], b[:t])["decision"] in ("promote", "keep")
            d = b[:t] - a[:t]
            sd = d.std(ddof=1)
            naive_declared |= bool(sd > 0 and abs(d.mean()) / (sd / math.sqrt(t)) > 1.96)
        wrong += declared
        naive += naive_declared
    return wrong / streams, naive / streams


def _equal_classifiers(rng, n):
    champion = rng.random(n) < 0.25
    discordant = rng.random(n) < 0.2
    challenger = np.where(discordant, rng.random(n) < 0.5, champion)
    # On discordant rows exactly one is right, each with probability 1/2.
    champion = np.where(discordant, ~challenger, champion)
    return champion.astype(float), challenger.astype(float)


def _equal_regressors(rng, n):
    y = rng.normal(size=n)
    return (
        cs.row_losses("squared_error", y, y + rng.standard_t(5, size=n)),
        cs.row_losses("squared_error", y, y + rng.standard_t(5, size=n)),
    )


@pytest.mark.parametrize(
    "draw,metric", [(_equal_classifiers, "accuracy"), (_equal_regressors, "squared_error")]
)
def test_peeking_every_50_labels_rarely_declares_a_winner_between_equal_models(draw, metric):
    # 400 streams of 2,000 labels, looked at every 50 (40 looks each). Measured: accuracy
    # 0.75% (a naive z test at each look: 29.5%), squared error 1.5% (naive 28.5%). The bound
    # leaves room for 400 streams' sampling error (about 1 point) around the 5% promised.
    rate, naive = _false_winner_rate(draw, metric, streams=400, labels=2000, every=50)
    assert rate <= 0.06, rate
    assert naive > 0.15, naive  # the same streams do fool a test that ignores peeking
