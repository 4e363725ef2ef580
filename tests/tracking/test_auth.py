"""MLflow requires an account: nobody without it can register versions or move aliases.

Through the real stack: the password generated on first start, refusals without it or with a
wrong one, rotation by setting a new password and restarting, and the trainer's clear 503
when its own password is wrong.
"""

from __future__ import annotations

import io
import os
import stat

import pytest
import requests

from testkit.stack import LocalStack, post_csv
from tests.datasets import churn, to_csv

API = "/api/2.0/mlflow"


def _search(stack: LocalStack, auth=None) -> int:
    return requests.get(
        f"{stack.tracking_uri}{API}/experiments/search",
        params={"max_results": 1},
        auth=auth,
        timeout=30,
    ).status_code


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A stack started with no MLflow password configured: it generates one."""
    local = LocalStack(
        home=str(tmp_path_factory.mktemp("sluice-auth")),
        extra_env={"MLFLOW_TRACKING_PASSWORD": None},
    )
    local.start()
    yield local
    local.stop()


@pytest.mark.stack
def test_first_start_generates_a_private_password(generated):
    path = os.path.join(generated.home, "mlflow.password")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    user, password = generated.mlflow_account
    assert user == "sluice" and len(password) >= 32
    assert stat.S_IMODE(os.stat(os.path.join(generated.home, "mlflow-auth.db")).st_mode) == 0o600
    assert "mlflow.password" in generated.start()  # start says where the password is


@pytest.mark.stack
def test_without_the_account_mlflow_refuses_everything_but_health(generated):
    assert requests.get(f"{generated.tracking_uri}/health", timeout=10).status_code == 200
    assert _search(generated) == 401
    assert _search(generated, ("sluice", "not-the-password-at-all")) == 401
    assert _search(generated, ("admin", "password1234")) == 401  # MLflow's old default
    # The attack of the signing tests needs these calls; none gets through.
    for path, body in [
        ("/registered-models/create", {"name": "rogue"}),
        ("/registered-models/alias", {"name": "rogue", "alias": "champion", "version": "1"}),
    ]:
        answer = requests.post(f"{generated.tracking_uri}{API}{path}", json=body, timeout=30)
        assert answer.status_code == 401, answer.text
    assert _search(generated, generated.mlflow_account) == 200


@pytest.mark.stack
def test_the_trainer_signs_in_with_the_generated_password(generated):
    data = to_csv(churn(300, seed=3))
    dev = post_csv(generated.analyze_url, data, phase="dev", model="auth")
    assert dev.status_code == 200, dev.text
    prod = post_csv(generated.analyze_url, data, phase="prod", model="auth")
    assert prod.status_code == 200, prod.text
    assert prod.json()["version"] == dev.json()["version"]


@pytest.mark.stack
def test_a_new_password_and_a_restart_rotate_it(generated):
    old = generated.mlflow_account
    dev = post_csv(generated.analyze_url, to_csv(churn(300, seed=6)), phase="dev", model="rotate")
    assert dev.status_code == 200, dev.text
    generated.stop()
    rotated = LocalStack(
        home=generated.home,
        ports=generated.ports,
        extra_env={"MLFLOW_TRACKING_PASSWORD": "a-rotated-password-123"},
    )
    rotated.start()
    try:
        assert _search(rotated, old) == 401
        assert _search(rotated, ("sluice", "a-rotated-password-123")) == 200
        prod = post_csv(
            rotated.analyze_url, to_csv(churn(50, seed=4)), phase="prod", model="rotate"
        )
        assert prod.status_code == 200, prod.text
    finally:
        rotated.stop()
        generated.start()  # back to the generated password for any later test
    assert _search(generated, old) == 200


@pytest.mark.stack
@pytest.mark.parametrize(
    "password, message",
    [("short", "at least 12 characters"), ("pässwörd-with-umlauts", "printable ASCII")],
)
def test_a_password_mlflow_cannot_take_stops_the_start_saying_why(tmp_path, password, message):
    local = LocalStack(home=str(tmp_path), extra_env={"MLFLOW_TRACKING_PASSWORD": password})
    done = local.run("start", timeout=300)
    try:
        assert done.returncode != 0
        assert message in done.stderr
    finally:
        local.run("stop")


@pytest.mark.stack
def test_start_never_prints_a_configured_password(tmp_path):
    password = "do-not-print-this-1234"
    local = LocalStack(home=str(tmp_path), extra_env={"MLFLOW_TRACKING_PASSWORD": password})
    try:
        output = local.start()
        assert "MLFLOW_TRACKING_PASSWORD" in output
        assert password not in output + local.start()  # "already running" prints it too
    finally:
        local.stop()


def test_auth_settings_keep_percent_signs_as_written(tmp_path):
    import configparser

    from tracking.serve import auth_settings

    uri = "postgresql://user:p%40ss@db/auth"
    path = tmp_path / "auth.ini"
    path.write_text(auth_settings(uri, "sluice"))
    config = configparser.ConfigParser()
    config.read(path)
    assert config["mlflow"]["database_uri"] == uri


def test_a_trainer_with_the_wrong_password_answers_503_saying_so(stack, monkeypatch):
    from trainer import create_app

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "sluice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password-at-all")
    app = create_app(
        {
            "MLFLOW_TRACKING_URI": stack.tracking_uri,
            "MLFLOW_TRACKING_PASSWORD": "not-the-password-at-all",
            "TRAINER_STATE_DIR": os.path.join(stack.home, "wrong-password-trainer"),
        }
    )
    answer = app.test_client().post(
        "/ml?phase=dev&model=wrong_password",
        data={"data_file": (io.BytesIO(to_csv(churn(200, seed=5))), "data.csv")},
    )
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert answer.get_json()["error"]["code"] == "tracking_unauthorized"
    assert "MLFLOW_TRACKING_PASSWORD" in answer.get_json()["error"]["message"]
