"""The OpenAPI document (preprocess/openapi): it validates, its paths are the apps' routes,
it names every error code, its examples are real, and /docs serves Swagger UI offline."""

from __future__ import annotations

import json
import os
import re

import pytest
from openapi_spec_validator import validate

from preprocess import create_app
from preprocess.openapi import document
from preprocess.openapi.examples import answer_example, csv_example
from sluice_common import error_codes
from testkit.openapi import answer_errors, response_object, schema_errors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IGNORED_METHODS = {"HEAD", "OPTIONS"}
# Endpoints the document leaves out, each for its reason:
NOT_API_BLUEPRINTS = {
    "console",  # the browser console's HTML pages and forms (preprocess/console)
    "swagger_ui",  # GET /docs and its files: Swagger UI's page, not the API
}
NOT_API_ENDPOINTS = {"static"}  # Flask's static files (none today)
# preprocess relays /models and /models/<path> to the trainer with any method: the document
# lists the trainer's concrete /models routes instead, checked against the trainer's url map.
RELAYED_ENDPOINT = "preprocess.models"


def _operations(url_map, keep) -> set[tuple[str, str]]:
    """(path with {params}, method) of every rule `keep` accepts."""
    found = set()
    for rule in url_map.iter_rules():
        if not keep(rule.endpoint):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        found |= {(path, method) for method in rule.methods - IGNORED_METHODS}
    return found


def _documented(doc: dict) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch"}
    return {
        (path, method.upper())
        for path, item in doc["paths"].items()
        for method in item
        if method in methods
    }


def _public(endpoint: str) -> bool:
    blueprint = endpoint.rpartition(".")[0]
    return blueprint not in NOT_API_BLUEPRINTS and endpoint not in NOT_API_ENDPOINTS


@pytest.fixture(scope="module")
def doc() -> dict:
    return document()


@pytest.fixture(scope="module")
def preprocess_app():
    return create_app({"TESTING": True})


@pytest.fixture(scope="module")
def trainer_app(tmp_path_factory):
    # Imported here: the trainer (MLflow, XGBoost) costs seconds to import, for one test.
    from trainer.app import create_app as create_trainer

    return create_trainer(
        {
            "TRAINER_STATE_DIR": str(tmp_path_factory.mktemp("trainer-state")),
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # never called
            "TRAINER_WARM_UP": False,
        }
    )


def test_document_is_valid_openapi_3_1(doc):
    validate(doc)
    assert doc["openapi"].startswith("3.1")


def test_paths_are_preprocess_routes(doc, preprocess_app):
    routes = _operations(preprocess_app.url_map, lambda e: _public(e) and e != RELAYED_ENDPOINT)
    documented = {op for op in _documented(doc) if not op[0].startswith("/models")}
    assert routes == documented
    assert ("/analyze", "POST") in routes and ("/openapi.json", "GET") in routes


def test_models_paths_are_the_trainers_routes(doc, preprocess_app, trainer_app):
    relayed = {
        r.rule for r in preprocess_app.url_map.iter_rules() if r.endpoint == RELAYED_ENDPOINT
    }
    assert relayed == {"/models", "/models/<path:rest>"}
    trainer_models = _operations(trainer_app.url_map, lambda e: True)
    trainer_models = {op for op in trainer_models if op[0].startswith("/models")}
    documented = {op for op in _documented(doc) if op[0].startswith("/models")}
    assert trainer_models == documented
    assert ("/models/{name}/retrain", "POST") in documented


def test_error_schema_lists_every_code(doc):
    error = doc["components"]["schemas"]["Error"]
    codes = set(error["properties"]["error"]["properties"]["code"]["enum"])
    assert codes == {entry.code for entry in error_codes.catalogue()}


def test_each_error_status_response_names_its_codes(doc):
    for entry in error_codes.catalogue():
        if entry.status is None:
            continue
        described = doc["components"]["responses"][f"E{entry.status}"]["description"]
        assert f"`{entry.code}`" in described


def test_every_documented_error_status_is_catalogued(doc):
    statuses = {e.status for e in error_codes.catalogue()}
    for item in doc["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, response in operation["responses"].items():
                if "$ref" in response:
                    assert int(status) in statuses, status


def test_error_body_matches_the_error_schema(doc, preprocess_app):
    answer = preprocess_app.test_client().post("/analyze?phase=nope")
    assert answer.status_code == 400
    response = response_object(doc, "/analyze", "post", 400)
    schema = response["content"]["application/json"]["schema"]
    assert schema_errors(doc, schema, answer.get_json()) == []
    assert schema_errors(doc, schema, {"error": {"code": "no_such_code", "message": "x"}})


def test_csv_examples_are_the_first_lines_of_examples(doc):
    with open(f"{ROOT}/examples/churn_query.csv", encoding="utf-8") as handle:
        first = "".join(handle.readlines()[:6])
    assert csv_example("churn_query.csv", 6) == first
    body = doc["paths"]["/analyze"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["example"]["data_file"] == first
    with open(f"{ROOT}/examples/churn_train.csv", encoding="utf-8") as handle:
        target = handle.readline().strip().split(",")[-1]
    assert csv_example("labels.csv", 1).strip() == f"batch_id,row,{target}"


CAPTURED = [
    ("health", "/health", "get", 200),
    ("dev", "/analyze", "post", 200),
    ("prod", "/analyze", "post", 200),
    ("job_accepted", "/analyze", "post", 202),
    ("job", "/jobs/{job_id}", "get", 200),
    ("feedback", "/feedback", "post", 200),
    ("models", "/models", "get", 200),
    ("model", "/models/{name}", "get", 200),
    ("champion", "/models/{name}/champion", "post", 200),
    ("challenger", "/models/{name}/challenger", "put", 201),
    ("comparison", "/models/{name}/challenger", "get", 200),
]


@pytest.mark.parametrize(("name", "path", "method", "status"), CAPTURED)
def test_captured_answers_match_their_schemas(doc, name, path, method, status):
    schema = response_object(doc, path, method, status)["content"]["application/json"]
    assert schema_errors(doc, schema["schema"], answer_example(name)) == []


def test_schemas_refuse_a_wrong_answer(doc):
    """The schemas check something: a prod answer without its version is outside them."""
    schema = response_object(doc, "/analyze", "post", 200)["content"]["application/json"]
    broken = {k: v for k, v in answer_example("prod").items() if k != "version"}
    assert schema_errors(doc, schema["schema"], broken)


def test_openapi_json_is_served(preprocess_app, doc):
    answer = preprocess_app.test_client().get("/openapi.json")
    assert answer.status_code == 200
    assert answer.get_json() == doc


def test_docs_serves_swagger_ui_from_the_package(preprocess_app):
    client = preprocess_app.test_client()
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    # Every script and stylesheet is a file of this service, and none is inline.
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/") for s in sources), sources
    assert "<script>" not in html and "<style" not in html
    for source in sources:
        assert client.get(source).status_code == 200, source
    bundle = client.get("/docs/swagger-ui-bundle.js").get_data()
    assert b"SwaggerUIBundle" in bundle and len(bundle) > 500_000
    assert b"/openapi.json" in client.get("/docs/init.js").get_data()
    assert "Apache License" in client.get("/docs/LICENSE").get_data(as_text=True)
    assert client.get("/docs/oauth2-redirect.html").status_code == 404


def test_a_202_without_its_location_is_outside_the_document(doc):
    body = json.dumps(answer_example("job_accepted")).encode()
    location = {"Location": answer_example("job_accepted")["location"]}
    args = (doc, "/analyze", "post", 202, "application/json", body)
    assert answer_errors(*args, location) == []
    assert answer_errors(*args, {}) == ["POST /analyze 202: no Location header"]
