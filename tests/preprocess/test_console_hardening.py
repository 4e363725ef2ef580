"""The console against malformed input (an attacker pass): unreadable forms, odd query values,
forged cookies and redirect targets are 4xx pages with role=alert, never a 500."""

from __future__ import annotations

import pytest

from preprocess.console import CSP
from tests.preprocess.console_helpers import TOKEN, TRAIN_CSV, Page, csrf_of

pytestmark = pytest.mark.quick
FORM = "application/x-www-form-urlencoded"


def _kept_result(make_client):
    """A client and the page of a result it predicted (the stand-in answers 120 rows)."""
    client = make_client()
    csrf = csrf_of(client, "/console/predict")
    with open(TRAIN_CSV, "rb") as handle:
        posted = client.post(
            "/console/predict", data={"data_file": (handle, "q.csv"), "csrf_token": csrf}
        )
    assert posted.status_code == 303
    return client, posted.location


def _alert_page(answer, status=400):
    assert answer.status_code == status, answer.text[:300]
    assert answer.headers["Content-Security-Policy"] == CSP
    assert answer.mimetype == "text/html"
    alerts = Page(answer.text).alerts
    assert alerts and alerts[0]
    return alerts[0]


def test_a_form_that_is_not_utf8_is_a_400_page_before_sign_in(make_client):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    answer = client.post("/console/login", data=b"token=\xff", content_type=FORM)
    _alert_page(answer)
    client = make_client()
    answer = client.post("/console/train", data=b"csrf_token=\xff&model=a", content_type=FORM)
    _alert_page(answer)


def test_a_multipart_file_name_that_is_not_utf8_is_a_400_page(make_client):
    client = make_client()
    body = (
        b'--b\r\nContent-Disposition: form-data; name="data_file"; filename="\xff.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\na,b\n1,2\n\r\n--b--\r\n"
    )
    answer = client.post(
        "/console/predict", data=body, content_type="multipart/form-data; boundary=b"
    )
    _alert_page(answer)


def test_a_multipart_body_cut_off_mid_part_is_the_apis_malformed_multipart(make_client):
    client = make_client()
    csrf = csrf_of(client)
    body = (
        b'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
        + csrf.encode()
        + b'\r\n--b\r\nContent-Disposition: form-data; name="data_file"; filename="a.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\na,b\n1,2\n"
    )
    answer = client.post(
        "/console/train", data=body, content_type="multipart/form-data; boundary=b"
    )
    assert "cannot be read" in _alert_page(answer)


@pytest.mark.parametrize("page", ["%C2%B2", "9" * 5000, "-1", "x", "99999"])
def test_any_page_number_shows_a_page(make_client, page):
    client, location = _kept_result(make_client)
    answer = client.get(f"{location}?page={page}")
    assert answer.status_code == 200
    assert "download-csv" in Page(answer.text).ids


@pytest.mark.parametrize(
    "cookie",
    ["0" * 32 + "." + "9" * 5000 + ".x", "0" * 32 + ".\xb2.x", "0" * 32 + ".1\n.x", "\xb2"],
)
def test_a_malformed_cookie_is_no_session(make_client, cookie):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    client.set_cookie("sluice_console", cookie)
    answer = client.get("/console/models")
    assert answer.status_code == 303 and answer.location.startswith("/console/login")


@pytest.mark.parametrize(
    "target",
    [
        "/console/\r\nX-Evil: 1",
        "/console/jobs\n",
        "/console//evil.example",
        "/console/logout",
        "/console/logout/",
        "/console/\x00",
        "https://evil.example/console/",
    ],
)
def test_login_goes_home_for_a_next_that_is_not_a_plain_console_page(make_client, target):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    csrf = csrf_of(client, "/console/login")
    answer = client.post(
        "/console/login", data={"token": TOKEN, "csrf_token": csrf, "next": target}
    )
    assert answer.status_code == 303 and answer.location == "/"
    assert "X-Evil" not in answer.headers
    page = client.get("/console/login", query_string={"next": target})
    assert page.status_code in (200, 303)


def test_login_keeps_a_plain_console_next(make_client):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    csrf = csrf_of(client, "/console/login")
    data = {"token": TOKEN, "csrf_token": csrf, "next": "/console/jobs?page=2&x=a%20b"}
    assert client.post("/console/login", data=data).location == data["next"]
