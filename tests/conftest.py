"""Fixtures: one real local stack per test session, on free loopback ports; the session's
PostgreSQL and S3 servers and a browser per module (testkit's throwaway servers)."""

from __future__ import annotations

import os
import pathlib
import secrets

import pytest

from testkit import browser as browsers
from testkit import durations
from testkit import postgres as postgres_server
from testkit import s3 as s3_server
from testkit.stack import LocalStack

postgres = postgres_server.postgres_fixture  # `postgres`: the session's PostgreSQL server
s3 = s3_server.s3_fixture  # `s3`: the session's S3 server

# MLflow requires an account. The session's stacks inherit this one, so the tests' own MLflow
# clients (the insider of the signing tests, alias moves) sign in like the trainer does; the
# generated-password path has tests of its own (test_tracking_auth.py, test_compose.py).
os.environ["MLFLOW_TRACKING_USERNAME"] = "sluice"
os.environ["MLFLOW_TRACKING_PASSWORD"] = secrets.token_urlsafe(24)
# The tests' throwaway stacks skip the trainer's warm-up (~5 s of CPU per worker at every start,
# an optimisation of the first answer only); the session's stack keeps the default, so the
# warmed path is tested too (and the bench, which does not read this file, keeps it).
os.environ["TRAINER_WARM_UP"] = "0"


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The running stack: real `mlflow server`, trainer and preprocess under gunicorn."""
    # Two trainer workers (the default is one): tests see that champions stay coherent
    # across worker processes.
    local = LocalStack(
        home=str(tmp_path_factory.mktemp("sluice-home")),
        extra_env={
            "TRAINER_WORKERS": "2",
            "TRAINER_WARM_UP": "1",  # the default, which the throwaway stacks skip
            # Data by reference (tests/stack/test_jobs.py) reads and writes under this directory.
            "SLUICE_DATA_ROOT": str(tmp_path_factory.mktemp("data-root")),
        },
    )
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def browser():
    """A headless chromium for this test module; skips, saying why, when it is not installed."""
    reason = browsers.missing()
    if reason:
        pytest.skip(reason)
    with browsers.chrome() as driver:
        yield driver


@pytest.fixture
def model_name(request) -> str:
    """A model name of this test's own, so tests never share champions."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")
    return name[:60].strip("-_.")


END_TO_END = pathlib.Path(__file__).parent / "stack"


def pytest_collection_modifyitems(config, items):
    """Mark `stack` what runs through a whole local stack (the session's `stack` fixture, or
    tests/stack/), and `quick` everything else that needs no Docker: unit tests and tests of one
    service (PostgreSQL, S3, a Dask cluster, a browser), the inner loop's `-m quick`."""
    # The slowest modules first (testkit/durations.py), each module's tests in their order.
    measured = durations.read()
    root = pathlib.Path(durations.ROOT)

    def seconds(item) -> float:
        module = item.path.relative_to(root).as_posix()
        return measured.get(module, durations.UNMEASURED_SECONDS)

    items.sort(key=seconds, reverse=True)  # stable: a module's tests keep their order
    for item in items:
        if "stack" in item.fixturenames or END_TO_END in item.path.parents:
            item.add_marker(pytest.mark.stack)
        if not any(item.get_closest_marker(name) for name in ("stack", "docker")):
            item.add_marker(pytest.mark.quick)
