"""schemathesis against the preprocess app in process (a stand-in trainer behind it): for
every operation of the OpenAPI document, generated requests, valid and invalid, get no server
error and no answer outside the document (status, media type, schema)."""

from __future__ import annotations

import io

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.meta import TestPhase
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from preprocess import create_app
from preprocess.openapi import document
from testkit.stand_in_trainer import running_stand_in

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES_PER_OPERATION = 20
OPERATIONS = [
    (path, method.upper())
    for path, item in document()["paths"].items()
    for method in item
    if method in {"get", "put", "post", "delete"}
]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    # schemathesis' own pytest integration (from_fixture) fails on pytest 9 (node._nodeid):
    # the cases come from each operation's hypothesis strategy instead.
    with running_stand_in() as trainer_url:
        app = create_app(
            {
                "TESTING": True,
                "TRAINER_URL": trainer_url,
                "ADMISSION_DIR": str(tmp_path_factory.mktemp("admission")),
            }
        )
        yield schemathesis.openapi.from_wsgi("/openapi.json", app)


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_answers_stay_inside_the_document(api_schema, path, method):
    operation = api_schema[path][method]
    cases = st.one_of(
        # The document's own examples (the CSV from examples/: a request that reaches the
        # trainer), then generated valid and invalid requests.
        operation.as_strategy(GenerationMode.POSITIVE, phase=TestPhase.EXAMPLES),
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,  # the same examples on every run and machine
        derandomize=True,
    )
    def check(case):
        case.call_and_validate(checks=CHECKS)

    check()


@pytest.mark.parametrize(
    "query", [{"phase": "dev"}, {"phase": "prod", "proba": "true"}, {"phase": "prod", "async": "1"}]
)
def test_the_csv_example_reaches_the_trainer_and_its_answer_fits(api_schema, query):
    """Generated files are rarely CSVs with rows: the document's own example is sent too, so
    the dev, prod and job answers pass through the checks."""
    csv = document()["paths"]["/analyze"]["post"]["requestBody"]["content"]
    csv = csv["multipart/form-data"]["example"]["data_file"]
    case = api_schema["/analyze"]["POST"].Case(
        query=query, body={"data_file": csv.encode()}, media_type="multipart/form-data"
    )
    answer = case.call_and_validate(checks=CHECKS)
    assert answer.status_code == (202 if "async" in query else 200)


def test_a_png_upload_is_refused_as_not_csv(api_schema):
    """The issue's research saw a 500 for a PNG upload; it is a 400 not_csv in both phases."""
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02"
    client = api_schema.app.test_client()
    for phase in ("dev", "prod"):
        answer = client.post(
            f"/analyze?phase={phase}",
            data={"data_file": (io.BytesIO(png), "chart.png", "image/png")},
        )
        assert answer.status_code == 400, answer.get_data(as_text=True)
        assert answer.get_json()["error"]["code"] == "not_csv"
