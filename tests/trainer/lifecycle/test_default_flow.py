"""The design's own flow (`client/request.py FILE PHASE`, nothing more) and the promotion rules
around it: the default model follows the latest dataset, named models keep their schema guard,
no skill means no champion (and prod says why), classes of one row each are refused, and a
missing-columns answer names the newer version that reads the batch.

The default model name is shared by the session's stack: only the first test here trains it
(grep tests/ for `model=` left out of a successful dev run before adding another).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import requests
from sklearn.metrics import roc_auc_score

from testkit.stack import ROOT, post_csv, wait_job
from tests.datasets import iris, shop, to_csv
from trainer.lifecycle.promotion import GateConfig, Ranking, compare, decide, ranking
from trainer.lifecycle.registry import TAG_MAX_CHARS, _decision_text

# --- data ---------------------------------------------------------------------------------------


def fruit(rows: int, seed: int) -> pd.DataFrame:
    """Dataset A: classification with signal (the label follows width and colour)."""
    rng = np.random.default_rng(seed)
    width = rng.uniform(2, 10, rows).round(2)
    colour = rng.choice(["red", "green", "yellow"], rows)
    height = rng.uniform(2, 10, rows).round(2)
    label = np.where(width > 6, "melon", np.where(colour == "yellow", "lemon", "apple"))
    return pd.DataFrame({"width": width, "height": height, "colour": colour, "fruit": label})


def flats(rows: int, seed: int) -> pd.DataFrame:
    """Dataset B: another table (other columns, regression): the price follows area and
    district."""
    rng = np.random.default_rng(seed)
    area = rng.uniform(20, 150, rows).round(1)
    district = rng.choice(["north", "south", "centre"], rows)
    rooms = rng.integers(1, 6, rows)
    bonus = np.select([district == "centre", district == "north"], [800, 200], 0)
    price = (area * 30 + bonus + rng.normal(0, 50, rows)).round(0)
    return pd.DataFrame({"area": area, "district": district, "rooms": rooms, "price": price})


def truth_of_fruit(frame: pd.DataFrame) -> np.ndarray:
    return np.where(
        frame["width"] > 6, "melon", np.where(frame["colour"] == "yellow", "lemon", "apple")
    )


def client(path, phase: str, stack) -> tuple[int, dict]:
    """The design's client with nothing but FILE and PHASE; its exit code and JSON answer."""
    done = subprocess.run(
        [sys.executable, "client/request.py", str(path), phase],
        env={**os.environ, "SLUICE_URL": stack.analyze_url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def dev(stack, name: str, frame: pd.DataFrame, **params) -> dict:
    response = post_csv(stack.analyze_url, to_csv(frame), phase="dev", model=name, **params)
    assert response.status_code == 200, response.text
    return response.json()


def prod(stack, name: str, frame: pd.DataFrame):
    return post_csv(stack.analyze_url, to_csv(frame), phase="prod", model=name)


# --- 1. the default flow follows the latest dataset ---------------------------------------------


def test_the_plain_client_trains_and_serves_one_dataset_after_another(stack, tmp_path):
    a_train, a_query = tmp_path / "a_train.csv", tmp_path / "a_query.csv"
    b_train, b_query = tmp_path / "b_train.csv", tmp_path / "b_query.csv"
    fruit(400, 1).to_csv(a_train, index=False)
    query_a = fruit(40, 2).drop(columns="fruit")
    query_a.to_csv(a_query, index=False)
    flats(400, 3).to_csv(b_train, index=False)
    truth_b = flats(40, 4)
    truth_b.drop(columns="price").to_csv(b_query, index=False)

    code, trained_a = client(a_train, "dev", stack)
    assert code == 0, trained_a
    assert trained_a["model"] == "default"
    # The first test to train `default` gets a first version; were the name trained before
    # (another test, an earlier dataset), this one is a new dataset for it.
    assert trained_a["promoted"] is True, trained_a["reason"]
    assert trained_a["promotion"]["rule"] in ("first_version", "new_dataset")
    code, served_a = client(a_query, "prod", stack)
    assert code == 0, served_a
    assert served_a["version"] == trained_a["version"]
    accuracy = np.mean(np.array(served_a["predictions"]) == truth_of_fruit(query_a))
    assert accuracy > 0.8, served_a["predictions"]

    code, trained_b = client(b_train, "dev", stack)
    assert code == 0, trained_b
    assert trained_b["promoted"] is True, trained_b["reason"]
    assert trained_b["promotion"]["rule"] == "new_dataset"
    assert trained_b["champion_version"] == trained_b["version"] != trained_a["version"]
    reason = trained_b["reason"]
    assert "the default model now follows your latest dataset" in reason
    assert "model=" in reason and "schema changed" in reason
    assert trained_b["promotion"]["baseline"]["interval"][1] < 0  # it had skill

    code, served_b = client(b_query, "prod", stack)
    assert code == 0, served_b
    assert served_b["version"] == trained_b["version"] and served_b["n_rows"] == 40
    predictions = np.array(served_b["predictions"], dtype=float)
    rmse = np.sqrt(np.mean((predictions - truth_b["price"].to_numpy()) ** 2))
    assert rmse < 0.2 * truth_b["price"].std(), rmse  # prices, from B's model

    # A's file now lacks B's columns; A's version is older than the champion, so no newer
    # version is offered for it.
    code, refused = client(a_query, "prod", stack)
    assert code == 1 and refused["error"]["code"] == "missing_columns", refused
    assert "candidate_version" not in refused["error"]


# --- 2. a named model keeps its schema guard ----------------------------------------------------


def test_a_named_model_keeps_its_columns_and_prod_names_the_newer_version(stack, model_name):
    first = dev(stack, model_name, fruit(400, 5))
    assert first["promoted"] is True and first["promotion"]["rule"] == "first_version"
    second = dev(stack, model_name, flats(400, 6))
    assert second["promoted"] is False and second["promotion"]["rule"] == "schema"
    assert second["champion_version"] == first["version"]
    assert "follows your latest dataset" not in second["reason"]

    # B's columns are what v1 lacks; v2 reads exactly them.
    response = prod(stack, model_name, flats(10, 7).drop(columns="price"))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "missing_columns"
    assert set(error["missing_columns"]) == {"width", "height", "colour"}
    assert error["candidate_version"] == second["version"]
    message = error["message"]
    assert f"Version {second['version']} of {model_name!r} (not the champion)" in message
    assert "reads exactly these columns" in message
    assert "schema differs" in message  # why it was not promoted
    assert "promote=always" in message and f"POST /models/{model_name}/champion" in message
    assert message.count("promote=always") == 1  # the reason is quoted without its advice

    # Prod by reference says the same (the job fails with the 422 and its hint).
    root = stack.env["SLUICE_DATA_ROOT"]
    flats(10, 7).drop(columns="price").to_csv(os.path.join(root, f"{model_name}.csv"), index=False)
    accepted = requests.post(
        stack.analyze_url,
        params={
            "phase": "prod",
            "model": model_name,
            "data_uri": f"{model_name}.csv",
            "output_uri": f"{model_name}-out.csv",
        },
        timeout=60,
    )
    job = wait_job(stack.url("preprocess"), accepted)
    assert job["state"] == "failed" and job["status"] == 422, job
    assert job["error"]["code"] == "missing_columns"
    assert job["error"]["candidate_version"] == second["version"]
    assert "The files lack columns" in job["error"]["message"]

    # Extra columns are fine: v2 reads only columns the file has.
    wider = flats(10, 8).drop(columns="price").assign(note="x")
    error = prod(stack, model_name, wider).json()["error"]
    assert error["candidate_version"] == second["version"]
    assert "reads only columns this file has" in error["message"]

    # A file that no version reads gets no candidate.
    unrelated = pd.DataFrame({"colour": ["red"], "rooms": [3]})
    error = prod(stack, model_name, unrelated).json()["error"]
    assert error["code"] == "missing_columns" and "candidate_version" not in error
    assert "Version" not in error["message"]

    # The champion still serves its own clients.
    served = prod(stack, model_name, fruit(5, 9).drop(columns="fruit"))
    assert served.status_code == 200 and served.json()["version"] == first["version"]


# --- 3. no skill, no champion -------------------------------------------------------------------


def test_another_target_on_the_same_columns_is_a_decision_not_a_500(stack, model_name):
    # The champion reads every column of the new upload, but predicts another target: its
    # probabilities have no loss on these labels (2 classes vs 3, classes vs numbers).
    frame = fruit(600, 11)
    frame["size"] = np.where(frame["width"] > 4, "big", "small")
    frame["weight"] = (frame["width"] * frame["height"] * 10).round(1)
    first = dev(stack, model_name, frame, target="size")
    assert first["promoted"] is True
    for target in ("fruit", "weight"):
        answer = dev(stack, model_name, frame, target=target)
        assert answer["promoted"] is False, answer["reason"]
        assert answer["promotion"]["rule"] == "schema"
        assert f"target changed from 'size' to '{target}'" in answer["reason"]
        assert "comparison" not in answer["promotion"]  # nothing to compare on these labels
    served = prod(stack, model_name, frame.drop(columns=["size"]))
    assert served.status_code == 200 and served.json()["version"] == first["version"]


def noise(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(size=rows).round(3),
            "b": rng.normal(size=rows).round(3),
            "c": rng.choice(["x", "y", "z"], rows),
            "label": rng.choice(["yes", "no"], rows),
        }
    )


def test_a_first_version_without_skill_is_not_the_champion_and_prod_says_why(stack, model_name):
    frame = noise(300, 11)
    answer = dev(stack, model_name, frame)
    promotion = answer["promotion"]
    assert answer["promoted"] is False and promotion["rule"] == "skill", answer["reason"]
    assert answer["champion_version"] is None
    assert "no champion yet" in answer["reason"] and "trivial baseline" in answer["reason"]
    assert promotion["baseline"]["rows"] == answer["training"]["rows_validation"]
    assert promotion["baseline"]["interval"][1] >= 0  # not better than the prior

    response = prod(stack, model_name, frame.drop(columns="label").head(5))
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "no_champion"
    assert error["latest_version"] == answer["version"] and error["latest_rule"] == "skill"
    message = error["message"]
    assert f"latest version v{answer['version']} was not promoted" in message
    assert "no skill over the trivial baseline" in message
    assert "phase=dev" in message and message.count("promote=always") == 1

    forced = dev(stack, model_name, frame, promote="always")
    assert forced["promoted"] is True
    served = prod(stack, model_name, frame.drop(columns="label").head(5))
    assert served.status_code == 200 and served.json()["version"] == forced["version"]


def test_a_small_first_version_with_skill_is_the_champion(stack, model_name):
    # 150 rows (some 30 validation rows, below the challengers' 100): the first version is
    # judged against the trivial baseline only.
    answer = dev(stack, model_name, iris())
    assert answer["training"]["rows_validation"] < 100
    assert answer["promoted"] is True and answer["promotion"]["rule"] == "first_version"
    assert "beats the trivial baseline" in answer["reason"]


def test_an_overconfident_first_version_with_clear_signal_is_the_champion(stack, model_name):
    # Offline (train_model): accuracy 0.74 against 0.66 for the majority class, ROC AUC 0.82,
    # but log loss 0.637 against the prior's 0.644 with an interval of about [-0.20, +0.19].
    answer = dev(stack, model_name, shop(600, 7))
    promotion, metrics = answer["promotion"], answer["metrics"]
    baseline = promotion["baseline"]
    low, high = baseline["interval"]
    assert low < 0 < high, baseline  # the log loss alone decides neither way
    assert answer["promoted"] is True and promotion["rule"] == "first_version", answer["reason"]
    assert baseline["skill_metric"] == "roc_auc" and baseline["metric"] == "log_loss"
    auc = baseline["roc_auc"]
    assert auc["rows"] == baseline["rows"] == answer["training"]["rows_validation"]
    assert abs(auc["score"] - metrics["roc_auc"]) < 1e-9 and auc["baseline"] == 0.5
    assert auc["p_value"] <= 0.025
    assert "ranks the classes better than the trivial baseline" in answer["reason"]
    served = prod(stack, model_name, shop(5, 8).drop(columns="bought"))
    assert served.status_code == 200 and served.json()["version"] == answer["version"]


# --- 4. a target of one row per class -----------------------------------------------------------


def test_a_date_as_the_last_column_is_refused_as_a_target(stack, model_name):
    rng = np.random.default_rng(12)
    frame = pd.DataFrame(
        {
            "amount": rng.uniform(1, 100, 25).round(2),
            "shop": rng.choice(["a", "b"], 25),
            "day": pd.date_range("2024-03-01", periods=25).strftime("%Y-%m-%d"),
        }
    )
    response = post_csv(stack.analyze_url, to_csv(frame), phase="dev", model=model_name)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "no_repeated_classes"
    assert "25 rows and 25 distinct values" in error["message"]
    assert "target=" in error["message"]
    assert error["rows"] == error["distinct_values"] == 25
    # The same file with the target named trains.
    named = post_csv(stack.analyze_url, to_csv(frame), phase="dev", model=model_name, target="shop")
    assert named.status_code == 200, named.text


# --- the gate's rules, without the services -----------------------------------------------------

GATE = GateConfig(min_rows=100, resamples=500)


def _baseline(ours: float, theirs: float, rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    noise_ = rng.exponential(1.0, rows)
    return compare("log_loss", noise_ * ours, noise_ * theirs + rng.normal(0, 0.01, rows), GATE)


def test_first_versions_need_skill_on_enough_rows():
    tiny = decide("auto", None, "log_loss", 0.3, config=GATE, baseline=_baseline(0.3, 0.7, 8))
    assert not tiny.promoted and tiny.rule == "min_rows" and tiny.min_rows == 10
    assert "only 8 validation rows" in tiny.reason
    small = decide("auto", None, "log_loss", 0.3, config=GATE, baseline=_baseline(0.3, 0.7, 30))
    assert small.promoted and small.rule == "first_version"
    # The case: a first version far worse than the class prior.
    hopeless = _baseline(13.8, 0.7, 15)
    worse = decide("auto", None, "log_loss", 13.8, config=GATE, baseline=hopeless)
    assert not worse.promoted and worse.rule == "skill"
    assert f"log_loss {hopeless.score:.6g} vs {hopeless.other:.6g}" in worse.reason
    assert decide("always", None, "log_loss", 13.8, config=GATE, baseline=hopeless).promoted
    # An operator's lower PROMOTION_MIN_ROWS lowers the first-version floor with it.
    low = GateConfig(min_rows=5, resamples=500)
    lowered = decide("auto", None, "log_loss", 0.3, config=low, baseline=_baseline(0.3, 0.7, 8))
    assert lowered.promoted and lowered.min_rows == 5


def test_the_ranking_test_is_the_weighted_one_vs_rest_auc_and_holds_its_level():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 60)
    proba = rng.dirichlet(np.ones(3), 60)
    proba[np.arange(60), y] += rng.uniform(0, 0.5, 60)  # some signal
    proba /= proba.sum(axis=1, keepdims=True)
    ranked = ranking(proba, y, GATE)
    weighted = roc_auc_score(y, proba, multi_class="ovr", average="weighted")
    assert abs(ranked.auc - weighted) < 1e-12 and ranked.rows == 60
    binary = rng.uniform(size=(40, 1))
    labels = (binary[:, 0] + rng.normal(0, 0.3, 40) > 0.5).astype(int)
    two = ranking(np.hstack([1 - binary, binary]), labels, GATE)
    assert abs(two.auc - roc_auc_score(labels, binary[:, 0])) < 1e-12
    # Perfectly ranked, 5 of 10 rows: 1 shuffling in C(10, 5) = 252 ranks as well.
    perfect = ranking(
        np.column_stack([1 - np.arange(10) / 9, np.arange(10) / 9]), np.arange(10) >= 5, GATE
    )
    assert perfect.auc == 1.0 and perfect.better and perfect.p_value < 0.02
    assert ranking(proba, np.zeros(60, dtype=int), GATE) is None  # one class: nothing to rank
    # No skill (probabilities unrelated to the labels) on 12 rows: "better" in at most about
    # 2.5% of trials (the one-sided level of the 95% intervals).
    hits = 0
    for trial in range(300):
        r = np.random.default_rng(100 + trial)
        hits += ranking(r.dirichlet(np.ones(2), 12), r.integers(0, 2, 12), GATE).better
    assert hits / 300 <= 0.05


def _ranked(auc: float, p_value: float, rows: int = 115):
    return Ranking(rows, auc, p_value, p_value <= 0.025, "label permutation test")


def test_the_ranking_shows_skill_only_where_the_log_loss_is_not_worse():
    undecided = _baseline(0.64, 0.64, 115)
    assert not undecided.better and not undecided.worse
    ranked = _ranked(0.82, 0.001)
    first = decide("auto", None, "log_loss", 0.64, config=GATE, baseline=undecided, ranked=ranked)
    assert first.promoted and first.rule == "first_version"
    evidence = first.to_dict()["baseline"]
    assert evidence["skill_metric"] == "roc_auc" and evidence["roc_auc"]["score"] == 0.82
    assert "roc_auc 0.82 vs 0.5 (permutation p = 0.001)" in first.reason
    chance = decide(
        "auto", None, "log_loss", 0.64, config=GATE, baseline=undecided, ranked=_ranked(0.55, 0.2)
    )
    assert not chance.promoted and chance.rule == "skill"
    assert chance.to_dict()["baseline"]["skill_metric"] is None
    # The case: accuracy 0, log loss 13.8; even a lucky ranking does not save it.
    hopeless = _baseline(13.8, 0.7, 15)
    assert hopeless.worse
    worse = decide("auto", None, "log_loss", 13.8, config=GATE, baseline=hopeless, ranked=ranked)
    assert not worse.promoted and worse.rule == "skill"
    assert "ranks the classes better, but its log_loss is worse beyond the noise" in worse.reason
    # Challengers of a champion are held to the same skill rule.
    challenger = decide(
        "auto",
        "3",
        "log_loss",
        0.64,
        config=GATE,
        baseline=_baseline(0.64, 0.64, 200),
        ranked=_ranked(0.82, 0.001, 200),
        champion=_baseline(0.64, 0.64, 200),
    )
    assert challenger.promoted and challenger.rule == "not_worse"
    # The log loss showing skill needs no ranking, and says so.
    shown = decide("auto", None, "log_loss", 0.3, config=GATE, baseline=_baseline(0.3, 0.7, 30))
    assert shown.to_dict()["baseline"]["skill_metric"] == "log_loss"
    assert "roc_auc" not in shown.to_dict()["baseline"]


def test_a_schema_change_starts_a_new_dataset_only_under_the_default_name():
    skill, none = _baseline(0.3, 0.7, 200), _baseline(0.7, 0.7, 200)
    common = dict(config=GATE, schema_change="input columns changed")
    new = decide("auto", "3", "log_loss", 0.3, baseline=skill, follows_latest=True, **common)
    assert new.promoted and new.rule == "new_dataset"
    assert new.reason.startswith("the default model now follows your latest dataset")
    refused = decide("auto", "3", "log_loss", 0.7, baseline=none, follows_latest=True, **common)
    assert not refused.promoted and refused.rule == "skill"
    assert "champion v3 (the earlier dataset) stays the champion" in refused.reason
    named = decide("auto", "3", "log_loss", 0.3, baseline=skill, **common)
    assert not named.promoted and named.rule == "schema"


def test_a_long_decision_stays_readable_json_within_a_tag():
    decision = {"promoted": False, "rule": "schema", "reason": "x" * 9000, "extra": "y" * 9000}
    text = _decision_text(decision)
    assert len(text) <= TAG_MAX_CHARS
    read = json.loads(text)
    assert read["rule"] == "schema" and read["reason"].startswith("xxx")
