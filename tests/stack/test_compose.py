"""The Compose stack end to end: build, start, train, predict, restart, tear down.

Runs only where a Docker engine answers. The stack gets a project name of its own and free
loopback ports, so it never collides with a stack someone else runs, and is always removed with
its volumes (`down -v`) when the module finishes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time

import pytest
import requests
import yaml

from testkit.servers import free_port
from testkit.stack import ROOT, post_csv
from tests.datasets import churn, to_csv

COMPOSE_SH = os.path.join(ROOT, "scripts", "compose.sh")
BACKUP = os.path.join(ROOT, "scripts", "backup.sh")
RESTORE = os.path.join(ROOT, "scripts", "restore.sh")
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

    def __init__(self, profiles: str = "") -> None:
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
            COMPOSE_PROFILES=profiles,
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

    def describe(self) -> dict:
        """What the tracking server's stores hold (tracking/inventory.py describe)."""
        done = self.compose(
            "exec", "-T", "mlflow", "python", "-m", "tracking.inventory", "describe"
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def artifacts(self) -> dict:
        """Files and bytes at the artifacts destination, and whether it is S3 or a directory."""
        done = self.compose(
            "exec", "-T", "mlflow", "python", "-m", "tracking.artifacts_io", "count"
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stderr.strip().splitlines()[-1])

    def prod(self, queries, model: str = MODEL) -> dict:
        answer = post_csv(
            f"{self.url('preprocess')}/analyze",
            to_csv(queries),
            phase="prod",
            model=model,
            proba="true",
            timeout=300,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    def monitored_rows(self, model: str = MODEL) -> int:
        answer = requests.get(
            f"{self.url('preprocess')}/monitoring", params={"model": model}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["rows_scored"]

    def reaches(self, service: str, host: str, port: int) -> bool:
        """Whether a TCP connection from the service's container to host:port succeeds."""
        probe = (
            "import socket, sys\n"
            "try:\n"
            f"    socket.create_connection(({host!r}, {port}), timeout=5).close()\n"
            "except OSError:\n"
            "    sys.exit(1)\n"
        )
        done = self.compose("exec", "-T", service, "python", "-c", probe)
        return done.returncode == 0

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
    frame = churn(1500)  # its signal shows beyond the noise from ~1,200 rows
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


def test_the_image_serves_the_console_and_the_api_description(compose_stack, trained):
    """The templates, vendored assets and Swagger UI files are in preprocess's image (a
    package-data slip would only show here), and the model page shows the trained model."""
    base = compose_stack.url("preprocess")
    home = requests.get(f"{base}/", timeout=30)
    assert home.status_code == 200 and "text/html" in home.headers["Content-Type"]
    assert "default-src 'none'" in home.headers["Content-Security-Policy"]
    assets = re.findall(r'(?:href|src)="(/console/static/[^"]+)"', home.text)
    assert assets, home.text[:500]
    for asset in assets:
        assert requests.get(f"{base}{asset}", timeout=30).status_code == 200, asset
    page = requests.get(f"{base}/console/models/{MODEL}", timeout=30)
    assert page.status_code == 200 and "champion" in page.text
    document = requests.get(f"{base}/openapi.json", timeout=30)
    assert document.status_code == 200 and document.json()["openapi"].startswith("3.1")
    docs = requests.get(f"{base}/docs", timeout=30)
    assert docs.status_code == 200
    scripts = re.findall(r'src="(/docs/[^"]+\.js)"', docs.text)
    assert len(scripts) >= 2, docs.text[:500]  # Swagger UI's bundle and our init script
    for script in scripts:
        assert requests.get(f"{base}{script}", timeout=30).status_code == 200, script


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


# -- production stores: PostgreSQL by default, the s3 profile, down/up, backup and restore ----


def test_mlflow_and_monitoring_live_in_the_db_service(compose_stack, trained):
    facts = compose_stack.describe()
    assert facts["backend"] == "postgresql" and facts["bundled_db"] is True, facts
    assert facts["aliases"] == {f"{MODEL}@champion": trained["prod"]["version"]}
    assert facts["runs"] >= 1 and facts["model_versions"] >= 1
    assert facts["monitoring_in_backend"] is True and facts["monitoring_batches"] >= 1
    assert facts["monitoring_schema"] == 2
    # Nothing went to SQLite, and the database is not published outside the Compose network.
    for service, path in (
        ("mlflow", "/data/mlflow.db"),
        ("trainer", "/data/trainer/monitoring.db"),
    ):
        done = compose_stack.compose("exec", "-T", service, "test", "-e", path)
        assert done.returncode == 1, f"{path} exists in {service}"
    published = compose_stack.compose("port", "db", "5432")
    assert not published.stdout.strip(), published.stdout
    # The public entry is not on the database's network; MLflow and the trainer are.
    assert not compose_stack.reaches("preprocess", "db", 5432)
    assert compose_stack.reaches("trainer", "db", 5432)
    assert compose_stack.artifacts()["destination"] == "directory"


@pytest.fixture(scope="module")
def backup(compose_stack, trained, tmp_path_factory):
    """A backup of the running default stack, after some prod traffic."""
    source = compose_stack.prod(trained["queries"])
    rows = compose_stack.monitored_rows()
    directory = tmp_path_factory.mktemp("compose-backup") / "backup"
    done = subprocess.run(
        [BACKUP, "--docker", str(directory)],
        env=compose_stack.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with open(directory / "manifest.json", encoding="utf-8") as handle:
        manifest = json.load(handle)
    return {"dir": str(directory), "manifest": manifest, "prod": source, "rows": rows}


def test_a_backup_of_the_default_stack_is_one_dump_plus_the_artifacts(backup):
    manifest = backup["manifest"]
    assert manifest["mode"] == "docker" and manifest["database"]["kind"] == "postgresql"
    assert set(manifest["files"]) == {"database.dump", "artifacts.tar", "signing.key"}
    assert manifest["stack"]["monitoring_batches"] >= 2
    with open(os.path.join(backup["dir"], "database.dump"), "rb") as handle:
        assert handle.read(5) == b"PGDMP"  # pg_dump's custom format


def test_a_backup_restores_into_a_new_project_on_s3_and_serves_the_same(backup, trained):
    """Restore into a new project with the s3 profile: the artifacts go from the first
    stack's volume into the bucket; the same champion answers the same; then the s3 stack
    trains a model of its own, and both survive down and up."""
    target = ComposeStack(profiles="s3")
    try:
        done = subprocess.run(
            [RESTORE, "--docker", backup["dir"]],
            env=target.env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "it matches the manifest" in done.stdout
        stored = target.artifacts()
        assert stored["destination"] == "s3", stored
        # Only MLflow reaches the S3 server (its gRPC port takes no credentials).
        assert target.reaches("mlflow", "s3", 8333)
        for service in ("trainer", "preprocess"):
            assert not target.reaches(service, "s3", 8333), f"{service} reaches s3"
        assert stored["files"] == backup["manifest"]["artifacts"]["files"]
        restored = target.prod(trained["queries"])
        assert restored["version"] == backup["prod"]["version"]
        assert restored["predictions"] == backup["prod"]["predictions"]
        assert restored["probabilities"] == backup["prod"]["probabilities"]
        assert target.monitored_rows() >= backup["rows"] + len(trained["queries"])

        frame = churn(seed=11)
        dev = post_csv(
            f"{target.url('preprocess')}/analyze",
            to_csv(frame),
            phase="dev",
            model="fresh",
            timeout=600,
        )
        assert dev.status_code == 200, dev.text
        fresh = target.prod(frame.drop(columns=[TARGET]), model="fresh")
        assert target.artifacts()["files"] > stored["files"]  # the new version is in the bucket

        down = target.script("down", timeout=300)
        assert down.returncode == 0, down.stderr
        up = target.script("up", timeout=900)
        assert up.returncode == 0, up.stdout + up.stderr
        assert target.prod(trained["queries"])["predictions"] == backup["prod"]["predictions"]
        again = target.prod(frame.drop(columns=[TARGET]), model="fresh")
        assert again["predictions"] == fresh["predictions"]
        assert again["probabilities"] == fresh["probabilities"]
    finally:
        target.down()


def test_down_and_up_keep_models_and_monitoring(compose_stack, trained):
    before = compose_stack.prod(trained["queries"])
    rows = compose_stack.monitored_rows()
    down = compose_stack.script("down", timeout=300)
    assert down.returncode == 0, down.stderr
    assert not compose_stack.healthy("preprocess")
    up = compose_stack.script("up", timeout=900)
    assert up.returncode == 0, up.stdout + up.stderr
    after = compose_stack.prod(trained["queries"])
    assert after["version"] == before["version"]
    assert after["predictions"] == before["predictions"]
    assert after["probabilities"] == before["probabilities"]
    assert compose_stack.monitored_rows() >= rows + len(trained["queries"])


# -- the dask profile: checked on `config` only (no stack is started) ----------------------


def _networks(service: dict) -> set[str]:
    """A service's networks from `config` (a list in Compose v1, a mapping in v2)."""
    return set(service.get("networks") or {"default"})


def _mounts(service: dict) -> dict[str, str]:
    """A service's mounts from `config`, target -> source (short syntax in v1, long in v2)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        mounts[target] = source
    return mounts


def test_the_dask_profile_is_private_to_the_trainer_and_shares_its_image_and_data(tmp_path):
    stack = ComposeStack(profiles="dask")
    stack.env.update(
        DASK_WORKERS="3",
        DASK_WORKER_MEMORY="3GiB",
        DASK_WORKER_THREADS="2",
        SLUICE_DATA_DIR=str(tmp_path),
        SLUICE_DATA_BUCKETS="lake",
    )
    done = stack.compose("config", timeout=60)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    scheduler, worker, trainer = (
        services[name] for name in ("dask-scheduler", "dask-worker", "trainer")
    )
    for service in (scheduler, worker):
        assert service["profiles"] == ["dask"]  # nothing of it starts without the profile
        assert service["build"] == trainer["build"] and service["image"] == trainer["image"]
        assert _networks(service) == {"dask"}
        assert not service.get("ports")
    # An unauthenticated scheduler runs any code it is sent: only the trainer reaches it.
    joined = {name for name, service in services.items() if "dask" in _networks(service)}
    assert joined == {"dask-scheduler", "dask-worker", "trainer"}
    assert worker["deploy"]["replicas"] == 3
    command = " ".join(worker["command"])
    assert "tcp://dask-scheduler:8786" in command
    assert "--memory-limit 3GiB" in command and "--nthreads 2" in command
    for service in (trainer, worker):
        assert _mounts(service)["/srv/sluice-data"] == str(tmp_path)
        env = service["environment"]
        assert env["SLUICE_DATA_ROOT"] == "/srv/sluice-data"
        assert env["SLUICE_DATA_BUCKETS"] == "lake"
        assert {"SLUICE_DATA_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
    assert trainer["environment"]["SLUICE_COMPOSE_PROFILES"] == "dask"
    assert trainer["environment"]["DASK_SCHEDULER_ADDRESS"] in ("", None)
