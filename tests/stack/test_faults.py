"""Faults, limits and auth, on a stack of this module's own (it stops and starts services)."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import requests
from mlflow import MlflowClient

from testkit.stack import LocalStack, post_csv
from tests.datasets import churn, iris, to_csv

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A stack with an API token and a 1 MB upload limit."""
    local = LocalStack(
        home=str(tmp_path_factory.mktemp("sluice-faults")),
        extra_env={"SLUICE_API_TOKEN": TOKEN, "MAX_UPLOAD_MB": "1"},
    )
    local.start()
    yield local
    local.stop()


def dev(stack, name, frame, **params):
    response = post_csv(
        stack.analyze_url, to_csv(frame), phase="dev", model=name, headers=AUTH, **params
    )
    assert response.status_code == 200, response.text
    return response.json()


def prod(stack, name, frame):
    return post_csv(stack.analyze_url, to_csv(frame), phase="prod", model=name, headers=AUTH)


def champion_serving(stack, name):
    """Train iris as `name`; the query rows and the prod answer the champion gives them."""
    dev(stack, name, iris())
    query = iris().drop(columns="target").head(5)
    return query, prod(stack, name, query).json()


def wait_healthy(stack, service, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.healthy(service):
            return
        time.sleep(0.2)
    raise AssertionError(f"{service} did not come back")


@pytest.mark.parametrize("service", ["preprocess", "trainer"])
def test_token_is_required_except_for_health(guarded, service):
    url = guarded.analyze_url if service == "preprocess" else guarded.ml_url
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = post_csv(url, to_csv(iris()), phase="prod", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert TOKEN not in response.text
    for probe in ("/health", "/livez"):
        assert requests.get(f"{guarded.url(service)}{probe}", timeout=5).status_code == 200


def test_the_console_asks_for_the_token_once_and_every_worker_knows_the_cookie(guarded):
    base = guarded.url("preprocess")
    browser = requests.Session()
    refused = browser.get(f"{base}/console/models", allow_redirects=False, timeout=10)
    assert refused.status_code == 303 and "/console/login" in refused.headers["Location"]
    form = browser.get(f"{base}/console/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form).group(1)
    signed = browser.post(
        f"{base}/console/login",
        data={"token": TOKEN, "csrf_token": csrf},
        allow_redirects=False,
        timeout=10,
    )
    assert signed.status_code == 303 and TOKEN not in signed.headers["Set-Cookie"]
    # Two preprocess workers, no shared session store: each checks the cookie's MAC.
    for _ in range(10):
        assert browser.get(f"{base}/console/jobs", timeout=10).status_code == 200
    assert browser.get(f"{base}/jobs", timeout=10).status_code == 401  # the API wants Bearer


def test_upload_over_the_limit_is_413(guarded):
    big = to_csv(churn(30000))
    assert len(big) > 1024 * 1024
    response = post_csv(guarded.analyze_url, big, phase="dev", headers=AUTH)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "upload_too_large" and "MAX_UPLOAD_MB" in error["message"]


def test_restart_keeps_every_champion(guarded):
    frames = {"restart-a": churn(1500), "restart-b": iris()}
    before = {}
    for name, frame in frames.items():
        dev(guarded, name, frame)
        query = frame.iloc[:, :-1].head(20)
        before[name] = prod(guarded, name, query).json()
    guarded.stop()
    assert all(guarded.pid(s) is None for s in ("mlflow", "trainer", "preprocess"))
    guarded.start()
    for name, frame in frames.items():
        after = prod(guarded, name, frame.iloc[:, :-1].head(20)).json()
        assert after["version"] == before[name]["version"]
        assert after["predictions"] == before[name]["predictions"]


def test_trainer_down_is_a_quick_503_and_recovers(guarded):
    name = "trainer-down"
    dev(guarded, name, iris())
    query = iris().drop(columns="target").head(5)
    guarded.kill("trainer")
    started = time.monotonic()
    response = prod(guarded, name, query)
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "trainer_unavailable"
    # Alive but not ready: it serves nothing without the trainer (each worker keeps its
    # probe of the trainer for a second).
    assert requests.get(f"{guarded.url('preprocess')}/livez", timeout=5).status_code == 200
    deadline = time.monotonic() + 5
    while (ready := requests.get(f"{guarded.url('preprocess')}/health", timeout=5)).ok:
        assert time.monotonic() < deadline, "preprocess said ready without a trainer"
        time.sleep(0.1)
    assert ready.status_code == 503 and ready.json()["status"] == "degraded"
    assert ready.json()["trainer"] == {"reachable": False}
    guarded.start()  # starts only what is missing
    wait_healthy(guarded, "trainer")
    assert prod(guarded, name, query).status_code == 200


def test_mlflow_down_dev_is_503_prod_keeps_serving(guarded):
    name = "mlflow-down"
    query, expected = champion_serving(guarded, name)
    guarded.kill("mlflow")
    try:
        answer = prod(guarded, name, query)
        assert answer.status_code == 200 and answer.json()["predictions"] == expected["predictions"]
        failed = post_csv(
            guarded.analyze_url, to_csv(iris()), phase="dev", model=name, headers=AUTH
        )
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "tracking_unavailable"
        health = requests.get(f"{guarded.url('trainer')}/health", timeout=10).json()
        assert health["mlflow"]["reachable"] is False
    finally:
        guarded.start()
    wait_healthy(guarded, "mlflow")
    client = MlflowClient(guarded.tracking_uri)
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    again = dev(guarded, name, iris())
    assert again["version"] == "2"
    assert prod(guarded, name, query).status_code == 200


def test_hung_mlflow_fails_dev_fast_and_prod_serves_at_once(guarded):
    # A frozen tracking server (not a dead one: connections are accepted, never answered).
    name = "mlflow-hung"
    query, expected = champion_serving(guarded, name)
    guarded.kill("trainer")  # restarted below: no champion in memory, only its local copy
    mlflow_group = guarded.pid("mlflow")
    os.killpg(mlflow_group, signal.SIGSTOP)
    try:
        guarded.start()  # starts the trainer only
        wait_healthy(guarded, "trainer")
        started = time.monotonic()
        answer = prod(guarded, name, query)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected["predictions"]
        # Its lineage too, from the last known champion: prod reads nothing from MLflow.
        lineage = {k: answer.json()[k] for k in ("version", "run_id", "digest")}
        assert lineage == {k: expected[k] for k in lineage} and all(lineage.values())
        assert time.monotonic() - started < 3, "prod waited on the hung tracking server"
        started = time.monotonic()
        failed = post_csv(
            guarded.analyze_url, to_csv(iris()), phase="dev", model=name, headers=AUTH
        )
        assert (
            failed.status_code == 503 and failed.json()["error"]["code"] == "tracking_unavailable"
        )
        assert time.monotonic() - started < 10, "dev waited on the hung tracking server"
        # Requests that would need MLflow (models this trainer never served) fail at once,
        # all together, instead of holding threads while the served one waits behind them.
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=10) as pool:
            ghosts = list(pool.map(lambda i: prod(guarded, f"ghost-{i}", query), range(10)))
            served = prod(guarded, name, query)
        assert {g.status_code for g in ghosts} == {503}
        assert served.status_code == 200
        assert time.monotonic() - started < 6, "requests piled up behind the hung server"
    finally:
        os.killpg(mlflow_group, signal.SIGCONT)
    wait_healthy(guarded, "mlflow")
    assert dev(guarded, name, iris())["version"] == "2"


def test_model_routes_are_relayed_under_the_api_token(guarded):
    name = "token-models"
    dev(guarded, name, iris())
    base = guarded.url("preprocess")
    body = {"version": "1", "reason": "again"}
    for method, path in [("GET", "/models"), ("GET", f"/models/{name}"), ("POST", "/champion")]:
        url = f"{base}/models/{name}/champion" if path == "/champion" else f"{base}{path}"
        refused = requests.request(method, url, json=body, timeout=30)
        assert refused.status_code == 401, refused.text
        allowed = requests.request(method, url, json=body, headers=AUTH, timeout=30)
        assert allowed.status_code == 200, allowed.text


def test_an_arrow_body_with_more_rows_than_the_limit_allows_is_refused_before_decoding(guarded):
    # MAX_UPLOAD_MB=1 here: no CSV under it has over 524,288 rows; Arrow of empty cells
    # carries 600,000 in 2.4 MB.
    table = pa.table({"x": pa.array([""] * 600_000, pa.string())})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    response = requests.post(
        guarded.ml_url,
        params={"phase": "prod", "model": "any"},
        data=sink.getvalue().to_pybytes(),
        headers={
            **AUTH,
            "Content-Type": "application/vnd.apache.arrow.stream",
            "X-Sluice-Internal": open(os.path.join(guarded.home, "internal.token")).read().strip(),
        },
        timeout=30,
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "upload_too_large"


def test_an_upload_just_under_the_limit_passes_the_internal_hop(guarded):
    # One-character and empty cells: Arrow of this CSV is ~4x its size, and the trainer must
    # still take what preprocess accepted.
    rng = np.random.default_rng(9)
    columns = {f"c{i}": rng.integers(0, 10, 27_000).astype(str) for i in range(19)}
    frame = pd.DataFrame(columns)
    frame.loc[rng.random(27_000) < 0.3, "c0"] = ""
    # A label with signal: a first version becomes the champion only when it has skill.
    frame["label"] = np.where(frame["c1"].astype(int) > 4, "a", "b")
    dev(guarded, "edge", frame.head(400))
    query = to_csv(frame.drop(columns="label"))
    assert 0.9 * 2**20 < len(query) < 2**20, len(query)
    answer = prod(guarded, "edge", pd.read_csv(io.BytesIO(query), dtype=str, keep_default_na=False))
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["n_rows"] == 27_000


def test_a_trainer_without_local_copies_verifies_and_serves_genuine_versions(guarded):
    # A new replica, or a lost state volume: the champion is downloaded and verified afresh.
    name = "fresh-copies"
    query, expected = champion_serving(guarded, name)
    guarded.kill("trainer")
    models = os.path.join(guarded.home, "trainer", "models")
    shutil.rmtree(models)
    guarded.start()
    wait_healthy(guarded, "trainer")
    answer = prod(guarded, name, query)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == expected["predictions"]
    health = requests.get(f"{guarded.url('trainer')}/health", timeout=5).json()
    assert health["untrusted_versions"] == []
