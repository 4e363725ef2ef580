"""The paths of the document: every public route of preprocess, and the trainer's /models
routes that preprocess relays (tests/preprocess/test_openapi.py checks both against the apps'
url maps)."""

from __future__ import annotations

from preprocess.openapi.examples import answer_example
from preprocess.openapi.model_paths import model_paths
from preprocess.openapi.operations import (
    BOOL_WORDS,
    JOB_ID,
    MODEL,
    RELAYED,
    UPLOAD,
    accepted,
    errors,
    ok,
    op,
    query,
    upload_body,
)
from preprocess.openapi.schemas import ref
from sluice_common.choices import PHASES, PROMOTE_MODES, TASKS
from sluice_common.web.params import BATCH_ID, VERSION

ANALYZE_PARAMS = [
    query(
        "phase",
        {"type": "string", "enum": list(PHASES)},
        "`dev` trains a version; `prod` predicts.",
        True,
        examples={phase: {"value": phase} for phase in PHASES},
    ),
    MODEL,
    query(
        "target",
        {"type": "string", "minLength": 1, "maxLength": 512},
        "dev: the column to predict (default: `target`, else the last column).",
    ),
    query(
        "task", {"type": "string", "enum": list(TASKS)}, "dev: the kind of model (default `auto`)."
    ),
    query(
        "promote",
        {"type": "string", "enum": list(PROMOTE_MODES)},
        "dev: the promotion rule (default `auto`).",
    ),
    query(
        "proba", {"type": "string", "enum": BOOL_WORDS}, "prod: add `classes` and `probabilities`."
    ),
    query(
        "data_uri",
        {"type": "string", "minLength": 1, "maxLength": 2048},
        "Read the data where it is (under SLUICE_DATA_ROOT or an allowed bucket) instead of "
        "an upload; send no body then.",
    ),
    query(
        "output_uri",
        {"type": "string", "minLength": 1, "maxLength": 2048},
        "prod by reference: the new .parquet or .csv file the predictions go to.",
    ),
    query(
        "key",
        {"type": "string", "minLength": 1, "maxLength": 2048},
        "prod by reference: an input column copied into the output.",
    ),
    query(
        "async", {"type": "string", "enum": BOOL_WORDS}, "`true` answers 202 with a job to follow."
    ),
]

MONITORING_PARAMS = [
    MODEL,
    query(
        "version",
        {"type": "string", "pattern": VERSION.pattern},
        "A version (default: the champion's).",
    ),
    query("batch_id", {"type": "string", "pattern": BATCH_ID.pattern}, "One prod batch only."),
    query("since", {"type": "string"}, "Window start (ISO 8601 time)."),
    query("until", {"type": "string"}, "Window end (ISO 8601 time)."),
]


def paths() -> dict:
    """The document's paths."""
    return {**_service_paths(), **_data_paths(), **model_paths()}


def _service_paths() -> dict:
    text = "text/plain"
    return {
        "/health": {
            "get": op(
                "Readiness: 200 while the trainer answers, else 503 with the reason",
                {
                    "200": ok("Health", "Ready.", "health"),
                    "503": ok("Health", "Degraded: the trainer does not answer."),
                },
                "service",
                security=[],
            )
        },
        "/livez": {
            "get": op(
                "Liveness: the process answers",
                {"200": ok("Livez", "Alive.")},
                "service",
                security=[],
            )
        },
        "/metrics": {
            "get": op(
                "Prometheus metrics of preprocess",
                {
                    "200": ok(None, "The metrics in the Prometheus text format.", media=text),
                    **errors(401),
                },
                "service",
            )
        },
        "/metrics/trainer": {
            "get": op(
                "The trainer's Prometheus metrics, relayed",
                {
                    "200": ok(None, "The metrics in the Prometheus text format.", media=text),
                    **errors(401, 503, 504),
                },
                "service",
            )
        },
        "/openapi.json": {
            "get": op(
                "This document",
                {
                    "200": {
                        "description": "OpenAPI 3.1.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
                "service",
                security=[],
            )
        },
    }


def _data_paths() -> dict:
    return {
        "/analyze": {
            "post": op(
                "Train (phase=dev) or predict (phase=prod) on a CSV",
                {
                    "200": {
                        "description": "The dev or the prod answer (by `phase`).",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [ref("DevAnswer"), ref("ProdAnswer")],
                                    "discriminator": {
                                        "propertyName": "phase",
                                        "mapping": {
                                            "dev": "#/components/schemas/DevAnswer",
                                            "prod": "#/components/schemas/ProdAnswer",
                                        },
                                    },
                                },
                                "examples": {
                                    "dev": {"value": answer_example("dev")},
                                    "prod": {"value": answer_example("prod")},
                                },
                            }
                        },
                    },
                    "202": accepted("Queued as a job (async=true, or a large upload)."),
                    **errors(*UPLOAD, 403, 404, 409, 410, 415, 422),
                },
                "data",
                parameters=ANALYZE_PARAMS,
                requestBody=upload_body(
                    "The CSV (dev: with the target column). None with data_uri.",
                    "churn_query.csv",
                    6,
                    False,
                ),
            )
        },
        "/feedback": {
            "post": op(
                "True labels for rows of earlier prod batches (batch_id, row, the target)",
                {
                    "200": ok("Feedback", "Labels stored.", "feedback"),
                    **errors(*UPLOAD, 404, 409, 422),
                },
                "monitoring",
                parameters=[MODEL],
                requestBody=upload_body(
                    "A CSV with the columns batch_id, row and the model's target.",
                    "labels.csv",
                    3,
                    True,
                ),
            )
        },
        "/monitoring": {
            "get": op(
                "Drift, live quality and status of a model version over a window",
                {"200": ok("Monitoring", "The summary."), **errors(*RELAYED, 404)},
                "monitoring",
                parameters=MONITORING_PARAMS,
            )
        },
        "/monitoring/report": {
            "get": op(
                "The monitoring summary as a self-contained HTML page",
                {"200": ok(None, "The report.", media="text/html"), **errors(*RELAYED, 404)},
                "monitoring",
                parameters=MONITORING_PARAMS,
            )
        },
        "/jobs": {
            "get": op(
                "The most recent jobs (without their answers)",
                {"200": ok("Jobs", "The jobs, newest first."), **errors(*RELAYED)},
                "jobs",
                parameters=[
                    query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 500},
                        "How many (default 100).",
                    )
                ],
            )
        },
        "/jobs/{job_id}": {
            "parameters": [JOB_ID],
            "get": op(
                "A job's state, progress and, once finished, its answer or error",
                {"200": ok("Job", "The job.", "job"), **errors(*RELAYED, 404)},
                "jobs",
            ),
            "delete": op(
                "Ask for a job's cancellation (it stops at its next progress point)",
                {"202": ok("Job", "Cancellation requested."), **errors(*RELAYED, 404, 409)},
                "jobs",
            ),
        },
    }
