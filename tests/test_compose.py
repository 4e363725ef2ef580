"""The Compose stack end to end: build, start, train, predict, restart, tear down.

Runs only where a Docker engine answers. The stack gets a project name of its own and free
loopback ports, so it never collides with a stack someone else runs, and is always removed with
its volumes (`down -v`) when the module finishes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time

import pytest
import requests

from tests.datasets import churn, to_csv
from tests.stack import ROOT, free_port, post_csv

COMPOSE_SH = os.path.join(ROOT, "scripts", "compose.sh")
UI_FILE = os.path.join(ROOT, "docker-compose.mlflow-ui.yml")
COMPOSE_FILE = os.path.join(ROOT, "docker-compose.yml")
SERVICES = ("mlflow", "trainer", "preprocess")
MODEL = "churn"
TARGET = "churned"


def _docker_problem() -> str | None:
    """Why no Docker engine can be used here, or None when one answers."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 20 s"
    if done.returncode != 0:
        return f"no Docker engine answers `docker info`: {done.stderr.strip()[-300:]}"
    return None


DOCKER_PROBLEM = _docker_problem()
pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(DOCKER_PROBLEM is not None, reason=f"needs Docker: {DOCKER_PROBLEM}"),
]


def _compose_command() -> list[str]:
    """`docker compose` (v2) when it works, else `docker-compose` (v1), like scripts/compose.sh."""
    try:
        v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20)
        if v2.returncode == 0:
            return ["docker", "compose"]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return ["docker-compose"]


class ComposeStack:
    """One Compose project on free loopback ports, driven through scripts/compose.sh."""

    def __init__(self) -> None:
        self.project = f"sluice-test-{secrets.token_hex(4)}"
        self.ports = {name: free_port() for name in SERVICES}
        self.command = [*_compose_command(), "-f", COMPOSE_FILE, "-p", self.project]
        self.env = dict(os.environ)
        self.env.update(
            COMPOSE_PROJECT_NAME=self.project,
            BIND_HOST="127.0.0.1",
            MLFLOW_PORT=str(self.ports["mlflow"]),
            TRAINER_PORT=str(self.ports["trainer"]),
            PREPROCESS_PORT=str(self.ports["preprocess"]),
            CHAMPION_POLL_SECONDS="1",
            SLUICE_API_TOKEN="",
            START_TIMEOUT="300",
        )
        # The stack's MLflow password is the one it generates on first start (the first-start
        # story of a plain `up`), not the test session's.
        self.env.pop("MLFLOW_TRACKING_PASSWORD", None)

    def url(self, service: str) -> str:
        """The service's base URL on its published port."""
        return f"http://127.0.0.1:{self.ports[service]}"

    def script(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        """Run scripts/compose.sh for this project."""
        return subprocess.run(
            [COMPOSE_SH, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def compose(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a Compose command for this project."""
        return subprocess.run(
            [*self.command, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def container(self, service: str) -> str:
        """The id of the service's container."""
        done = self.compose("ps", "-q", service)
        assert done.returncode == 0 and done.stdout.strip(), done.stderr
        return done.stdout.split()[0]

    def healthy(self, service: str) -> bool:
        """Whether the service's /health answers 200 on its published port."""
        try:
            return requests.get(f"{self.url(service)}/health", timeout=2).ok
        except requests.RequestException:
            return False

    def down(self) -> None:
        """Remove the containers, the network and the volumes, whatever state they are in."""
        done = self.script("down", "--purge", timeout=180)
        if done.returncode != 0:  # fall back to Compose itself so nothing is left behind
            self.compose("down", "-v", "--remove-orphans", timeout=180)


@pytest.fixture(scope="module")
def compose_stack():
    """The stack, built and healthy; always torn down with its volumes."""
    stack = ComposeStack()
    try:
        # Cold image builds take a few minutes on a small machine; warm ones seconds.
        done = stack.script("up", timeout=1200)
        assert done.returncode == 0, f"compose.sh up failed:\n{done.stdout}\n{done.stderr}"
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def trained(compose_stack):
    """The churn model trained through preprocess (dev), then the prod answer for the queries."""
    frame = churn()
    dev = post_csv(
        f"{compose_stack.url('preprocess')}/analyze",
        to_csv(frame),
        phase="dev",
        model=MODEL,
        timeout=600,
    )
    assert dev.status_code == 200, dev.text
    queries = frame.drop(columns=[TARGET])
    prod = post_csv(
        f"{compose_stack.url('preprocess')}/analyze",
        to_csv(queries),
        phase="prod",
        model=MODEL,
        timeout=300,
    )
    assert prod.status_code == 200, prod.text
    return {"dev": dev.json(), "prod": prod.json(), "queries": queries}


def test_dev_then_prod_through_preprocess_scores_every_row(trained):
    dev, prod = trained["dev"], trained["prod"]
    assert dev["version"] and dev["promoted"] is True
    assert prod["version"] == dev["version"]
    assert len(prod["predictions"]) == len(trained["queries"])
    assert set(prod["predictions"]) <= {"yes", "no"}


def test_containers_run_as_non_root(compose_stack):
    for service in SERVICES:
        done = subprocess.run(
            ["docker", "exec", compose_stack.container(service), "id", "-u"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() != "0", f"{service} runs as root"


def test_trainer_restart_keeps_the_champion(compose_stack, trained):
    done = compose_stack.compose("restart", "trainer", timeout=120)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 180
    while not compose_stack.healthy("trainer"):
        assert time.monotonic() < deadline, "trainer did not come back within 180 s"
        time.sleep(1)
    prod = post_csv(
        f"{compose_stack.url('preprocess')}/analyze",
        to_csv(trained["queries"]),
        phase="prod",
        model=MODEL,
        timeout=300,
    )
    assert prod.status_code == 200, prod.text
    assert prod.json()["version"] == trained["prod"]["version"]
    assert prod.json()["predictions"] == trained["prod"]["predictions"]


def test_mlflow_is_not_published_but_the_stack_reaches_it(compose_stack, trained):
    # Whoever reaches MLflow can register versions and move aliases: by default only the
    # stack's own network can, and there only with the account the trainer has.
    with pytest.raises(requests.ConnectionError):
        requests.get(compose_stack.url("mlflow"), timeout=5)
    probe = f"""
import base64, json, os, urllib.error, urllib.request
url = 'http://mlflow:5000/api/2.0/mlflow/registered-models/get?name={MODEL}'
try:
    urllib.request.urlopen(url, timeout=10)
    print('open')
except urllib.error.HTTPError as err:
    print(err.code)
with open(os.environ['MLFLOW_TRACKING_PASSWORD_FILE']) as handle:
    account = os.environ['MLFLOW_TRACKING_USERNAME'] + ':' + handle.read().strip()
request = urllib.request.Request(url, headers={{
    'Authorization': 'Basic ' + base64.b64encode(account.encode()).decode()}})
print(json.load(urllib.request.urlopen(request, timeout=10))['registered_model']['name'])
"""
    done = subprocess.run(
        ["docker", "exec", compose_stack.container("trainer"), "python", "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["401", MODEL]


def test_the_mlflow_ui_is_published_only_on_request(compose_stack):
    base = compose_stack.compose("config", timeout=60)
    assert base.returncode == 0, base.stderr
    opted = subprocess.run(
        [*compose_stack.command[:-2], "-f", UI_FILE, *compose_stack.command[-2:], "config"],
        env=compose_stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert opted.returncode == 0, opted.stderr
    published = f"{compose_stack.ports['mlflow']}"  # a free port of its own: appears nowhere else
    assert published not in base.stdout
    assert published in opted.stdout
