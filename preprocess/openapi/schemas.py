"""The JSON Schemas (2020-12, as OpenAPI 3.1 takes them) of Sluice's answers.

Written from the answer builders (trainer/lifecycle/answers.py, catalogue.py, challenger.py,
trainer/jobs, the monitoring summary) and checked against real answers by
tests/stack/test_openapi_answers.py. Objects allow fields beyond those listed: answers grow
new fields, and a client that reads the listed ones keeps working.
"""

from __future__ import annotations

from sluice_common import error_codes

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
BOOLEAN = {"type": "boolean"}
OBJECT = {"type": "object"}
NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_NUMBER = {"type": ["number", "null"]}
VERSION = {"type": "string", "pattern": "^[0-9]+$", "examples": ["3"]}
JOB_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
TIME = {"type": "string", "examples": ["2026-12-07T20:35:25Z"]}


def ref(name: str) -> dict:
    """A reference to components/schemas/`name`."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict, required: tuple[str, ...] = (), **extra) -> dict:
    """An object schema with these properties, the `required` ones required."""
    schema = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def nullable(schema: dict) -> dict:
    """`schema` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def error_schema() -> dict:
    """The one error shape, its code one of the catalogue's (sluice_common/error_codes.py)."""
    codes = sorted({entry.code for entry in error_codes.catalogue()})
    return obj(
        {
            "error": obj(
                {
                    "code": {
                        "type": "string",
                        "enum": codes,
                        "description": "A machine code; docs/reference/errors.md says what each "
                        "means and the status it comes with.",
                    },
                    "message": {"type": "string", "description": "What to fix, in words."},
                    "retry_after": {"type": "integer", "description": "Seconds to wait (busy)."},
                    "job_id": JOB_ID,
                    "location": STRING,
                },
                ("code", "message"),
                description="Some errors add fields (named in the error codes page).",
            )
        },
        ("error",),
        additionalProperties=False,
    )


FEATURE = obj(
    {
        "name": STRING,
        "kind": {"type": "string", "examples": ["numeric", "categorical", "datetime", "text"]},
        "levels": INTEGER,
        "number_format": OBJECT,
        "date_formats": {"type": "array", "items": STRING},
        "rare_levels_grouped": {},
        "ambiguous_format": BOOLEAN,
        "note": STRING,
    },
    ("name", "kind"),
)

PROMOTION = obj(
    {
        "promoted": BOOLEAN,
        "reason": STRING,
        "rule": NULLABLE_STRING,  # null when promote=never skipped the gate
        "metric": NULLABLE_STRING,
        "challenger_score": NULLABLE_NUMBER,
        "champion_score": NULLABLE_NUMBER,
        "champion_version": NULLABLE_STRING,
        "baseline": nullable(OBJECT),
    },
    ("promoted", "reason"),
)

DEV_ANSWER = obj(
    {
        "phase": {"const": "dev"},
        "model": STRING,
        "version": VERSION,
        "run_id": STRING,
        "target": STRING,
        "task": obj({"type": STRING, "reason": STRING}, ("type",)),
        "metrics": {"type": "object", "additionalProperties": NULLABLE_NUMBER},
        "promoted": BOOLEAN,
        "reason": STRING,
        "promotion": ref("Promotion"),
        "champion_version": NULLABLE_STRING,
        "features": obj(
            {
                "used": {"type": "array", "items": ref("Feature")},
                "dropped": {"type": "array", "items": obj({"name": STRING, "reason": STRING})},
                "n_matrix_columns": INTEGER,
            },
            ("used", "dropped"),
        ),
        "training": OBJECT,
        "cleaning": OBJECT,
        "monitoring": nullable(OBJECT),
        "data": OBJECT,
    },
    ("phase", "model", "version", "run_id", "target", "metrics", "promoted", "reason"),
    description="A dev answer: the new version, its metrics, the promotion decision, the "
    "features used and dropped with reasons.",
)

PREDICTION = {"type": ["string", "number", "integer", "boolean", "null"]}
PROD_ANSWER = obj(
    {
        "phase": {"const": "prod"},
        "model": STRING,
        "version": VERSION,
        "run_id": STRING,
        "digest": NULLABLE_STRING,
        "n_rows": INTEGER,
        "predictions": {"type": "array", "items": PREDICTION},
        "ignored_columns": {"type": "array", "items": STRING},
        "warnings": OBJECT,
        "flagged_rows": {"type": "array"},
        "flagged_rows_total": INTEGER,
        "cleaning": OBJECT,
        "classes": {"type": "array"},
        "probabilities": {"type": "array", "items": {"type": "array", "items": NUMBER}},
        "batch_id": NULLABLE_STRING,
    },
    ("phase", "model", "version"),
    description="A prod answer: one prediction per input row in input order (or, by "
    "reference, where they were written), warnings and flagged rows.",
)

JOB_ACCEPTED = obj(
    {"job_id": JOB_ID, "state": {"const": "queued"}, "location": STRING},
    ("job_id", "state", "location"),
    description="Long work runs as a job: follow `location` (GET /jobs/{job_id}).",
)

JOB_STATES = ["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
JOB = obj(
    {
        "job_id": JOB_ID,
        "state": {"type": "string", "examples": JOB_STATES},
        "phase": STRING,
        "model": STRING,
        "request": OBJECT,
        "created_at": TIME,
        "started_at": nullable(TIME),
        "finished_at": nullable(TIME),
        "progress": nullable(OBJECT),
        "status": {"type": ["integer", "null"], "description": "The answer's HTTP status."},
        "answer": {"description": "The finished job's answer (the dev or prod answer)."},
        "error": nullable(OBJECT),
        "cancel_requested": BOOLEAN,
    },
    ("job_id", "state"),
)

HEALTH = obj(
    {
        "status": {"type": "string", "enum": ["ok", "degraded"]},
        "service": {"const": "preprocess"},
        "trainer": obj({"reachable": BOOLEAN}, ("reachable",)),
        "reason": STRING,
    },
    ("status", "service", "trainer"),
)

LIVEZ = obj({"status": {"const": "alive"}, "service": STRING}, ("status", "service"))

FEEDBACK = obj(
    {
        "model": STRING,
        "labels": INTEGER,
        "batches": INTEGER,
        "new": INTEGER,
        "unchanged": INTEGER,
        "changed": INTEGER,
        "retraining": OBJECT,
        "retrain": OBJECT,
        "challenger_promoted": {},
    },
    ("model", "labels"),
)

MONITORING = obj(
    {
        "model": STRING,
        "version": NULLABLE_STRING,
        "window": OBJECT,
        "batches": INTEGER,
        "rows_scored": INTEGER,
        "drift": OBJECT,
        "performance": nullable(OBJECT),
        "status": {},
    },
    ("model",),
)


def components() -> dict:
    """components/schemas of the answers of the data, jobs, monitoring and service routes."""
    return {
        "Error": error_schema(),
        "Health": HEALTH,
        "Livez": LIVEZ,
        "Feature": FEATURE,
        "Promotion": PROMOTION,
        "DevAnswer": DEV_ANSWER,
        "ProdAnswer": PROD_ANSWER,
        "JobAccepted": JOB_ACCEPTED,
        "Job": JOB,
        "Jobs": obj({"jobs": {"type": "array", "items": ref("Job")}}, ("jobs",)),
        "Feedback": FEEDBACK,
        "Monitoring": MONITORING,
    }
