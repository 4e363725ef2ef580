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
            out["baseline"] = {"score": self.baseline.other, **self.baseline.to_dict()}
        out.update(self.extra)
        return out


def schema_of(spec: dict) -> dict:
    """What prod clients depend on: target, task, classes, the columns they send (the
    upload's, whichever of them a model happened to drop) and how each used column's cells
    are read (kind, decimal mark, date formats)."""
    inputs = spec["inputs"]
    columns = spec.get("upload_columns") or [item["name"] for item in inputs]
    return {
        "target": spec["target"],
        "task": spec["task"],
        "classes": spec.get("classes"),
        "columns": sorted(columns),
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
    """A sentence naming how two schemas differ, or None when they match."""
    if new["target"] != old["target"]:
        return f"target changed from {old['target']!r} to {new['target']!r}"
    if new["task"] != old["task"]:
        return f"task changed from {old['task']} to {new['task']}"
    if new["classes"] != old["classes"]:
        return "the set of classes changed"
    if new["columns"] != old["columns"]:
        added = sorted(set(new["columns"]) - set(old["columns"]))
        removed = sorted(set(old["columns"]) - set(new["columns"]))
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


def _skill(baseline: Comparison, metric: str) -> str:
    """The comparison with the trivial baseline, in words."""
    return (
        f"{metric} {baseline.score:.6g} vs {baseline.other:.6g} for the trivial baseline on "
        f"{baseline.rows} validation rows (difference {baseline.difference:+.4g}, interval "
        f"[{baseline.interval[0]:+.4g}, {baseline.interval[1]:+.4g}])"
    )


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
    if not baseline.better:
        return Decision(
            False,
            f"{context}, but this version has no skill over the trivial baseline beyond the "
            f"noise: {_skill(baseline, metric)}; upload more rows or data with more signal, or "
            f"use promote=always{refused_note}",
            rule="skill",
            **evidence,
        )
    return Decision(
        True,
        f"{subject} beats the trivial baseline beyond the noise: {_skill(baseline, metric)}",
        rule=rule,
        **evidence,
    )


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
) -> Decision:
    """Promote when asked to, or when the challenger has skill over the trivial baseline and,
    with a champion of the same schema, enough comparison rows and is not worse than it
    beyond the noise. `follows_latest` (the default model name): a schema change starts a
    new dataset, judged like a first version, instead of being refused."""
    evidence = {
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
    if not baseline.better:
        return Decision(
            False,
            f"no skill over the trivial baseline beyond the noise: {_skill(baseline, metric)}",
            rule="skill",
            **evidence,
        )
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
