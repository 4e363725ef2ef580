"""The console's access control: the signed session cookie, CSRF tokens on every post, the
strict headers, and the API's Bearer check left as it was (Flask's test client against a
stand-in trainer, tests/preprocess/console_standin.py)."""

from __future__ import annotations

import pytest

from preprocess.console import CSP, access
from tests.preprocess.console_helpers import (
    PAGES,
    TOKEN,
    TRAIN_CSV,
    Page,
    csrf_of,
    signed_in,
    train,
)
from tests.preprocess.console_standin import JOB_ID


def test_every_console_answer_sends_the_strict_headers(make_client):
    client = make_client()
    urls = (*PAGES, "/console/static/console.css", "/console/predictions/" + "0" * 32)
    for url in urls:
        headers = client.get(url).headers
        assert headers["Content-Security-Policy"] == CSP, url
        assert "script-src 'self'" in CSP and "unsafe" not in CSP
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
    refused = client.post("/console/train", data={})  # a 403 page is a console answer too
    assert refused.status_code == 403 and refused.headers["Content-Security-Policy"] == CSP
    assert "<script>" not in client.get("/").text  # no inline script: only src= files
    assert "style=" not in "".join(client.get(url).text for url in PAGES)  # no inline style


def test_login_sets_a_signed_httponly_strict_cookie_that_is_not_the_token(make_client):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    refused = client.get("/console/models")
    assert refused.status_code == 303 and refused.location.startswith("/console/login")
    csrf = csrf_of(client, "/console/login")
    wrong = client.post("/console/login", data={"token": "nope", "csrf_token": csrf})
    assert wrong.status_code == 401 and Page(wrong.text).alerts
    answer = client.post(
        "/console/login", data={"token": TOKEN, "csrf_token": csrf, "next": "/console/jobs"}
    )
    assert answer.status_code == 303 and answer.location == "/console/jobs"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test below
    value = cookie.split(";")[0].split("=", 1)[1]
    assert TOKEN not in value and len(value.split(".")) == 3
    assert client.get("/console/models").status_code == 200


def test_over_https_the_cookie_is_secure(make_client):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    page = client.get("/console/login", base_url="https://localhost")
    csrf = Page(page.text).csrf[0]
    answer = client.post(
        "/console/login",
        data={"token": TOKEN, "csrf_token": csrf},
        base_url="https://localhost",
    )
    assert "Secure" in answer.headers["Set-Cookie"]


def test_pages_without_a_signed_cookie_redirect_to_the_login(make_client, trainer):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    for url in PAGES:
        answer = client.get(url)
        assert answer.status_code == 303 and "/console/login" in answer.location, url
    client.set_cookie("sluice_console", "0" * 32 + ".9999999999." + "f" * 64)  # forged MAC
    assert client.get("/console/models").status_code == 303
    assert trainer.requests == []


def test_a_next_page_off_the_console_is_ignored(make_client):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    for target in ("https://evil.example/", "//evil.example/", "/models"):
        csrf = csrf_of(client, "/console/login")  # each sign-in starts a new session
        answer = client.post(
            "/console/login", data={"token": TOKEN, "csrf_token": csrf, "next": target}
        )
        assert answer.location == "/", target


def test_signing_out_ends_the_session(make_client):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    signed_in(client)
    csrf = csrf_of(client, "/console/jobs")
    assert client.post("/console/logout", data={"csrf_token": csrf}).status_code == 303
    assert client.get("/console/jobs").status_code == 303


@pytest.mark.parametrize("token", [None, TOKEN])
def test_posts_without_or_with_a_wrong_csrf_token_are_refused_and_reach_nothing(
    make_client, trainer, token
):
    client = make_client(SLUICE_API_TOKEN=token)
    if token:
        signed_in(client)
    other = make_client(SLUICE_API_TOKEN=token)
    if token:
        signed_in(other)
    foreign = csrf_of(other)  # a valid token, of another session
    trainer.requests.clear()
    for csrf in (None, "0" * 64, foreign):
        answer = train(client, csrf) if csrf else client.post("/console/train", data={})
        assert answer.status_code == 403 and Page(answer.text).alerts
        for url in (
            "/console/models/churn/champion",
            "/console/models/churn/retrain",
            f"/console/jobs/{JOB_ID}/cancel",
        ):
            data = {"csrf_token": csrf} if csrf else {}
            refused = client.post(url, data={**data, "version": "1", "reason": "x"})
            assert refused.status_code == 403, url
    assert trainer.requests == []


def test_the_api_keeps_its_bearer_check(make_client):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    signed_in(client)  # the console's cookie opens the console only
    assert client.get("/models").status_code == 401
    with open(TRAIN_CSV, "rb") as handle:
        posted = client.post("/analyze?phase=dev", data={"data_file": handle})
    assert posted.status_code == 401 and posted.json["error"]["code"] == "unauthorized"
    assert client.get("/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    # The API's description holds no data: open (the route itself comes with /openapi.json).
    assert client.get("/openapi.json").status_code != 401


def test_a_link_from_another_site_reloads_instead_of_replacing_the_session(make_client):
    client = make_client(SLUICE_API_TOKEN=TOKEN)
    arrived = client.get("/console/models", headers={"Sec-Fetch-Site": "cross-site"})
    assert arrived.status_code == 200 and '<meta http-equiv="refresh" content="0">' in arrived.text
    assert "Set-Cookie" not in arrived.headers  # the browser's own cookie stays as it is
    assert arrived.headers["Content-Security-Policy"] == CSP
    reloaded = client.get("/console/models", headers={"Sec-Fetch-Site": "same-origin"})
    assert reloaded.status_code == 303 and "Set-Cookie" in reloaded.headers
    assert client.get("/console").location == "/"


def test_a_signed_cookie_holds_for_its_session_time_and_its_token_only():
    sid, cookie = access.signed_in_cookie(TOKEN, now=1000.0)
    assert access.read_session(cookie, TOKEN, now=1001.0).signed_in
    expired = 1000.0 + access.SESSION_SECONDS + 1
    assert not access.read_session(cookie, TOKEN, now=expired).signed_in
    assert not access.read_session(cookie, "another-token", now=1001.0).signed_in
    tampered = cookie.replace(cookie.split(".")[1], str(int(expired) + 10**6))
    assert not access.read_session(tampered, TOKEN, now=1001.0).signed_in
    assert access.read_session(cookie, TOKEN, now=1001.0).sid == sid
    assert access.csrf_token(sid, TOKEN) != access.csrf_token("0" * 32, TOKEN)
    assert not access.csrf_ok("é", sid, TOKEN)  # not ASCII: refused, not a 500
