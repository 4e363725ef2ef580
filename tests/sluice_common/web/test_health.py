"""Readiness (/health) says whether a service can serve, liveness (/livez) only that it is up.

The probe of the trainer (preprocess/health.py) against scripted servers: cached, bounded when
the trainer hangs. Then a stack of this module's own (it kills and stops its services): with
an API token, so the probes are seen to need none.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from preprocess import health
from testkit.stack import LocalStack

TOKEN = "health-test-token"


class Trainer(ThreadingHTTPServer):
    """A stand-in trainer on loopback: answers GETs with `statuses` per path and counts them."""

    daemon_threads = True

    def __init__(self, statuses: dict[str, int]):
        self.statuses, self.asked = statuses, []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                self.server.asked.append(self.path)
                status = self.server.statuses.get(self.path, 404)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def trainer():
    server = Trainer({"/livez": 200})
    yield server
    server.shutdown()
    server.server_close()


def test_a_flood_of_health_calls_asks_the_trainer_about_once_a_second(trainer):
    def flood(_):
        states = []
        while time.monotonic() - started < 2.5:
            states.append(health.trainer_state(trainer.url))
            time.sleep(0.001)
        return states

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        states = [state for chunk in pool.map(flood, range(16)) for state in chunk]
    elapsed = time.monotonic() - started
    assert len(states) > 1000 and all(state.reachable for state in states)
    assert set(trainer.asked) == {"/livez"}
    # Asked again once the answer is FRESH_SECONDS old, and not more often.
    assert 2 <= len(trainer.asked) <= elapsed / health.FRESH_SECONDS + 1, (trainer.asked, elapsed)


def test_a_trainer_without_livez_is_asked_its_health_and_an_error_answer_is_a_reason():
    old = Trainer({"/health": 200})
    failing = Trainer({"/livez": 500})
    try:
        assert health.probe(old.url).reachable and old.asked == ["/livez", "/health"]
        state = health.probe(failing.url)
        assert (
            not state.reachable
            and state.reason == f"the trainer at {failing.url} answered HTTP 500"
        )
    finally:
        for server in (old, failing):
            server.shutdown()
            server.server_close()


def test_a_hung_trainer_holds_concurrent_callers_one_probe_long():
    with socket.socket() as listener:  # accepts connections (the kernel does), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            states = list(pool.map(lambda _: health.trainer_state(url), range(8)))
        elapsed = time.monotonic() - started
    assert {state.reason for state in states} == {
        f"the trainer at {url} did not answer within {health.PROBE_SECONDS:g} s"
    }
    assert health.PROBE_SECONDS <= elapsed < health.PROBE_SECONDS + 1.5, elapsed


# --- on a stack ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    local = LocalStack(
        home=str(tmp_path_factory.mktemp("sluice-health")),
        extra_env={"SLUICE_API_TOKEN": TOKEN},
    )
    local.start()
    yield local
    local.stop()


def get(stack, service, path):
    started = time.monotonic()
    answer = requests.get(f"{stack.url(service)}{path}", timeout=10)
    return answer, time.monotonic() - started


def wait_for(stack, status: int, timeout: float = 10):
    """Preprocess's /health once it answers `status` (each worker keeps its probe ~1 s)."""
    deadline = time.monotonic() + timeout
    while True:
        answer, _ = get(stack, "preprocess", "/health")
        if answer.status_code == status or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


@pytest.mark.stack
def test_probes_need_no_token_and_say_ok_when_all_is_up(own):
    refused, _ = get(own, "preprocess", "/jobs")
    assert refused.status_code == 401  # the token is on
    answer, _ = get(own, "preprocess", "/health")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok",
        "service": "preprocess",
        "trainer": {"reachable": True},
    }
    for service in ("preprocess", "trainer"):
        alive, _ = get(own, service, "/livez")
        assert alive.status_code == 200
        assert alive.json() == {"status": "alive", "service": service}


@pytest.mark.stack
def test_preprocess_is_not_ready_while_the_trainer_is_down_and_ready_once_it_is_back(own):
    own.kill("trainer")
    try:
        answer = wait_for(own, 503, timeout=5)
        assert answer.status_code == 503
        body = answer.json()
        assert body["status"] == "degraded" and body["trainer"] == {"reachable": False}
        assert body["reason"].startswith(f"the trainer at {own.url('trainer')} refused")
        alive, seconds = get(own, "preprocess", "/livez")
        assert alive.status_code == 200 and alive.json()["status"] == "alive" and seconds < 0.5
        # Every worker says so: none answers "ok" from a probe older than FRESH_SECONDS.
        time.sleep(health.FRESH_SECONDS)
        assert {get(own, "preprocess", "/health")[0].status_code for _ in range(20)} == {503}
    finally:
        own.start()  # starts the trainer only; returns once it answers /health
    assert wait_for(own, 200, timeout=5).json()["status"] == "ok"


@pytest.mark.stack
def test_the_trainer_is_alive_while_mlflow_hangs(own):
    group = own.pid("mlflow")
    os.killpg(group, signal.SIGSTOP)
    try:
        alive, seconds = get(own, "trainer", "/livez")
        assert alive.status_code == 200 and seconds < 0.5, seconds
        ready, _ = get(own, "trainer", "/health")  # the trainer still serves prod
        assert ready.status_code == 200 and ready.json()["mlflow"]["reachable"] is False
        assert wait_for(own, 200).json()["trainer"] == {"reachable": True}
    finally:
        os.killpg(group, signal.SIGCONT)
