"""tracking/stores.py against real databases: MLflow's schema upgraded (or refused) before the
server starts, an earlier SQLite store never shadowed, and the SLUICE_DB_* URL builder."""

from __future__ import annotations

import os
import secrets
import time
import uuid

import pytest
import requests
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from mlflow import MlflowClient
from mlflow.store.db.utils import (
    _get_alembic_config,
    _get_latest_schema_revision,
    _get_schema_version,
)
from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from psycopg import sql

from sluice_common.database import postgres_url, redacted
from testkit.stack import LocalStack
from tracking import stores

STEPS_BEHIND = 8  # how many of MLflow's migrations the "older" database still lacks
ENV = {"SLUICE_STORE_WAIT_SECONDS": "5"}


def older_revision() -> str:
    """A revision STEPS_BEHIND migrations before this MLflow's head."""
    script = ScriptDirectory.from_config(_get_alembic_config(""))
    revisions = [revision.revision for revision in script.walk_revisions()]
    assert revisions[0] == _get_latest_schema_revision()
    return revisions[STEPS_BEHIND]


def make_older_database(url: str) -> tuple[str, str]:
    """An MLflow database made with MLflow's own migrations, stopped short of head, holding one
    experiment and one run with a param (written with plain SQL: MLflow's store only opens a
    database at head). Returns (revision, run id)."""
    revision = older_revision()
    engine = sa.create_engine(url)
    try:
        InitialBase.metadata.create_all(engine)
        config = _get_alembic_config(url)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        assert _get_schema_version(engine) == revision
        run_id = uuid.uuid4().hex
        now = int(time.time() * 1000)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO experiments (experiment_id, name, artifact_location,"
                    " lifecycle_stage, creation_time, last_update_time)"
                    " VALUES (7, 'older-experiment', '/tmp/older', 'active', :now, :now)"
                ),
                {"now": now},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO runs (run_uuid, name, source_type, source_name,"
                    " entry_point_name, user_id, status, start_time, end_time, source_version,"
                    " lifecycle_stage, artifact_uri, experiment_id)"
                    " VALUES (:run, 'older-run', 'LOCAL', '', '', 'tester', 'FINISHED', :now,"
                    " :now, '', 'active', '/tmp/older/run', 7)"
                ),
                {"run": run_id, "now": now},
            )
            conn.execute(
                sa.text("INSERT INTO params (key, value, run_uuid) VALUES ('alpha', '0.5', :run)"),
                {"run": run_id},
            )
    finally:
        engine.dispose()
    return revision, run_id


def schema_version(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        return _get_schema_version(engine)
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def run_params(url: str, run_id: str, tmp_path) -> tuple[str, dict]:
    """(run name, params) of a run, read through MLflow's own store (which needs head)."""
    store = SqlAlchemyStore(url, str(tmp_path / "artifacts-root"))
    try:
        run = store.get_run(run_id)
        return run.info.run_name, dict(run.data.params)
    finally:
        store.engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request, tmp_path):
    """An empty database of this test's own: on the session's PostgreSQL, or a SQLite file."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'older.db'}"
    server = request.getfixturevalue("postgres")
    return server.create_database(f"t_{secrets.token_hex(6)}")


def test_an_older_schema_is_upgraded_to_head_keeping_its_data(database_url, tmp_path, capfd):
    revision, run_id = make_older_database(database_url)
    head = _get_latest_schema_revision()
    assert revision != head
    state = str(tmp_path / "state")
    os.makedirs(state)

    stores.prepare_backend(database_url, state, ENV)
    assert schema_version(database_url) == head
    assert f"upgrading MLflow's database schema {revision} -> {head}" in capfd.readouterr().out
    assert run_params(database_url, run_id, tmp_path) == ("older-run", {"alpha": "0.5"})

    # At head there is nothing to do: no upgrade message, nothing changed.
    before = tables(database_url)
    stores.prepare_backend(database_url, state, ENV)
    assert "upgrading" not in capfd.readouterr().out
    assert schema_version(database_url) == head and tables(database_url) == before
    assert not os.path.exists(os.path.join(state, stores.LEGACY_SQLITE))


@pytest.mark.stack
def test_the_real_server_starts_on_an_older_postgres_database(postgres, tmp_path):
    url = postgres.create_database(f"t_{secrets.token_hex(6)}")
    revision, run_id = make_older_database(url)
    stack = LocalStack(
        home=str(tmp_path / "home"),
        # A plain postgresql:// URL: the psycopg driver is filled in.
        extra_env={
            "MLFLOW_BACKEND_STORE_URI": url.replace("postgresql+psycopg://", "postgresql://")
        },
    )
    try:
        done = stack.run("start")
        log = _read(os.path.join(stack.home, "logs", "mlflow.log"))
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{log}"
        assert stack.healthy("mlflow")
        assert f"upgrading MLflow's database schema {revision} -> " in log, log
        assert schema_version(url) == _get_latest_schema_revision()
        run = MlflowClient(stack.tracking_uri).get_run(run_id)
        assert run.info.run_name == "older-run" and run.data.params == {"alpha": "0.5"}
        assert not os.path.exists(os.path.join(stack.home, stores.LEGACY_SQLITE))
        # The server really answers on it (signed in): an experiment lands in PostgreSQL.
        answer = requests.get(
            f"{stack.tracking_uri}/api/2.0/mlflow/experiments/get-by-name",
            params={"experiment_name": "older-experiment"},
            auth=stack.mlflow_account,
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["experiment"]["experiment_id"] == "7"
    finally:
        stack.run("stop")


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def test_a_revision_this_mlflow_does_not_know_is_refused_untouched(database_url, tmp_path):
    _, run_id = make_older_database(database_url)
    state = str(tmp_path / "state")
    os.makedirs(state)
    stores.prepare_backend(database_url, state, ENV)
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
            runs_before = conn.execute(sa.text("SELECT COUNT(*) FROM runs")).scalar()
    finally:
        engine.dispose()
    before = tables(database_url)

    with pytest.raises(stores.StoreError) as refused:
        stores.prepare_backend(database_url, state, ENV)
    message = str(refused.value)
    assert "'ffffffffffff'" in message and "newer MLflow" in message, message

    assert schema_version(database_url) == "ffffffffffff"
    assert tables(database_url) == before
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM runs")).scalar() == runs_before == 1
            assert conn.execute(
                sa.text("SELECT name FROM runs WHERE run_uuid = :run"), {"run": run_id}
            ).scalar() == ("older-run")
    finally:
        engine.dispose()


def _sqlite_store_with_a_run(path: str, artifacts: str) -> str:
    """An MLflow SQLite store (MLflow's own SqlAlchemyStore) holding one run; its run id."""
    store = SqlAlchemyStore(f"sqlite:///{path}", artifacts)
    try:
        experiment = store.create_experiment("earlier-sluice")
        run = store.create_run(experiment, "tester", int(time.time() * 1000), [], "earlier-run")
        return run.info.run_id
    finally:
        store.engine.dispose()


@pytest.mark.stack
def test_an_earlier_sqlite_store_is_not_shadowed_by_an_empty_database(
    postgres,
    tmp_path,
):
    state = tmp_path / "state"
    state.mkdir()
    legacy = str(state / stores.LEGACY_SQLITE)
    _sqlite_store_with_a_run(legacy, str(state / "artifacts"))
    url = postgres.create_database(f"t_{secrets.token_hex(6)}")

    with pytest.raises(stores.StoreError) as refused:
        stores.prepare_backend(url, str(state), ENV)
    message = str(refused.value)
    assert legacy in message and "MLFLOW_BACKEND_STORE_URI" in message, message
    assert "1 runs" in message, message
    assert postgres.password not in message
    assert tables(url) == set(), "the new database was written to"

    # The URL naming that very file is the earlier store itself: no refusal.
    stores.prepare_backend(f"sqlite:///{legacy}", str(state), ENV)

    # Through the real server too: it does not start, and says why.
    stack = LocalStack(home=str(state), extra_env={"MLFLOW_BACKEND_STORE_URI": url})
    try:
        done = stack.run("start")
        log = _read(os.path.join(stack.home, "logs", "mlflow.log"))
        assert done.returncode != 0, done.stdout
        assert f"{legacy} holds an earlier Sluice's MLflow store" in done.stderr + log
        assert not stack.healthy("mlflow")
    finally:
        stack.run("stop")
    assert tables(url) == set()


def test_an_empty_or_runless_sqlite_file_is_no_reason_to_refuse(postgres, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    legacy = state / stores.LEGACY_SQLITE
    legacy.write_bytes(b"")
    stores.prepare_backend(postgres.create_database(f"t_{secrets.token_hex(6)}"), str(state), ENV)

    # MLflow's tables but no run and no model (a stack started once and never used).
    legacy.unlink()
    SqlAlchemyStore(f"sqlite:///{legacy}", str(state / "artifacts")).engine.dispose()
    assert stores.legacy_contents(str(legacy)) == (0, 0)
    stores.prepare_backend(postgres.create_database(f"t_{secrets.token_hex(6)}"), str(state), ENV)


def test_postgres_url_round_trips_an_awkward_password(postgres):
    password = "p@ss:w/rd%25#x?&= 'é"
    role = f"odd_{secrets.token_hex(4)}"
    with postgres.connect("postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
    settings = {
        "SLUICE_DB_HOST": postgres.host,
        "SLUICE_DB_PORT": str(postgres.port),
        "SLUICE_DB_NAME": postgres.dbname,
        "SLUICE_DB_USER": role,
        "SLUICE_DB_PASSWORD": password,
    }
    url = postgres_url(settings)
    assert url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_user")).scalar() == role
    finally:
        engine.dispose()

    hidden = redacted(url)
    assert password not in hidden and "p%40ss" not in hidden
    assert hidden == f"postgresql+psycopg://{role}:***@{postgres.host}:{postgres.port}/sluice"

    # A wrong password is refused at once (no waiting), the message without the password.
    wrong = postgres_url({**settings, "SLUICE_DB_PASSWORD": password + "x"})
    started = time.monotonic()
    with pytest.raises(stores.StoreError) as refused:
        stores.prepare_backend(wrong, "/nonexistent-state", {"SLUICE_STORE_WAIT_SECONDS": "30"})
    assert time.monotonic() - started < 10
    assert "password authentication failed" in str(refused.value)
    assert "p%40ss" not in str(refused.value) and "***" in str(refused.value)

    # No host: no URL (embedded SQLite).
    assert postgres_url({"SLUICE_DB_PASSWORD": password}) is None


# -- the Compose s3 profile's settings ---------------------------------------------------------


def test_the_s3_profile_fills_in_the_bundled_store_unless_a_destination_is_set():
    env = stores.resolved_env(
        {
            "SLUICE_COMPOSE_PROFILES": "dask,s3",
            "S3_BUCKET": "models",
            "S3_ACCESS_KEY": "key",
            "S3_SECRET_KEY": "a-secret-of-some-length",
            "MLFLOW_S3_ENDPOINT_URL": "",  # Compose passes unset settings as empty strings
            "AWS_ACCESS_KEY_ID": "",
        }
    )
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://models/artifacts"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://s3:8333"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
        "key",
        "a-secret-of-some-length",
    )
    own = stores.resolved_env(
        {"SLUICE_COMPOSE_PROFILES": "s3", "MLFLOW_ARTIFACTS_DESTINATION": "s3://mine/x"}
    )
    assert own["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://mine/x"
    assert "MLFLOW_S3_ENDPOINT_URL" not in own and "AWS_ACCESS_KEY_ID" not in own
    plain = stores.resolved_env({"MLFLOW_ARTIFACTS_DESTINATION": "", "MLFLOW_S3_ENDPOINT_URL": ""})
    assert "MLFLOW_ARTIFACTS_DESTINATION" not in plain and "MLFLOW_S3_ENDPOINT_URL" not in plain


def test_the_bucket_check_signs_with_the_resolved_keys_not_the_process_environment(s3, monkeypatch):
    """The s3 profile's keys exist only in the resolved settings: the check must use them."""
    bucket = s3.create_bucket(f"chk-{secrets.token_hex(4)}")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    env = {**s3.env(), "SLUICE_STORE_WAIT_SECONDS": "2"}
    stores.check_destination(f"s3://{bucket}/artifacts", env)  # no error
    wrong = {**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret-at-all"}
    with pytest.raises(stores.StoreError, match="refused the credentials"):
        stores.check_destination(f"s3://{bucket}/artifacts", wrong)


def test_a_registry_refuses_an_artifacts_destination_other_than_its_own(tmp_path, capfd):
    """A forgotten COMPOSE_PROFILES=s3 would point a full registry at an empty store."""
    state = tmp_path / "state"
    state.mkdir()
    url = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"SLUICE_STORE_WAIT_SECONDS": "2"}
    stores.guard_destination(url, "s3://models/artifacts", str(state), env)  # recorded
    stores.guard_destination(url, "s3://models/artifacts/", str(state), env)  # the same
    with pytest.raises(stores.StoreError) as refused:
        stores.guard_destination(url, str(state / "artifacts"), str(state), env)
    message = str(refused.value)
    assert "s3://models/artifacts" in message and "state:artifacts" in message
    assert "COMPOSE_PROFILES=s3" in message and "SLUICE_ADOPT_ARTIFACTS_DESTINATION=1" in message
    adopt = {**env, "SLUICE_ADOPT_ARTIFACTS_DESTINATION": "1"}
    stores.guard_destination(url, str(state / "artifacts"), str(state), adopt)
    assert "artifacts destination is now state:artifacts" in capfd.readouterr().out
    stores.guard_destination(url, str(state / "artifacts"), str(state), env)  # now the record


def test_a_moved_state_directory_keeps_its_artifacts_destination(tmp_path):
    url = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"SLUICE_STORE_WAIT_SECONDS": "2"}
    first, moved = tmp_path / "home", tmp_path / "elsewhere"
    first.mkdir()
    moved.mkdir()
    stores.guard_destination(url, str(first / "artifacts"), str(first), env)
    stores.guard_destination(url, str(moved / "artifacts"), str(moved), env)  # no error
    with pytest.raises(stores.StoreError):
        stores.guard_destination(url, "/srv/other-artifacts", str(moved), env)


def test_an_unrecorded_registry_with_versions_refuses_a_destination_holding_none_of_them(
    tmp_path,
):
    """The first start after the upgrade that added the record, with the s3 profile forgotten:
    the registry has versions, the configured destination has no files."""
    url = f"sqlite:///{tmp_path / 'mlflow.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE model_versions (name TEXT, version INTEGER)"))
        conn.execute(sa.text("INSERT INTO model_versions VALUES ('churn', 1)"))
    engine.dispose()
    state, env = tmp_path / "state", {"SLUICE_STORE_WAIT_SECONDS": "2"}
    (state / "artifacts").mkdir(parents=True)
    with pytest.raises(stores.StoreError, match="holds none of the registry's files"):
        stores.guard_destination(url, str(state / "artifacts"), str(state), env)
    (state / "artifacts" / "1").mkdir()
    (state / "artifacts" / "1" / "MLmodel").write_text("x")
    stores.guard_destination(url, str(state / "artifacts"), str(state), env)  # recorded now
