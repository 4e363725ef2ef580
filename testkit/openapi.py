"""Check an HTTP answer against the OpenAPI document's schema for its path, method and
status (JSON Schema 2020-12, the dialect of OpenAPI 3.1)."""

from __future__ import annotations

import json

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match


def response_object(doc: dict, path: str, method: str, status: int) -> dict:
    """The document's response object for `path` (a templated path, e.g. /jobs/{job_id}),
    `method` and `status`, its $ref followed; KeyError when the document has none."""
    response = doc["paths"][path][method.lower()]["responses"][str(status)]
    if "$ref" in response:
        response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    return response


def schema_errors(doc: dict, schema: dict, instance) -> list[str]:
    """What in `instance` does not match `schema` (whose $refs point into `doc`)."""
    validator = Draft202012Validator({**schema, "components": doc["components"]})
    found = []
    for error in validator.iter_errors(instance):
        # Of a oneOf/anyOf that failed, the branch that came closest says what is wrong.
        error = best_match(error.context) if error.context else error
        where = "/".join(map(str, error.absolute_path)) or "(root)"
        found.append(f"{where}: {error.message[:300]}")
    return found


def answer_errors(
    doc: dict, path: str, method: str, status: int, content_type: str, body: bytes, headers=None
) -> list[str]:
    """Why this answer is outside the document (an empty list when it is not); `headers`,
    when given, must hold the response's required headers."""
    try:
        response = response_object(doc, path, method, status)
    except KeyError:
        return [f"{method.upper()} {path} does not document status {status}"]
    required = [n for n, h in response.get("headers", {}).items() if h.get("required")]
    missing = [name for name in required if headers is not None and name not in headers]
    if missing:
        return [f"{method.upper()} {path} {status}: no {', '.join(missing)} header"]
    media = content_type.split(";")[0].strip()
    content = response.get("content", {})
    if media not in content:
        return [f"{method.upper()} {path} {status}: {media} is not one of {sorted(content)}"]
    if media != "application/json":
        return []
    return schema_errors(doc, content[media]["schema"], json.loads(body))
