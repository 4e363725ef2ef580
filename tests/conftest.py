"""Fixtures: one real local stack per test session, on free loopback ports."""

from __future__ import annotations

import os
import pathlib
import secrets

import pytest

from testkit.stack import LocalStack

# MLflow requires an account. The session's stacks inherit this one, so the tests' own MLflow
# clients (the insider of the signing tests, alias moves) sign in like the trainer does; the
# generated-password path has tests of its own (test_tracking_auth.py, test_compose.py).
os.environ["MLFLOW_TRACKING_USERNAME"] = "sluice"
os.environ["MLFLOW_TRACKING_PASSWORD"] = secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The running stack: real `mlflow server`, trainer and preprocess under gunicorn."""
    # Two trainer workers (the default is one): tests see that champions stay coherent
    # across worker processes.
    local = LocalStack(
        home=str(tmp_path_factory.mktemp("sluice-home")),
        extra_env={
            "TRAINER_WORKERS": "2",
            # Data by reference (tests/stack/test_jobs.py) reads and writes under this directory.
            "SLUICE_DATA_ROOT": str(tmp_path_factory.mktemp("data-root")),
        },
    )
    local.start()
    yield local
    local.stop()


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
    for item in items:
        if "stack" in item.fixturenames or END_TO_END in item.path.parents:
            item.add_marker(pytest.mark.stack)
        if not any(item.get_closest_marker(name) for name in ("stack", "docker")):
            item.add_marker(pytest.mark.quick)
