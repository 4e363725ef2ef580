"""The answers of the dev and prod phases (JSON-ready dicts, whether a request or a job gets
them)."""

from __future__ import annotations

from trainer.model import row_flags
from trainer.pipeline.stages import TrainedModel
from trainer.sources.by_reference import listed_ignored


def dev_answer(
    trained: TrainedModel,
    model_name: str,
    run_id: str,
    version: str,
    current: str | None,
    decision,
    cleaning: dict,
    timings: dict,
) -> dict:
    """What a dev run answers: the version, its metrics, the promotion decision, the features
    used and dropped, the split, the cleaning and the monitoring reference."""
    return {
        "phase": "dev",
        "model": model_name,
        "version": version,
        "run_id": run_id,
        "target": trained.spec["target"],
        "task": {"type": trained.task, "reason": trained.task_reason},
        "metrics": trained.metrics,
        "promoted": decision.promoted,
        "reason": decision.reason,
        "promotion": {**decision.to_dict(), "champion_version": current},
        "champion_version": version if decision.promoted else current,
        "features": {
            "used": [feature_summary(item) for item in trained.spec["inputs"]],
            "dropped": trained.spec["dropped"],
            "n_matrix_columns": len(trained.spec["feature_names"]),
        },
        "training": {
            "rows_train": trained.n_train,
            "rows_validation": trained.n_valid,
            "split": trained.spec["split"],
            "rounds": trained.best_rounds,
            "refit": trained.refit,  # rounds are the refit's (small data) or early stopping's
            "booster_seconds": round(trained.train_seconds, 4),
            "stage_seconds": timings,
        },
        "cleaning": cleaning,
        "monitoring": profile_summary(trained.profile),
    }


def profile_summary(profile: dict | None) -> dict | None:
    """What the version's monitoring reference covers."""
    if profile is None:
        return None
    return {
        "columns": len(profile["features"]),
        "not_monitored": profile["not_monitored"]["count"],
        "reference_rows": profile["rows"],
        "prediction_reference_rows": profile["validation_rows"],
    }


def feature_summary(item: dict) -> dict:
    """What the answer says about one input: its kind and how its cells are read."""
    summary = {"name": item["name"], "kind": item["kind"]}
    if item["kind"] == "numeric" and item.get("number_format"):
        summary["number_format"] = item["number_format"]
    elif item["kind"] == "datetime":
        summary["date_formats"] = item["date_formats"]
    elif item["kind"] == "categorical":
        summary["levels"] = len(item["categories"])
        if item.get("other"):
            summary["rare_levels_grouped"] = item["rare_levels"]
    if item.get("ambiguous_format"):
        summary["ambiguous_format"] = True
    if item.get("note"):
        summary["note"] = item["note"]
    return summary


def prod_answer(
    model_name, champion, n_rows: int, scored, parsing: dict, ignored, proba: bool, max_flagged_rows
):
    """What prod answers for an upload: predictions in input order, warnings, flagged rows
    (at most `max_flagged_rows` listed), and the class probabilities when asked for."""
    predictions = scored.predictions
    answer = {
        "phase": "prod",
        "model": model_name,
        "version": champion.version,
        "run_id": champion.run_id,
        "digest": champion.digest,  # of the version's training data
        "n_rows": n_rows,
        "predictions": predictions.tolist() if predictions.dtype == object else predictions,
        **listed_ignored(ignored),
        "warnings": scored.warnings,
        **row_flags.flagged_rows(scored.flags, max_flagged_rows),
        "cleaning": parsing,
    }
    if proba and scored.probabilities is not None:
        answer["classes"] = champion.model.classes
        answer["probabilities"] = scored.probabilities
    return answer
