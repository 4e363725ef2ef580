"""Promotion gate: when a newly registered version becomes the champion (pure).

A decision carries its evidence. The challenger and the champion are compared on the same
rows, which neither was trained on (the split is decided by row content, so a challenger's
validation rows were validation rows for a champion trained on the same kind of upload).
The comparison is paired: each row's loss under both models, the difference of the scores and
a bootstrap interval for it. Too few rows, no skill over the trivial baseline, or a schema
change mean no automatic promotion, and the answer says which.

A first version (and, under the default model name, an upload of another dataset) has nothing
to be compared with but the trivial baseline: it becomes the champion when it beats that
beyond the noise, on at least `first_min_rows` validation rows.

Skill over the trivial baseline is shown by the score (log loss, RMSE) being better beyond the
noise or, for a classifier whose log loss is not decided either way, by its probabilities
ranking each class's rows above the others' better than chance (ROC AUC, a label-shuffling
test) while its log loss is not worse beyond the noise. Boosted trees on a few hundred rows
are often right but overconfident: a handful of confident mistakes (row losses of 4-5) widen
the log loss interval past zero although the model clearly separates the classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MODES = ("auto", "always", "never")
# Above this many rows the interval comes from the normal approximation: the bootstrap would
# cost seconds and says the same thing there.
BOOTSTRAP_MAX_ROWS = 20_000
_Z = {0.9: 1.6449, 0.95: 1.96, 0.99: 2.5758}


@dataclass(frozen=True)
class GateConfig:
    """How much evidence automatic promotion needs."""

    min_rows: int = 100
    confidence: float = 0.95
    resamples: int = 1000
    seed: int = 0
    # A first version is judged on its own validation rows against the trivial baseline.
    # Below 10 rows the percentile bootstrap finds "skill" in noise far more often than its
    # confidence says (about 1 in 10 at 5 rows against 1 in 40 nominal; with 3 rows a
    # handful of distinct resamples); from 10 rows on it is within a factor of two, and 100
    # rows (min_rows) would refuse a champion to every file under ~500 rows.
    first_min_rows: int = 10
    # The model name whose dev uploads follow the latest dataset (DEFAULT_MODEL_NAME): a
    # schema change there starts a new dataset instead of being refused.
    default_model: str | None = "default"


@dataclass(frozen=True)
class Comparison:
    """Two models' scores on the same rows, lower is better, and how sure the difference is."""

    metric: str
    rows: int
    score: float  # the challenger's
    other: float  # the champion's or the baseline's
    difference: float  # score - other: negative means the challenger is better
    interval: tuple[float, float]
    method: str

    @property
    def worse(self) -> bool:
        """The challenger is worse beyond the noise."""
        return self.interval[0] > 0

    @property
    def better(self) -> bool:
        """The challenger is better beyond the noise."""
        return self.interval[1] < 0

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "rows": self.rows,
            "difference": self.difference,
            "interval": list(self.interval),
            "method": self.method,
        }


@dataclass(frozen=True)
class Ranking:
    """How well a classifier's probabilities rank each class's rows above the other rows (ROC
    AUC; with more classes, one class against the rest, weighted by each class's rows), against
    the 0.5 of the trivial baseline, which gives every row the same probabilities. The p-value
    is a permutation test: the share of label shufflings that rank as well (exact under "no
    skill" at any number of rows, where a bootstrap interval of the AUC is too narrow)."""

    rows: int
    auc: float
    p_value: float
    better: bool  # better than chance beyond the noise (p at most half of 1 - confidence)
    method: str

    def to_dict(self) -> dict:
        return {
            "score": self.auc,
            "baseline": 0.5,
            "rows": self.rows,
            "p_value": self.p_value,
            "method": self.method,
        }


# Permutations x rows x classes above which the ranking test runs on a seeded sample of the
# rows: it stays well under a second, and a sample of thousands of rows still shows skill.
RANKING_MAX_WORK = 10_000_000


def _midranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    _, start, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(start + (counts + 1) / 2.0, counts)
    return ranks


def ranking(proba: np.ndarray, y: np.ndarray, config: GateConfig) -> Ranking | None:
    """The ranking test of class probabilities `proba` (rows x classes) for class codes `y`;
    None when the rows hold fewer than two classes."""
    y = np.asarray(y).astype("int64")
    n, k = proba.shape
    classes = [c for c in ([1] if k == 2 else range(k)) if 0 < np.count_nonzero(y == c) < n]
    if n < 2 or not classes:
        return None
    rng = np.random.default_rng(config.seed)
    method = f"label permutation test, {config.resamples} shufflings"
    limit = max(200, RANKING_MAX_WORK // (config.resamples * len(classes)))
    if n > limit:
        keep = np.sort(rng.choice(n, limit, replace=False))
        proba, y, n = proba[keep], y[keep], limit
        method += f" of a {limit}-row sample"
        classes = [c for c in classes if 0 < np.count_nonzero(y == c) < n]
        if not classes:
            return None
    ranks = {c: _midranks(proba[:, c]) for c in classes}
    sizes = {c: np.count_nonzero(y == c) for c in classes}

    def statistic(labels: np.ndarray) -> np.ndarray:  # labels: shufflings x rows
        total = np.zeros(len(labels))
        for c in classes:
            n1 = sizes[c]
            auc = ((labels == c) @ ranks[c] - n1 * (n1 + 1) / 2) / (n1 * (n - n1))
            total += n1 * auc
        return total / sum(sizes.values())

    observed = float(statistic(y[None, :])[0])
    as_good = 0
    chunk = max(1, 2_000_000 // n)
    for start in range(0, config.resamples, chunk):
        size = min(chunk, config.resamples - start)
        shuffled = rng.permuted(np.tile(y, (size, 1)), axis=1)
        as_good += int(np.count_nonzero(statistic(shuffled) >= observed - 1e-12))
    p_value = (as_good + 1) / (config.resamples + 1)
    better = p_value <= (1 - config.confidence) / 2
    return Ranking(n, observed, p_value, better, method)


def skill_metric(baseline: Comparison | None, ranked: Ranking | None) -> str | None:
    """The metric that shows skill over the trivial baseline beyond the noise, or None: the
    score being better, or the ranking being better while the score is not worse."""
    if baseline is None:
        return None
    if baseline.better:
        return baseline.metric
    if ranked is not None and ranked.better and not baseline.worse:
        return "roc_auc"
    return None


def needs_ranking(task: str, baseline: Comparison) -> bool:
    """Whether a classifier's ranking test can change the skill verdict: its log loss is
    neither better nor worse than the baseline's beyond the noise."""
    return task == "classification" and not baseline.better and not baseline.worse


def _score(metric: str, losses: np.ndarray) -> np.ndarray:
    """The metric from per-row losses (along the last axis): mean log loss, or root mean
    squared error."""
    mean = losses.mean(axis=-1)
    return np.sqrt(mean) if metric == "rmse" else mean


def compare(metric: str, ours: np.ndarray, theirs: np.ndarray, config: GateConfig) -> Comparison:
    """Paired comparison of per-row losses on the same rows."""
    n = len(ours)
    score, other = float(_score(metric, ours)), float(_score(metric, theirs))
    difference = score - other
    if n < 2:
        return Comparison(metric, n, score, other, difference, (-np.inf, np.inf), "none")
    alpha = 1 - config.confidence
    if n <= BOOTSTRAP_MAX_ROWS:
        rng = np.random.default_rng(config.seed)
        diffs = []
        chunk = max(1, 2_000_000 // n)  # bounded memory: chunk x n indices at a time
        for start in range(0, config.resamples, chunk):
            size = min(chunk, config.resamples - start)
            index = rng.integers(0, n, size=(size, n))
            diffs.append(_score(metric, ours[index]) - _score(metric, theirs[index]))
        diffs = np.concatenate(diffs)
        low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
        method = f"paired bootstrap, {config.resamples} resamples"
    else:
        z = _Z.get(config.confidence, 1.96)
        if metric == "rmse":  # delta method for the difference of square roots
            per_row = ours / (2 * max(score, 1e-12)) - theirs / (2 * max(other, 1e-12))
        else:
            per_row = ours - theirs
        half = z * float(np.std(per_row, ddof=1)) / np.sqrt(n)
        low, high = difference - half, difference + half
        method = "paired normal approximation"
    return Comparison(metric, n, score, other, difference, (float(low), float(high)), method)


@dataclass(frozen=True)
class Decision:
    """The promotion decision and the numbers behind it."""

    promoted: bool
    reason: str
    metric: str
    challenger_score: float | None = None
    champion_score: float | None = None
    champion: Comparison | None = None
    baseline: Comparison | None = None
    min_rows: int | None = None
    rule: str | None = None
    ranking: Ranking | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON form for answers and tags."""
        out = {
            "promoted": self.promoted,
            "reason": self.reason,
            "rule": self.rule,
            "metric": self.metric,
            "challenger_score": self.challenger_score,
            "champion_score": self.champion_score,
            "min_rows": self.min_rows,
        }
        if self.champion is not None:
            out["comparison"] = self.champion.to_dict()
        if self.baseline is not None:
            out["baseline"] = {
                "score": self.baseline.other,
                **self.baseline.to_dict(),
                "skill_metric": skill_metric(self.baseline, self.ranking),
            }
            if self.ranking is not None:
                out["baseline"]["roc_auc"] = self.ranking.to_dict()
        out.update(self.extra)
        return out


def schema_of(spec: dict) -> dict:
    """What prod clients depend on: target, task, classes, the columns the version requires
    (its inputs), the columns its clients send (its upload's, whichever of them it happened
    to drop) and how each required column's cells are read (kind, decimal mark, date
    formats)."""
    inputs = spec["inputs"]
    required = [item["name"] for item in inputs]
    return {
        "target": spec["target"],
        "task": spec["task"],
        "classes": spec.get("classes"),
        "required": sorted(required),
        "columns": sorted(spec.get("upload_columns") or required),
        "reading": {item["name"]: _reading(item) for item in inputs},
    }


def _reading(item: dict) -> str:
    """How a column's cells are read, in words; two models that differ here read the same
    cell differently."""
    if item["kind"] == "numeric":
        decimal = (item.get("number_format") or {}).get("decimal", ".")
        return f"numbers with decimal mark {decimal!r}"
    if item["kind"] == "datetime":
        return "dates as " + ", ".join(sorted(item["date_formats"]))
    return item["kind"]


def schema_difference(new: dict, old: dict) -> str | None:
    """A sentence naming how two schemas differ, or None when they match.

    Input columns differ when the new version requires a column the old one's clients do
    not send (not among the old upload's columns: they would get missing_columns), or when
    the new upload lacks a column the old version requires (the two read other data, and
    the old one cannot be scored on the new rows). Columns that neither requires (a row
    number, an id-like email dropped from an upload, absent from a retrain table) are no
    difference: prod ignores extra columns."""
    if new["target"] != old["target"]:
        return f"target changed from {old['target']!r} to {new['target']!r}"
    if new["task"] != old["task"]:
        return f"task changed from {old['task']} to {new['task']}"
    if new["classes"] != old["classes"]:
        return "the set of classes changed"
    added = sorted(set(new["required"]) - set(old["columns"]))
    removed = sorted(set(old["required"]) - set(new["columns"]))
    if added or removed:
        return f"input columns changed (added: {added or 'none'}, removed: {removed or 'none'})"
    for name, reading in sorted(new["reading"].items()):
        before = old["reading"].get(name)
        if before is not None and before != reading:
            return f"column {name!r} is read differently ({reading}; the champion: {before})"
    return None


def split_mismatch(new_split: dict | None, old_split: dict | None) -> str | None:
    """Why the champion's training rows cannot be told apart from the challenger's validation
    rows, or None when they can (same split rule over the same columns)."""
    if not old_split or old_split.get("method") != (new_split or {}).get("method"):
        return "it was trained before rows were split by content, so its training rows are unknown"
    if old_split.get("columns") != new_split.get("columns"):
        return (
            "the two uploads' rows are keyed by other columns (a column empty or dropped in one "
            "of them), so the same rows may have landed on other sides of the split"
        )
    return None


def _skill(baseline: Comparison, metric: str, ranked: Ranking | None = None) -> str:
    """The comparison with the trivial baseline, in words."""
    words = (
        f"{metric} {baseline.score:.6g} vs {baseline.other:.6g} for the trivial baseline on "
        f"{baseline.rows} validation rows (difference {baseline.difference:+.4g}, interval "
        f"[{baseline.interval[0]:+.4g}, {baseline.interval[1]:+.4g}])"
    )
    if ranked is not None:
        words += f"; roc_auc {ranked.auc:.4g} vs 0.5 (permutation p = {ranked.p_value:.3g})"
    return words


def _has_skill(baseline: Comparison, metric: str, ranked: Ranking | None) -> str | None:
    """Why a version has skill over the trivial baseline, in words, or None."""
    shown = skill_metric(baseline, ranked)
    if shown is None:
        return None
    if shown == metric:
        return f"beats the trivial baseline beyond the noise: {_skill(baseline, metric, ranked)}"
    return (
        f"ranks the classes better than the trivial baseline beyond the noise, and its {metric} "
        f"is not worse than the baseline's beyond the noise: {_skill(baseline, metric, ranked)}"
    )


def _no_skill(baseline: Comparison, metric: str, ranked: Ranking | None) -> str:
    """Why a version has no skill over the trivial baseline, in words."""
    if ranked is not None and ranked.better and baseline.worse:
        return (
            f"no skill over the trivial baseline: it ranks the classes better, but its {metric} "
            f"is worse beyond the noise: {_skill(baseline, metric, ranked)}"
        )
    numbers = _skill(baseline, metric, ranked)
    return f"no skill over the trivial baseline beyond the noise: {numbers}"


def _on_its_own(
    context: str,
    subject: str,
    rule: str,
    metric: str,
    baseline: Comparison | None,
    config: GateConfig,
    evidence: dict,
    refused_note: str = "",
) -> Decision:
    """A version with no champion to compare with (a first version, or the default model's
    new dataset): promoted when it beats the trivial baseline beyond the noise on enough
    validation rows. `context` opens a refusal's reason, `subject` a promotion's."""
    floor = min(config.first_min_rows, config.min_rows)
    evidence = {**evidence, "min_rows": floor}
    if baseline is None or baseline.rows < floor:
        rows = 0 if baseline is None else baseline.rows
        return Decision(
            False,
            f"{context}, but this version has only {rows} validation rows: at least {floor} "
            f"are needed to tell skill from luck; upload more rows or use promote=always"
            f"{refused_note}",
            rule="min_rows",
            **evidence,
        )
    ranked = evidence["ranking"]
    skill = _has_skill(baseline, metric, ranked)
    if skill is None:
        return Decision(
            False,
            f"{context}, but this version has {_no_skill(baseline, metric, ranked)}; upload "
            f"more rows or data with more signal, or use promote=always{refused_note}",
            rule="skill",
            **evidence,
        )
    return Decision(True, f"{subject} {skill}", rule=rule, **evidence)


def decide(
    mode: str,
    champion_version: str | None,
    metric: str,
    challenger_score: float | None,
    *,
    config: GateConfig,
    baseline: Comparison | None = None,
    schema_change: str | None = None,
    unfair: str | None = None,
    champion: Comparison | None = None,
    untrusted: str | None = None,
    follows_latest: bool = False,
    ranked: Ranking | None = None,
) -> Decision:
    """Promote when asked to, or when the challenger has skill over the trivial baseline and,
    with a champion of the same schema, enough comparison rows and is not worse than it
    beyond the noise. `follows_latest` (the default model name): a schema change starts a
    new dataset, judged like a first version, instead of being refused. `ranked`: a
    classifier's ranking test, which shows skill when the score decides neither way."""
    evidence = {
        "ranking": ranked,
        "metric": metric,
        "challenger_score": challenger_score,
        "baseline": baseline,
        "champion": champion,
        "champion_score": champion.other if champion is not None else None,
        "min_rows": config.min_rows,
    }
    if mode == "never":
        return Decision(False, "promote=never: registered without promotion", **evidence)
    if mode == "always":
        return Decision(True, "promote=always: promoted without the gate", **evidence)
    if champion_version is None:
        return _on_its_own(
            "no champion yet",
            "no champion yet, and this first version",
            "first_version",
            metric,
            baseline,
            config,
            evidence,
        )
    against = f"champion v{champion_version}"
    if untrusted is not None:
        return Decision(
            False,
            f"the champion alias points at a version Sluice did not sign, {untrusted}: prod "
            "serves the last trusted champion meanwhile; use promote=always to make this "
            "version the champion",
            rule="untrusted",
            **evidence,
        )
    if schema_change is not None and follows_latest:
        return _on_its_own(
            f"your latest dataset differs from {against}'s ({schema_change})",
            f"the default model now follows your latest dataset (schema changed: "
            f"{schema_change}); name a model with model= to keep its columns stable for prod "
            "clients. This version",
            "new_dataset",
            metric,
            baseline,
            config,
            evidence,
            refused_note=f"; {against} (the earlier dataset) stays the champion",
        )
    if schema_change is not None:
        return Decision(
            False,
            f"schema differs from {against} ({schema_change}): prod clients could break, so "
            "it is not promoted automatically; use promote=always to promote it",
            rule="schema",
            **evidence,
        )
    if baseline is None or baseline.rows < config.min_rows:
        rows = 0 if baseline is None else baseline.rows
        return Decision(
            False,
            f"only {rows} validation rows (at least {config.min_rows} are needed to judge a "
            "model); upload more rows or use promote=always",
            rule="min_rows",
            **evidence,
        )
    if skill_metric(baseline, ranked) is None:
        return Decision(False, _no_skill(baseline, metric, ranked), rule="skill", **evidence)
    if unfair is not None:
        return Decision(
            False,
            f"cannot compare fairly with {against}: {unfair}; use promote=always to promote",
            rule="fairness",
            **evidence,
        )
    if champion is None or champion.rows < config.min_rows:
        rows = 0 if champion is None else champion.rows
        return Decision(
            False,
            f"only {rows} rows neither model was trained on (at least {config.min_rows} are "
            "needed); upload more rows or use promote=always",
            rule="min_rows",
            **evidence,
        )
    numbers = (
        f"{metric} {champion.score:.6g} vs {champion.other:.6g} on {champion.rows} rows "
        f"neither was trained on (difference {champion.difference:+.4g}, "
        f"{config.confidence:.0%} interval [{champion.interval[0]:+.4g}, "
        f"{champion.interval[1]:+.4g}])"
    )
    if champion.worse:
        return Decision(
            False, f"worse than {against} beyond the noise: {numbers}", rule="worse", **evidence
        )
    return Decision(
        True, f"not worse than {against} beyond the noise: {numbers}", rule="not_worse", **evidence
    )
