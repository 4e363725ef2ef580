"""The paths of the document: every public route of preprocess, and the trainer's /models
routes that preprocess relays (tests/preprocess/test_openapi.py checks both against the apps'
url maps)."""

from __future__ import annotations

from preprocess.openapi.examples import answer_example, csv_example
from preprocess.openapi.schemas import ref
from sluice_common.choices import PHASES, PROMOTE_MODES, TASKS
from sluice_common.web.params import BATCH_ID, MODEL_NAME, VERSION

BOOL_WORDS = ["true", "false"]


def param(name: str, where: str, schema: dict, description: str, required=False, **extra) -> dict:
    """One parameter object."""
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": schema,
        "description": description,
        **extra,
    }


def query(name: str, schema: dict, description: str, required=False, **extra) -> dict:
    return param(name, "query", schema, description, required, **extra)


MODEL = query(
    "model",
    {"type": "string", "pattern": MODEL_NAME.pattern},
    "Registered model name (default: DEFAULT_MODEL_NAME, `default`).",
)
NAME = param("name", "path", {"type": "string", "pattern": MODEL_NAME.pattern}, "A model's name.")
JOB_ID = param("job_id", "path", {"type": "string", "pattern": "^[0-9a-f]{32}$"}, "A job's id.")
LIMIT = query("limit", {"type": "integer", "minimum": 1}, "How many to list (a page).")
PAGE = query("page", {"type": "string", "maxLength": 1000}, "The previous answer's next_page.")

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


def upload_body(what: str, example_file: str, lines: int, required: bool) -> dict:
    """A multipart body whose one field, data_file, is the CSV."""
    return {
        "required": required,
        "description": what,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "data_file": {
                            "type": "string",
                            "format": "binary",
                            "contentMediaType": "text/csv",
                            "description": "The CSV file (any delimiter and encoding Sluice "
                            "reads; also Parquet or Arrow where allowed).",
                        }
                    },
                    "required": ["data_file"],
                },
                "encoding": {"data_file": {"contentType": "text/csv, application/octet-stream"}},
                "example": {"data_file": csv_example(example_file, lines)},
            }
        },
    }


def json_body(schema: str, example: dict, required=True) -> dict:
    return {
        "required": required,
        "content": {"application/json": {"schema": ref(schema), "example": example}},
    }


def ok(schema: str | None, description: str, example: str | None = None, media="application/json"):
    """A success response: JSON of `schema` (with a captured example), or another media type."""
    content = {"schema": ref(schema)} if schema else {"schema": {"type": "string"}}
    if example:
        content["example"] = answer_example(example)
    return {"description": description, "content": {media: content}}


def errors(*statuses: int) -> dict:
    """Error responses by status (components/responses, each listing its codes)."""
    return {str(status): {"$ref": f"#/components/responses/E{status}"} for status in statuses}


# Statuses of any request relayed to the trainer: bad input, the token, the trainer's own
# failures (500), its absence or a busy service (503) and its silence (504).
RELAYED = (400, 401, 500, 503, 504)
UPLOAD = (400, 401, 408, 413, 500, 503, 504)


# What gunicorn answers before any view, on every route: a request line (URL and query) or
# headers over its limits.
TRANSPORT = (414, 431)


def op(summary: str, responses: dict, tag: str, **fields) -> dict:
    """An operation object, with the transport's error statuses."""
    responses = {**responses, **errors(*TRANSPORT)}
    return {"summary": summary, "tags": [tag], "responses": responses, **fields}


def paths() -> dict:
    """The document's paths."""
    return {**_service_paths(), **_data_paths(), **_model_paths()}


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
                    "202": ok(
                        "JobAccepted",
                        "Queued as a job (async=true, or a large upload).",
                        "job_accepted",
                    ),
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


def _model_paths() -> dict:
    on_model = (*RELAYED, 404, 409)
    return {
        "/models": {
            "get": op(
                "Sluice's models: champion, challenger and versions registered",
                {"200": ok("Models", "A page of models.", "models"), **errors(*RELAYED)},
                "models",
                parameters=[LIMIT, PAGE],
            )
        },
        "/models/{name}": {
            "parameters": [NAME],
            "get": op(
                "A model's versions with their evidence (newest first) and its history",
                {"200": ok("ModelDetail", "The model.", "model"), **errors(*RELAYED, 404)},
                "models",
                parameters=[LIMIT, PAGE],
            ),
        },
        "/models/{name}/champion": {
            "parameters": [NAME],
            "post": op(
                "Make a version the champion (promotion or rollback), with the reason",
                {
                    "200": ok("ChampionSet", "The champion now.", "champion"),
                    **errors(*on_model, 413, 422),
                },
                "models",
                requestBody=json_body("ChampionRequest", {"version": "2", "reason": "rollback"}),
            ),
        },
        "/models/{name}/challenger": {
            "parameters": [NAME],
            "put": op(
                "Start a shadow challenger",
                {
                    "201": ok("Challenger", "Started.", "challenger"),
                    "200": ok("Challenger", "That version already runs."),
                    **errors(*on_model, 413),
                },
                "models",
                requestBody=json_body("ChallengerRequest", {"version": "3", "mode": "shadow"}),
            ),
            "get": op(
                "The paired comparison of challenger and champion on labelled rows",
                {"200": ok("Comparison", "The comparison.", "comparison"), **errors(*on_model)},
                "models",
                parameters=[query("metric", {"type": "string"}, "The metric compared.")],
            ),
            "delete": op(
                "End the challenge; the answer holds its last comparison",
                {"200": ok("ChallengerEnded", "Ended."), **errors(*on_model)},
                "models",
            ),
        },
        "/models/{name}/retrain": {
            "parameters": [NAME],
            "post": op(
                "Retrain on the champion's rows plus the labelled prod rows (a job)",
                {"202": ok("JobAccepted", "Queued.", "job_accepted"), **errors(*on_model, 413)},
                "models",
                requestBody=json_body("RetrainRequest", {"promote": "never"}, required=False),
            ),
        },
    }
