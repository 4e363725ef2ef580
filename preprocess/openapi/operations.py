"""The parts the document's operations are made of: parameters, bodies, success and error
responses (Flask-free plain dicts)."""

from __future__ import annotations

from preprocess.openapi.examples import answer_example, csv_example
from preprocess.openapi.schemas import ref
from sluice_common.web.params import MODEL_NAME

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


def accepted(description: str) -> dict:
    """A 202 with a job: its JobAccepted body and the Location header to follow."""
    response = ok("JobAccepted", description, "job_accepted")
    location = {"type": "string", "pattern": "^/jobs/[0-9a-f]{32}$"}
    response["headers"] = {
        "Location": {"required": True, "description": "The job (GET it).", "schema": location}
    }
    return response


def errors(*statuses: int) -> dict:
    """Error responses by status (components/responses, each listing its codes)."""
    return {str(status): {"$ref": f"#/components/responses/E{status}"} for status in statuses}


# Statuses of any request relayed to the trainer: bad input, the token, the trainer's own
# failures (500), its absence or a busy service (503) and its silence (504).
RELAYED = (400, 401, 500, 503, 504)
UPLOAD = (400, 401, 408, 413, 500, 503, 504)


# What is answered before any view, on every route: gunicorn's 414 and 431 (a request line or
# headers over its limits), and 403 to a browser sent by another site's page (a Host not in
# SLUICE_ALLOWED_HOSTS; a cross-site request that is not GET, HEAD or OPTIONS).
TRANSPORT = (403, 414, 431)


def op(summary: str, responses: dict, tag: str, **fields) -> dict:
    """An operation object, with the error statuses of every route."""
    responses = {**responses, **errors(*TRANSPORT)}
    return {"summary": summary, "tags": [tag], "responses": responses, **fields}
