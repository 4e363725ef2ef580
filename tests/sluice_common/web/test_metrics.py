"""GET /metrics on both services: request counts summed over the gunicorn workers, bounded
labels, the token, and the multiprocess directory's life (gunicorn_conf's hooks)."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
import timeit
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import requests
from flask import Flask
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from sluice_common.web import gunicorn_conf
from sluice_common.web.metrics import METHODS, install_request_metrics, record_prediction
from testkit.stack import LocalStack, post_csv
from tests.datasets import iris, to_csv

TOKEN = "metrics-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SERVICES = ("preprocess", "trainer")


def samples(text: str) -> list:
    """Every sample of a Prometheus text page."""
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def request_counts(text: str, service: str) -> Counter:
    """sluice_http_requests_total of `service` by (endpoint, method, status)."""
    counts = Counter()
    for s in samples(text):
        if s.name == "sluice_http_requests_total" and s.labels["service"] == service:
            key = (s.labels["endpoint"], s.labels["method"], s.labels["status"])
            counts[key] += int(s.value)
    return counts


def scrape(stack: LocalStack, service: str) -> str:
    response = requests.get(f"{stack.url(service)}/metrics", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def metrics_dir(stack: LocalStack, service: str) -> str:
    """The multiprocess directory the service's gunicorn master made (its pid in the name)."""
    found = glob.glob(
        os.path.join(tempfile.gettempdir(), f"sluice-prometheus-{service}-*-{stack.pid(service)}")
    )
    assert len(found) == 1, found
    return found[0]


def worker_pids(path: str) -> set[str]:
    """The pids of the workers that wrote counts into a multiprocess directory."""
    return {name.rsplit("_", 1)[1][:-3] for name in glob.glob(os.path.join(path, "counter_*.db"))}


@pytest.fixture(scope="module")
def metered(tmp_path_factory):
    """A stack with two workers per service and an API token."""
    local = LocalStack(
        home=str(tmp_path_factory.mktemp("sluice-metrics")),
        extra_env={
            "TRAINER_WORKERS": "2",
            "PREPROCESS_WORKERS": "2",
            "SLUICE_API_TOKEN": TOKEN,
            "PROMETHEUS_MULTIPROC_DIR": None,  # each master makes its own
        },
    )
    local.start()
    yield local
    local.stop()


@pytest.mark.stack
def test_counts_are_exact_per_endpoint_and_status_summed_over_workers(metered):
    before = {service: scrape(metered, service) for service in SERVICES}
    sent = {service: Counter() for service in SERVICES}
    # Health checks on fresh connections until both workers of each service have counted
    # some: the sums below then merge two processes.
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(20):
            for service in SERVICES:
                urls = [f"{metered.url(service)}/health"] * 16
                assert all(r.ok for r in pool.map(lambda u: requests.get(u, timeout=10), urls))
                sent[service][("/health", "GET", "200")] += 16
            if all(len(worker_pids(metrics_dir(metered, s))) == 2 for s in SERVICES):
                break
    for service in SERVICES:
        assert len(worker_pids(metrics_dir(metered, service))) == 2, service

    frame = iris()
    dev = post_csv(metered.analyze_url, to_csv(frame), headers=AUTH, phase="dev", model="metered")
    assert dev.status_code == 200, dev.text
    query = to_csv(frame.drop(columns="target").head(5))
    answers = [dev]
    for model in ("metered", "metered", "metered", "nobody"):
        answers.append(
            post_csv(metered.analyze_url, query, headers=AUTH, phase="prod", model=model)
        )
    assert [a.status_code for a in answers[:4]] == [200] * 4, answers[-2].text
    assert 400 <= answers[-1].status_code < 500, answers[-1].text  # no such model
    for answer in answers:  # each one the trainer's answer, relayed
        sent["preprocess"][("/analyze", "POST", str(answer.status_code))] += 1
        sent["trainer"][("/ml", "POST", str(answer.status_code))] += 1

    # Answers of the token check, the error handlers and routing, on the public entry only.
    no_token = post_csv(metered.analyze_url, query, phase="prod", model="metered")
    assert no_token.status_code == 401
    no_file = requests.post(metered.analyze_url, params={"phase": "prod"}, headers=AUTH, timeout=10)
    assert no_file.status_code == 400
    sent["preprocess"][("/analyze", "POST", "401")] += 1
    sent["preprocess"][("/analyze", "POST", "400")] += 1
    for service in SERVICES:
        url = metered.url(service)
        missing = requests.get(f"{url}/no-such-path/12345", headers=AUTH, timeout=10)
        assert missing.status_code == 404
        brewed = requests.request("BREW", f"{url}/health", timeout=10)
        assert brewed.status_code == 405
        refused = requests.get(f"{url}/metrics", timeout=10)
        assert refused.status_code == 401
        sent[service][("unmatched", "GET", "404")] += 1
        sent[service][("unmatched", "other", "405")] += 1
        sent[service][("/metrics", "GET", "401")] += 1
        sent[service][("/metrics", "GET", "200")] += 1  # the scrape of `before`

    for service in SERVICES:
        after = scrape(metered, service)
        delta = request_counts(after, service)
        delta.subtract(request_counts(before[service], service))
        if service == "trainer":
            # preprocess's /health asks the trainer's /livez, at most once a second per worker.
            probes = delta.pop(("/livez", "GET", "200"), 0)
            assert 1 <= probes <= sent["preprocess"][("/health", "GET", "200")], probes
        assert +delta == +sent[service], service
        labels = [value for s in samples(after) for value in s.labels.values()]
        assert not [value for value in labels if "no-such-path" in value or "12345" in value]
        methods = {s.labels["method"] for s in samples(after) if "method" in s.labels}
        assert methods <= METHODS | {"other"}


@pytest.mark.stack
def test_histogram_counts_equal_the_request_counts(metered):
    assert requests.get(f"{metered.url('trainer')}/health", timeout=10).ok
    for service in SERVICES:
        text = scrape(metered, service)
        by_route = Counter()
        for (endpoint, method, _status), count in request_counts(text, service).items():
            by_route[(endpoint, method)] += count
        timed = {
            (s.labels["endpoint"], s.labels["method"]): int(s.value)
            for s in samples(text)
            if s.name == "sluice_http_request_duration_seconds_count"
            and s.labels["service"] == service
        }
        assert by_route and timed == dict(by_route), service
        sums = [
            s.value
            for s in samples(text)
            if s.name == "sluice_http_request_duration_seconds_sum"
            and s.labels["service"] == service
            and s.labels["endpoint"] == "/health"
        ]
        assert sums and 0 < sums[0] < 60 * by_route[("/health", "GET")]


@pytest.mark.stack
def test_metrics_need_the_token_and_are_prometheus_text(metered):
    for service in SERVICES:
        url = f"{metered.url(service)}/metrics"
        refused = requests.get(url, timeout=10)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
        answer = requests.get(url, headers=AUTH, timeout=10)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == CONTENT_TYPE_LATEST
        assert "# TYPE sluice_http_requests_total counter" in answer.text


@pytest.mark.stack
def test_a_restart_starts_the_counts_from_zero(metered):
    old = {}
    for service in SERVICES:
        requests.get(f"{metered.url(service)}/no-such-path", headers=AUTH, timeout=10)
        assert request_counts(scrape(metered, service), service)[("unmatched", "GET", "404")]
        old[service] = metrics_dir(metered, service)
    for service in SERVICES:  # MLflow keeps running: start() starts only these again
        metered.kill(service)
    for service in SERVICES:
        assert not os.path.exists(old[service]), "on_exit left the master's directory"
    metered.start()
    for service in SERVICES:
        assert metrics_dir(metered, service) != old[service]
        counts = request_counts(scrape(metered, service), service)
        # Only start's health polls (and preprocess's questions to the trainer) so far.
        assert ("/health", "GET", "200") in counts, counts
        assert set(counts) <= {("/health", "GET", "200"), ("/livez", "GET", "200")}, counts


# Units: the hooks and helpers without a stack.


def fake_master(bind: str = "127.0.0.1:8080") -> SimpleNamespace:
    """What gunicorn's hooks read of the arbiter."""
    log = SimpleNamespace(info=lambda *args: None)
    return SimpleNamespace(
        proc_name="trainer:create_app()", cfg=SimpleNamespace(bind=[bind]), log=log
    )


@pytest.fixture
def master_env(monkeypatch):
    """No multiprocess directory set, and none made by this process, before and after."""
    # setenv first, so that teardown removes what on_starting sets (delenv of an unset
    # variable records nothing to undo, and the variable would leak into later tests' stacks).
    for name in (gunicorn_conf.MULTIPROC_ENV, gunicorn_conf.MADE_ENV):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(gunicorn_conf, "_made_dir", None)
    yield
    if gunicorn_conf._made_dir:
        gunicorn_conf.on_exit(None)


def test_on_starting_wipes_only_metric_files_of_an_operators_directory(tmp_path, monkeypatch):
    monkeypatch.setenv(gunicorn_conf.MADE_ENV, "")  # restored afterwards, whatever is set
    monkeypatch.setenv(gunicorn_conf.MULTIPROC_ENV, str(tmp_path))
    monkeypatch.setattr(gunicorn_conf, "_made_dir", None)
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "histogram_123.db").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("the operator's")
    gunicorn_conf.on_starting(fake_master())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    gunicorn_conf.on_exit(fake_master())
    assert (tmp_path / "notes.txt").exists()  # not ours to remove


def test_on_starting_makes_a_directory_per_master_and_on_exit_removes_it(master_env):
    gunicorn_conf.on_starting(fake_master("127.0.0.1:8123"))
    path = os.environ[gunicorn_conf.MULTIPROC_ENV]
    assert os.path.basename(path) == f"sluice-prometheus-trainer-8123-{os.getpid()}"
    assert os.path.isdir(path) and not os.listdir(path)
    assert os.stat(path).st_mode & 0o777 == 0o700
    other = fake_master("127.0.0.1:8124")
    assert gunicorn_conf.multiproc_dir_name(other) != os.path.basename(path)
    gunicorn_conf.on_exit(fake_master())
    assert not os.path.exists(path)


def test_on_starting_wipes_what_a_dead_master_of_the_same_name_left(master_env):
    server = fake_master("127.0.0.1:8125")
    base = tempfile.gettempdir()
    reused = os.path.join(base, gunicorn_conf.multiproc_dir_name(server))  # a reused pid
    os.makedirs(reused, exist_ok=True)
    open(os.path.join(reused, "counter_99.db"), "wb").close()
    stale = os.path.join(base, "sluice-prometheus-preprocess-9-999999999")  # no such pid
    os.makedirs(stale, exist_ok=True)
    gunicorn_conf.on_starting(server)
    assert os.environ[gunicorn_conf.MULTIPROC_ENV] == reused
    assert os.listdir(reused) == []
    assert not os.path.exists(stale)


def test_a_reexecuted_master_makes_its_own_directory(master_env):
    gunicorn_conf.on_starting(fake_master("127.0.0.1:8126"))
    parent = os.environ[gunicorn_conf.MULTIPROC_ENV]
    open(os.path.join(parent, "counter_1.db"), "wb").close()
    try:
        # SIGUSR2: a new master (another pid, so another name: another port stands in for it
        # here) inherits the environment, not the old one's module state.
        gunicorn_conf._made_dir = None
        gunicorn_conf.on_starting(fake_master("127.0.0.1:8127"))
        assert os.environ[gunicorn_conf.MULTIPROC_ENV] != parent
        assert os.listdir(parent) == ["counter_1.db"]  # the old master's workers count there
    finally:
        shutil.rmtree(parent)


def test_child_exit_drops_only_the_dead_workers_live_gauges(tmp_path, monkeypatch):
    monkeypatch.setenv(gunicorn_conf.MULTIPROC_ENV, str(tmp_path))
    for name in ("gauge_livesum_41.db", "counter_41.db", "gauge_livesum_42.db"):
        (tmp_path / name).write_bytes(b"")
    gunicorn_conf.child_exit(fake_master(), SimpleNamespace(pid=41))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_41.db", "gauge_livesum_42.db"]


def test_record_prediction_counts_rows_and_times_the_batch_cheaply():
    def value(name, **labels):
        return REGISTRY.get_sample_value(name, {"model": "unit", "version": "3", **labels}) or 0

    rows, batches = (
        value("sluice_rows_scored_total"),
        value("sluice_prediction_duration_seconds_count"),
    )
    fast = value("sluice_prediction_duration_seconds_bucket", le="0.001")
    record_prediction("unit", "3", 40, 0.0004)
    record_prediction("unit", "3", 2, 2.0)
    assert value("sluice_rows_scored_total") == rows + 42
    assert value("sluice_prediction_duration_seconds_count") == batches + 2
    assert value("sluice_prediction_duration_seconds_bucket", le="0.001") == fast + 1
    calls = 2000
    best = min(
        timeit.repeat(lambda: record_prediction("unit", "4", 1, 0.01), number=calls, repeat=5)
    )
    assert best / calls < 50e-6, f"{best / calls * 1e6:.1f} us a call"


def test_extra_collectors_are_scraped_and_a_failing_one_is_left_out():
    app = Flask("extras")
    install_request_metrics(app, "extras")

    def champion():
        family = GaugeMetricFamily(
            "sluice_champion_info", "The champion.", labels=["model", "version"]
        )
        family.add_metric(["unit", "7"], 1)
        yield family

    def broken():
        raise RuntimeError("database down")

    app.extensions["metrics_collectors"] += [broken, champion]
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200
    found = {(s.name, tuple(sorted(s.labels.items())), s.value) for s in samples(answer.text)}
    assert ("sluice_champion_info", (("model", "unit"), ("version", "7")), 1.0) in found


def test_request_metrics_cost_well_under_fifty_microseconds():
    def make(metered: bool) -> Flask:
        app = Flask("overhead")
        app.get("/health")(lambda: "ok")
        if metered:
            install_request_metrics(app, "overhead")
        return app

    clients = {metered: make(metered).test_client() for metered in (False, True)}
    best = {metered: float("inf") for metered in clients}
    calls = 500
    for _ in range(10):  # interleaved: a busy machine slows both alike
        for metered, client in clients.items():
            started = time.perf_counter()
            for _ in range(calls):
                client.get("/health")
            best[metered] = min(best[metered], (time.perf_counter() - started) / calls)
    assert best[True] - best[False] < 50e-6, best
