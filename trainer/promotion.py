"""Promotion rule: when a newly registered version becomes the champion (pure)."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class Decision:
    """The promotion decision and the facts behind it."""

    promoted: bool
    reason: str
    metric: str | None = None
    challenger_score: float | None = None
    champion_score: float | None = None

    def to_dict(self) -> dict:
        """JSON form for answers and tags."""
        return {
            "promoted": self.promoted,
            "reason": self.reason,
            "metric": self.metric,
            "challenger_score": self.challenger_score,
            "champion_score": self.champion_score,
        }


def schema_of(spec: dict) -> dict:
    """What makes two models interchangeable: target, task, classes and input columns."""
    return {
        "target": spec["target"],
        "task": spec["task"],
        "classes": spec.get("classes"),
        "inputs": sorted(item["name"] for item in spec["inputs"]),
    }


def schema_difference(new: dict, old: dict) -> str | None:
    """A sentence naming how two schemas differ, or None when they match."""
    if new["target"] != old["target"]:
        return f"target changed from {old['target']!r} to {new['target']!r}"
    if new["task"] != old["task"]:
        return f"task changed from {old['task']} to {new['task']}"
    if new["classes"] != old["classes"]:
        return "the set of classes changed"
    if new["inputs"] != old["inputs"]:
        added = sorted(set(new["inputs"]) - set(old["inputs"]))
        removed = sorted(set(old["inputs"]) - set(new["inputs"]))
        return f"feature set changed (added: {added or 'none'}, removed: {removed or 'none'})"
    return None


def decide(
    mode: str,
    champion_version: str | None,
    schema_change: str | None,
    metric: str,
    challenger_score: float,
    champion_score: float | None,
    higher_is_better: bool,
) -> Decision:
    """Promote when asked to, when there is no comparable champion, or when not worse."""
    scores = {"metric": metric, "challenger_score": challenger_score}
    if mode == "never":
        return Decision(False, "promote=never: registered without promotion", **scores)
    if mode == "always":
        return Decision(True, "promote=always: promoted without comparison", **scores)
    if champion_version is None:
        return Decision(True, "no champion yet: first model promoted", **scores)
    if schema_change is not None:
        return Decision(
            True, f"schema differs from champion v{champion_version}: {schema_change}", **scores
        )
    if champion_score is None:
        return Decision(
            True, f"champion v{champion_version} could not be scored: promoted", **scores
        )
    scores["champion_score"] = champion_score
    better_or_equal = (
        challenger_score >= champion_score
        if higher_is_better
        else challenger_score <= champion_score
    )
    relation = "at least as good as" if better_or_equal else "worse than"
    reason = (
        f"{metric} {challenger_score:.6g} is {relation} champion v{champion_version}'s "
        f"{champion_score:.6g} on this run's validation rows"
    )
    return Decision(better_or_equal, reason, **scores)
