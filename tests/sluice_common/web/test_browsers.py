"""Other sites' pages are refused (sluice_common/web/browsers.py): every state-changing route of
preprocess and the trainer answers 403 `cross_site_request` to a browser's cross-site (or
same-site) request and runs nothing, and a Host with a dot that SLUICE_ALLOWED_HOSTS does not
list gets 403 `host_not_allowed` (DNS rebinding). Programs' requests and same-origin pages pass.

Flask test clients against both real apps; preprocess calls a stand-in trainer that records
every request, and each app's views are wrapped to count the calls that reach them."""

from __future__ import annotations

import functools
import html
import io
import re

import pytest

from preprocess import create_app
from sluice_common.web.browsers import cross_site_evidence, host_allowed, parse_allowed_hosts
from tests.preprocess.console_standin import StandInTrainer

SAFE = {"GET", "HEAD", "OPTIONS"}
HOST = "127.0.0.1:8050"  # the Host these tests' requests arrive with
CROSS_SITE = [
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
    # Another port of the same host is the same site, but another origin.
    {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:9999"},
    # Without Sec-Fetch-Site (older browsers), the Origin decides.
    {"Origin": "http://127.0.0.1:9999"},
    {"Origin": "http://localhost:8050"},
    {"Origin": "null"},
]
OWN_PAGE = [
    {"Sec-Fetch-Site": "same-origin", "Origin": f"http://{HOST}"},
    {"Origin": f"http://{HOST}"},
    {"Origin": f"https://{HOST}"},  # behind a TLS proxy the service sees http
    {},  # a program: curl, requests, the Sluice client
]


@pytest.fixture(scope="module")
def stand_in():
    trainer = StandInTrainer()
    yield trainer
    trainer.stop()


def _counted(app) -> list[str]:
    """Wrap every view of `app` so that each call is recorded; the record."""
    calls: list[str] = []

    def counting(endpoint, view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            calls.append(endpoint)
            return view(*args, **kwargs)

        return wrapper

    for endpoint, view in list(app.view_functions.items()):
        app.view_functions[endpoint] = counting(endpoint, view)
    return calls


def _preprocess(stand_in, tmp_path, **config):
    app = create_app(
        {
            "TRAINER_URL": stand_in.url,
            "SLUICE_INTERNAL_TOKEN": "internal",
            "ADMISSION_DIR": str(tmp_path / "slots"),
            "CONSOLE_RESULTS_DIR": str(tmp_path / "results"),
            **config,
        }
    )
    return app, _counted(app)


@pytest.fixture(scope="module")
def trainer_app(tmp_path_factory):
    # Imported here: the trainer (MLflow, XGBoost) costs seconds to import.
    from trainer.app import create_app as create_trainer

    app = create_trainer(
        {
            "TRAINER_STATE_DIR": str(tmp_path_factory.mktemp("trainer-state")),
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # never called
            "TRAINER_WARM_UP": False,
        }
    )
    return app, _counted(app)


def _state_changing(app) -> list[tuple[str, str]]:
    """(method, URL) of every route of `app` that takes a method other than GET/HEAD/OPTIONS,
    its variables filled in."""
    found = []
    for rule in app.url_map.iter_rules():
        url = re.sub(
            r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: "a" * 32 if "id" in m[1] else "m", rule.rule
        )
        found += [(method, url) for method in sorted(rule.methods - SAFE)]
    return found


def _send(client, method, url, headers, host=HOST, **body):
    """`method` `url` with `headers` and Host `host`; a small CSV upload unless `body` says."""
    body = body or {"data": {"data_file": (io.BytesIO(b"a,b\n1,2\n"), "d.csv"), "csrf_token": "x"}}
    return client.open(url, method=method, headers={"Host": host, **headers}, **body)


def _refusal(answer, code: str) -> str:
    """The message of a refusal with `code`: JSON on the API's paths; on the console's, its
    HTML error page (the same code and message, unescaped here)."""
    if answer.is_json:
        assert answer.get_json()["error"]["code"] == code, answer.data
        return answer.get_json()["error"]["message"]
    assert answer.mimetype == "text/html", answer.data
    page = html.unescape(answer.get_data(as_text=True))
    assert code in page and 'role="alert"' in page, page
    return page


def _evidence(headers: dict) -> str:
    """The header the refusal should name: Sec-Fetch-Site when sent, else Origin."""
    name = "Sec-Fetch-Site" if "Sec-Fetch-Site" in headers else "Origin"
    return f"{name}: {headers[name]}"


def test_every_state_changing_route_refuses_other_sites(stand_in, tmp_path, trainer_app):
    preprocess_app, preprocess_calls = _preprocess(stand_in, tmp_path)
    stand_in.requests.clear()
    for app, calls in ((preprocess_app, preprocess_calls), trainer_app):
        routes = _state_changing(app)
        assert len(routes) >= 7, routes
        client = app.test_client()
        for method, url in routes:
            for headers in CROSS_SITE:
                answer = _send(client, method, url, headers)
                assert answer.status_code == 403, (method, url, headers, answer.data)
                message = _refusal(answer, "cross_site_request")
                assert _evidence(headers) in message and "from a program" in message
        assert calls == []
    assert stand_in.requests == []


def test_the_trainer_routes_include_champion_retrain_feedback_and_jobs(trainer_app):
    routes = set(_state_changing(trainer_app[0]))
    for expected in [
        ("POST", "/ml"),
        ("POST", "/feedback"),
        ("POST", "/models/m/champion"),
        ("POST", "/models/m/retrain"),
        ("DELETE", "/jobs/" + "a" * 32),
    ]:
        assert expected in routes


@pytest.mark.parametrize("headers", OWN_PAGE)
def test_own_pages_and_programs_reach_the_trainer(stand_in, tmp_path, headers):
    app, calls = _preprocess(stand_in, tmp_path)
    stand_in.requests.clear()
    client = app.test_client()
    answer = _send(
        client, "POST", "/models/churn/champion", headers, json={"version": "2", "reason": "r"}
    )
    assert answer.status_code == 200, answer.data
    assert [r["path"] for r in stand_in.requests] == ["/models/churn/champion"]
    answer = _send(client, "POST", "/analyze?phase=dev&model=m&target=b", headers)
    assert answer.status_code == 200, answer.data
    assert calls == ["preprocess.models", "preprocess.analyze"]


def test_own_pages_reach_the_trainers_views(trainer_app):
    app, calls = trainer_app
    calls.clear()
    answer = _send(app.test_client(), "DELETE", "/jobs/" + "a" * 32, OWN_PAGE[0])
    assert answer.status_code != 403 and calls == ["jobs.cancel_job"]


def test_a_cross_site_read_is_still_answered(stand_in, tmp_path):
    # Reads are guarded by the browser (the page cannot see the answer) and the Host check;
    # a link to the console from elsewhere must still open it.
    app, calls = _preprocess(stand_in, tmp_path)
    answer = _send(app.test_client(), "GET", "/models", CROSS_SITE[0])
    assert answer.status_code == 200 and calls == ["preprocess.models"]


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8050",
        "127.0.0.1.nip.io:8050",
        "sluice.example.com",
        "localhost.",
    ],
)
def test_a_dotted_host_not_listed_is_refused_on_every_method(stand_in, tmp_path, host):
    app, calls = _preprocess(stand_in, tmp_path)
    client = app.test_client()
    for method, url in [("GET", "/models"), ("GET", "/health"), ("POST", "/feedback")]:
        answer = _send(client, method, url, {}, host=host)
        assert answer.status_code == 403, (method, url)
        error = answer.get_json()["error"]
        assert error["code"] == "host_not_allowed"
        assert host in error["message"] and "SLUICE_ALLOWED_HOSTS" in error["message"]
    assert calls == []


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.0.0.1:8050", "[::1]:8050", "[::1]", "10.1.2.3:8080", "localhost:8050",
     "LOCALHOST", "trainer:8080", "preprocess", "mlflow:5000"],
)  # fmt: skip
def test_ip_addresses_localhost_and_dotless_names_are_always_answered(stand_in, tmp_path, host):
    app, _ = _preprocess(stand_in, tmp_path)
    assert _send(app.test_client(), "GET", "/models", {}, host=host).status_code == 200


def test_listed_names_wildcards_and_star(stand_in, tmp_path):
    app, _ = _preprocess(
        stand_in, tmp_path, SLUICE_ALLOWED_HOSTS="sluice.example.com, *.corp.example,api.x.io:443"
    )
    client = app.test_client()

    def status(host):
        return _send(client, "GET", "/models", {}, host=host).status_code

    assert status("sluice.example.com") == 200
    assert status("Sluice.Example.com:8050") == 200  # a name without a port: any port
    assert status("a.corp.example") == 200
    assert status("api.x.io:443") == 200
    assert status("api.x.io:8050") == 403  # name:port: that port only
    assert status("evil.example") == 403
    assert status("corp.example.evil.example") == 403
    anything, _ = _preprocess(stand_in, tmp_path, SLUICE_ALLOWED_HOSTS="*")
    assert (
        _send(anything.test_client(), "GET", "/models", {}, host="evil.example").status_code == 200
    )


def test_the_trainer_checks_hosts_too(trainer_app):
    app, calls = trainer_app
    calls.clear()
    answer = _send(app.test_client(), "GET", "/health", {}, host="evil.example:8080")
    assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "host_not_allowed"
    assert calls == []


def test_cross_site_evidence_rules():
    host = "127.0.0.1:8050"
    assert cross_site_evidence("GET", "cross-site", "http://evil.example", host) is None
    assert cross_site_evidence("POST", "none", None, host) is None
    assert cross_site_evidence("POST", "Same-Origin", "http://evil.example", host) is None
    assert cross_site_evidence("post", "same-site", None, host) == "Sec-Fetch-Site: same-site"
    assert cross_site_evidence("PUT", None, "http://127.0.0.1:8050", host) is None
    assert cross_site_evidence("PUT", None, "http://127.0.0.1", "127.0.0.1:80") is None
    assert (
        cross_site_evidence("PUT", None, "https://sluice.example.com", "sluice.example.com:443")
        is None
    )
    assert cross_site_evidence("PUT", None, "http://[::1]:8050", "[::1]:8050") is None
    assert cross_site_evidence("PUT", None, "http://[::1]:8051", "[::1]:8050")
    assert cross_site_evidence("PUT", None, "http://127.0.0.1:8050", None)
    assert cross_site_evidence("DELETE", None, "file://", host) == "Origin: file://"
    assert cross_site_evidence("DELETE", None, "x" * 500, host).endswith("...")


def test_host_rules_without_an_app():
    assert host_allowed(None, ())
    assert host_allowed("[fe80::1]:80", ())
    assert not host_allowed("evil.example", parse_allowed_hosts(" , "))
    assert parse_allowed_hosts(" A.example ,, b ") == ("a.example", "b")
