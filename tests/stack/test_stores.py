"""The stack on real external stores: MLflow and monitoring in PostgreSQL, artifacts on S3
(SeaweedFS), each surviving a full restart; S3 that refuses or lacks the bucket stops the start."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import time

import pytest
import requests
import sqlalchemy as sa
from mlflow import MlflowClient

from testkit.stack import LocalStack, post_csv
from tests.datasets import churn, iris, shifted, to_csv


def dev(stack, model, frame) -> dict:
    answer = post_csv(stack.analyze_url, to_csv(frame), phase="dev", model=model)
    assert answer.status_code == 200, answer.text
    return answer.json()


def prod(stack, model, frame) -> dict:
    answer = post_csv(stack.analyze_url, to_csv(frame), phase="prod", model=model, proba="true")
    assert answer.status_code == 200, answer.text
    return answer.json()


def monitoring(stack, **params) -> dict:
    answer = requests.get(f"{stack.url('preprocess')}/monitoring", params=params, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def batch_recorded(stack, model, batch_id, timeout=15) -> dict:
    """The batch's monitoring summary once its writer has stored it (within about a second)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.get(
            f"{stack.url('preprocess')}/monitoring",
            params={"model": model, "batch_id": batch_id},
            timeout=60,
        )
        if answer.status_code == 200 or time.monotonic() > deadline:
            assert answer.status_code == 200, answer.text
            return answer.json()
        time.sleep(0.2)


def read_log(stack, service) -> str:
    try:
        with open(os.path.join(stack.home, "logs", f"{service}.log"), errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def counts(url: str, *tables: str) -> dict:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table: conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
                for table in tables
            }
    finally:
        engine.dispose()


def test_postgres_holds_mlflow_and_monitoring_across_a_restart(postgres, tmp_path):
    name = f"stores_{secrets.token_hex(4)}"
    url = postgres.create_database(name)
    stack = LocalStack(
        home=str(tmp_path / "home"),
        # The one-database settings (as Compose gives them): MLflow and monitoring share it.
        extra_env={
            "SLUICE_DB_HOST": postgres.host,
            "SLUICE_DB_PORT": str(postgres.port),
            "SLUICE_DB_NAME": name,
            "SLUICE_DB_USER": postgres.user,
            "SLUICE_DB_PASSWORD": postgres.password,
        },
    )
    model = "pg-churn"
    query = churn(300, seed=99).drop(columns="churned")
    try:
        stack.start()
        first = dev(stack, model, churn(1500))
        assert first["version"] == "1" and first["promoted"] is True
        before = prod(stack, model, query)
        assert before["version"] == "1" and before["n_rows"] == 300

        second = dev(stack, model, shifted(churn(1500), seed=3))
        assert second["version"] == "2"
        champion = "2" if second["promoted"] else "1"
        assert second["champion_version"] == champion, second
        client = MlflowClient(stack.tracking_uri)
        assert client.get_model_version_by_alias(model, "champion").version == champion

        # The champion poll (1 s) has the trainer serve the new champion.
        served = prod(stack, model, query)
        assert served["version"] == champion, served
        batches = [before["batch_id"], served["batch_id"]]
        for batch, version in zip(batches, ["1", champion], strict=True):
            summary = batch_recorded(stack, model, batch)
            assert summary["version"] == version and summary["rows_scored"] == 300, summary
        stack.stop()

        assert not os.path.exists(os.path.join(stack.home, "mlflow.db"))
        assert not os.path.exists(os.path.join(stack.home, "trainer", "monitoring.db"))
        stack.start()
        again = prod(stack, model, query)
        assert again["version"] == champion
        assert again["predictions"] == served["predictions"]
        assert again["probabilities"] == served["probabilities"]
        for batch, version in zip(batches, ["1", champion], strict=True):
            summary = batch_recorded(stack, model, batch)
            assert summary["version"] == version and summary["rows_scored"] == 300, summary
        batch_recorded(stack, model, again["batch_id"])
        assert monitoring(stack, model=model, version=champion)["batches"] >= 2
        assert client.get_model_version_by_alias(model, "champion").version == champion
    finally:
        stack.run("stop")

    # Everything is in PostgreSQL, and nothing fell back to SQLite in SLUICE_HOME.
    found = counts(url, "registered_models", "model_versions", "runs", "monitoring_batches")
    assert found["registered_models"] == 1 and found["model_versions"] == 2, found
    assert found["runs"] >= 2 and found["monitoring_batches"] == 3, found
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            alias = conn.execute(
                sa.text("SELECT version FROM registered_model_aliases WHERE name = :n"),
                {"n": model},
            ).scalar_one()
            versions = conn.execute(
                sa.text("SELECT version FROM monitoring_batches WHERE batch_id = :b"),
                {"b": again["batch_id"]},
            ).scalar_one()
    finally:
        engine.dispose()
    assert str(alias) == champion and versions == champion
    assert not os.path.exists(os.path.join(stack.home, "mlflow.db"))
    assert not os.path.exists(os.path.join(stack.home, "trainer", "monitoring.db"))


BIG_BYTES = 20 * 1024 * 1024


def test_artifacts_on_s3_survive_restarting_the_stack_and_the_store(s3, tmp_path):
    bucket = s3.create_bucket(f"art-{secrets.token_hex(4)}")
    stack = LocalStack(
        home=str(tmp_path / "home"),
        extra_env={**s3.env(), "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{bucket}/artifacts"},
    )
    model = "s3-iris"
    query = iris().drop(columns="target").sample(60, random_state=1)
    bucket_client = s3.client()
    try:
        stack.start()
        trained = dev(stack, model, iris())
        assert trained["version"] == "1"
        before = prod(stack, model, query)

        listed = bucket_client.list_objects_v2(Bucket=bucket, Prefix="artifacts/")
        keys = [item["Key"] for item in listed.get("Contents", [])]
        assert any(key.endswith("/artifacts/booster.ubj") for key in keys), keys
        assert any(key.endswith("/MLmodel") for key in keys), keys
        assert any(key.endswith("reports/feature_spec.json") for key in keys), keys
        assert not os.path.exists(os.path.join(stack.home, "artifacts"))

        # A multipart-sized artifact through the tracking server's proxy, and back.
        client = MlflowClient(stack.tracking_uri)
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(BIG_BYTES))
        digest = hashlib.sha256(big.read_bytes()).hexdigest()
        experiment = client.create_experiment(f"big-{secrets.token_hex(4)}")
        run = client.create_run(experiment)
        client.log_artifact(run.info.run_id, str(big))
        back = client.download_artifacts(run.info.run_id, "big.bin", str(tmp_path / "back"))
        assert hashlib.sha256(open(back, "rb").read()).hexdigest() == digest
        objects = [
            item
            for item in bucket_client.list_objects_v2(Bucket=bucket, Prefix="artifacts/")[
                "Contents"
            ]
            if item["Key"].endswith("/big.bin")
        ]
        assert len(objects) == 1 and objects[0]["Size"] == BIG_BYTES, objects
        # boto3 sends anything over 8 MB in parts: a multipart object's ETag ends in -<parts>.
        assert objects[0]["ETag"].strip('"').rpartition("-")[2].isdigit(), objects
        assert run.info.run_id in objects[0]["Key"]

        stack.stop()
        s3.stop()
        # The trainer's verified local copies would serve without S3: remove them, so the
        # restarted trainer has to download the model from the bucket again.
        models = os.path.join(stack.home, "trainer", "models")
        assert os.path.isdir(models) and os.listdir(models)
        shutil.rmtree(models)
        s3.start()
        stack.start()
        again = prod(stack, model, query)
        assert again["version"] == "1"
        assert again["predictions"] == before["predictions"]
        assert again["probabilities"] == before["probabilities"]
        assert os.listdir(models), "the restarted trainer downloaded no copy"
        assert not os.path.exists(os.path.join(stack.home, "artifacts"))
        # Every byte went through MLflow's proxy: the trainer never asked for a presigned URL
        # (it holds no storage credentials, and in Compose cannot reach the bucket at all).
        with open(os.path.join(stack.home, "logs", "mlflow.log"), encoding="utf-8") as handle:
            served = handle.read()
        presigned = [line for line in served.splitlines() if "/mlflow-artifacts/presigned/" in line]
        assert "booster.ubj" in served  # the trainer's downloads are in this log ...
        assert not [line for line in presigned if "big.bin" not in line], presigned  # proxied
    finally:
        stack.run("stop")
        s3.start()  # the session's server stays up for the other tests, also after a failure


@pytest.mark.parametrize(
    "case",
    ["wrong_credentials", "missing_bucket"],
)
def test_s3_that_refuses_or_lacks_the_bucket_stops_the_start(s3, tmp_path, case):
    bucket = s3.create_bucket(f"cred-{secrets.token_hex(4)}")
    env = {**s3.env(), "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{bucket}/artifacts"}
    if case == "wrong_credentials":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret-" + secrets.token_hex(8)
        expected = f"S3 refused the credentials for bucket '{bucket}' at {s3.endpoint}"
    else:
        bucket = f"missing-{secrets.token_hex(4)}"
        env.update(
            MLFLOW_ARTIFACTS_DESTINATION=f"s3://{bucket}/artifacts", SLUICE_STORE_WAIT_SECONDS="2"
        )
        expected = f"bucket '{bucket}' at {s3.endpoint} does not exist"
    stack = LocalStack(home=str(tmp_path / "home"), extra_env=env)
    try:
        started = time.monotonic()
        done = stack.run("start", timeout=120)
        elapsed = time.monotonic() - started
        log = read_log(stack, "mlflow")
        assert done.returncode != 0, done.stdout
        assert expected in done.stderr + log, f"{done.stderr}\n{log}"
        assert env["AWS_SECRET_ACCESS_KEY"] not in done.stderr + log
        assert elapsed < 60, elapsed
        assert stack.pid("mlflow") is None and not stack.healthy("mlflow")
        assert stack.pid("trainer") is None
    finally:
        stack.run("stop")
    names = {entry["Name"] for entry in s3.client().list_buckets()["Buckets"]}
    if case == "missing_bucket":
        assert bucket not in names, "the missing bucket was created"
