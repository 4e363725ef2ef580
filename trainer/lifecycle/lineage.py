"""What a version was made from, as tags on the registered version: the training data's
digest (the one logged with the run's dataset) and rows, and its validation metrics. Written
at registration, so the catalogue and the champion cache read them with the version itself
(no run lookup); versions registered before these tags fall back to their run, once.
"""

from __future__ import annotations

import json
import logging

from mlflow import MlflowClient

log = logging.getLogger(__name__)

DIGEST_TAG = "sluice.data.digest"
ROWS_TAG = "sluice.data.rows"
METRICS_TAG = "sluice.metrics"
# A registered model Sluice made (set at each registration; older ones are known by their
# versions' signature tags).
MODEL_TAG = "sluice.model"


def lineage_tags(digest: str, rows: int, metrics: dict[str, float]) -> dict[str, str]:
    """The version tags naming its training data and validation metrics."""
    return {
        DIGEST_TAG: digest,
        ROWS_TAG: str(int(rows)),
        METRICS_TAG: json.dumps({f"valid_{k}": v for k, v in metrics.items()}),
    }


def mark_model(name: str) -> None:
    """Tag a registered model as Sluice's (GET /models lists only those)."""
    MlflowClient().set_registered_model_tag(name, MODEL_TAG, "true")


def facts_of(version) -> dict | None:
    """Digest, rows and metrics from a registered version's tags; None when it has none."""
    tags = version.tags or {}
    if DIGEST_TAG not in tags:
        return None
    try:
        metrics = json.loads(tags.get(METRICS_TAG) or "{}")
        rows = int(tags[ROWS_TAG]) if tags.get(ROWS_TAG) else None
    except ValueError:
        metrics, rows = {}, None
    return {"digest": tags[DIGEST_TAG], "rows": rows, "metrics": metrics}


def facts_of_run(run) -> dict:
    """Digest, rows and validation metrics from the run that logged a version (for versions
    registered before the lineage tags)."""
    digest = None
    for item in run.inputs.dataset_inputs if run.inputs else []:
        if any(tag.key == "mlflow.data.context" and tag.value == "training" for tag in item.tags):
            digest = item.dataset.digest
    params = run.data.params
    try:
        rows = int(params["n_train"]) + int(params["n_valid"])
    except (KeyError, ValueError):
        rows = None
    metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("valid_")}
    return {"digest": digest, "rows": rows, "metrics": metrics}


def facts(version) -> dict:
    """A version's digest, rows and metrics: its tags, else its run (one MLflow call)."""
    found = facts_of(version)
    if found is not None:
        return found
    if not version.run_id:
        return {"digest": None, "rows": None, "metrics": {}}
    return facts_of_run(MlflowClient().get_run(version.run_id))
