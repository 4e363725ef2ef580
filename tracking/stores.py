"""MLflow's two stores, resolved and made ready before the server starts.

- The backend store (runs, registry): MLFLOW_BACKEND_STORE_URI, else the SLUICE_DB_* database
  (sluice_common/database.py), else SQLite in the state directory. A database written by an
  older MLflow is upgraded with MLflow's own migrations (idempotent: nothing to do at head); one
  written by a newer MLflow is refused rather than touched.
- The artifacts destination: MLFLOW_ARTIFACTS_DESTINATION (a directory, or s3://bucket/prefix
  with MLFLOW_S3_ENDPOINT_URL and the AWS_* variables), else a directory in the state directory.
  MLflow serves it through its proxy, so runs record mlflow-artifacts:/ URIs, valid wherever
  the artifacts are restored.

SLUICE_STORE_WAIT_SECONDS (default 60) bounds how long a database or bucket that does not answer
yet is waited for (a container starting beside this one).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Mapping

from sluice_common.database import postgres_url, redacted, with_driver

LEGACY_SQLITE = "mlflow.db"
DEFAULT_WAIT_SECONDS = 60.0


class StoreError(Exception):
    """A store the server cannot start on; the message says what to do."""


def backend_store_uri(env: Mapping[str, str], state: str) -> str:
    explicit = (env.get("MLFLOW_BACKEND_STORE_URI") or "").strip()
    if explicit:
        return with_driver(explicit)
    return postgres_url(env) or f"sqlite:///{os.path.join(state, LEGACY_SQLITE)}"


BUNDLED_S3_ENDPOINT = "http://s3:8333"  # the Compose s3 profile's service
# Settings Compose passes as empty strings when unset; an empty endpoint or key is not a value.
OPTIONAL = (
    "MLFLOW_BACKEND_STORE_URI",
    "MLFLOW_ARTIFACTS_DESTINATION",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


def resolved_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment with empty optional settings removed and, when the Compose s3 profile is
    on (SLUICE_COMPOSE_PROFILES holds s3) and no destination is set, the bundled S3 filled in:
    s3://$S3_BUCKET/artifacts at the s3 service, signed with its S3_ACCESS_KEY/S3_SECRET_KEY."""
    env = {key: value for key, value in env.items() if key not in OPTIONAL or value.strip()}
    profiles = {p.strip() for p in (env.get("SLUICE_COMPOSE_PROFILES") or "").split(",")}
    if "s3" in profiles and "MLFLOW_ARTIFACTS_DESTINATION" not in env:
        env["MLFLOW_ARTIFACTS_DESTINATION"] = f"s3://{env.get('S3_BUCKET') or 'sluice'}/artifacts"
        env.setdefault("MLFLOW_S3_ENDPOINT_URL", BUNDLED_S3_ENDPOINT)
        env.setdefault("AWS_ACCESS_KEY_ID", env.get("S3_ACCESS_KEY") or "sluice")
        env.setdefault("AWS_SECRET_ACCESS_KEY", env.get("S3_SECRET_KEY") or "")
    return env


def artifacts_destination(env: Mapping[str, str], state: str) -> str:
    return (env.get("MLFLOW_ARTIFACTS_DESTINATION") or "").strip() or os.path.join(
        state, "artifacts"
    )


def wait_seconds(env: Mapping[str, str]) -> float:
    return float(env.get("SLUICE_STORE_WAIT_SECONDS") or DEFAULT_WAIT_SECONDS)


def _engine(uri: str, wait: float):
    """An engine on the backend store once it accepts a connection (bounded wait)."""
    import sqlalchemy as sa

    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(os.path.abspath(uri[len("sqlite:///") :])), exist_ok=True)
    try:
        engine = sa.create_engine(uri, pool_pre_ping=True)
    except (sa.exc.ArgumentError, ImportError, ValueError) as err:
        raise StoreError(
            f"MLFLOW_BACKEND_STORE_URI {redacted(uri)!r} is not usable: {err}"
        ) from None
    deadline = time.monotonic() + wait
    while True:
        try:
            with engine.connect():
                return engine
        except sa.exc.OperationalError as err:
            reason = str(err.orig or err).strip().splitlines()[0]
            if "password authentication failed" in reason or time.monotonic() > deadline:
                engine.dispose()
                raise StoreError(f"cannot connect to {redacted(uri)}: {reason}") from None
            time.sleep(1)


def prepare_backend(uri: str, state: str, env: Mapping[str, str]) -> None:
    """Wait for the backend store, refuse to shadow an earlier SQLite store, upgrade its schema."""
    from mlflow.store.db import utils

    engine = _engine(uri, wait_seconds(env))
    try:
        import sqlalchemy as sa

        if "experiments" not in sa.inspect(engine).get_table_names():
            refuse_over_legacy(uri, state)
            return  # a new database: mlflow server creates its tables at the current schema
        current, head = utils._get_schema_version(engine), utils._get_latest_schema_revision()
        if current == head:
            return
        if current is None or current not in known_revisions():
            raise StoreError(
                f"MLflow's database {redacted(uri)} is at schema {current!r}, which this MLflow "
                "does not know (a newer MLflow wrote it); run the Sluice that wrote it, or "
                "restore a backup taken with this one"
            )
        print(f"tracking: upgrading MLflow's database schema {current} -> {head}", flush=True)
        utils._upgrade_db(engine)
        print("tracking: database upgraded", flush=True)
    finally:
        engine.dispose()


SETTINGS_TABLE = "sluice_settings"  # Sluice's own rows beside MLflow's tables
DESTINATION_KEY = "artifacts_destination"


def destination_identity(destination: str, state: str) -> str:
    """How a destination is recorded: a directory inside the state directory relative to it
    (a moved SLUICE_HOME keeps its artifacts), any other as written."""
    if "://" in destination:
        return destination.rstrip("/")
    path, root = os.path.realpath(destination), os.path.realpath(state)
    if path == root or path.startswith(root + os.sep):
        return "state:" + os.path.relpath(path, root)
    return path


def guard_destination(uri: str, destination: str, state: str, env: Mapping[str, str]) -> None:
    """The registry records where its artifacts went. Starting it on another destination (a
    forgotten COMPOSE_PROFILES=s3, a changed MLFLOW_ARTIFACTS_DESTINATION) would serve an empty
    artifact store behind a full registry: refuse, unless told the artifacts were moved."""
    import sqlalchemy as sa

    wanted = destination_identity(destination, state)
    adopt = (env.get("SLUICE_ADOPT_ARTIFACTS_DESTINATION") or "") == "1"
    table = sa.Table(
        SETTINGS_TABLE,
        sa.MetaData(),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    engine = _engine(uri, wait_seconds(env))
    try:
        for attempt in range(3):  # two first starts at once: the loser re-reads
            try:
                recorded = _recorded_destination(engine, table, wanted, destination, adopt, env)
                break
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
                if attempt == 2:
                    raise
                time.sleep(0.2)
    except sa.exc.SQLAlchemyError as err:
        raise StoreError(f"cannot read or record the artifacts destination: {err}") from None
    finally:
        engine.dispose()
    if recorded is None:
        return
    raise StoreError(
        f"this registry's artifacts were written to {recorded}, but the configured destination "
        f"is {wanted}: its models would not be found. Set the destination back "
        "(COMPOSE_PROFILES=s3 or MLFLOW_ARTIFACTS_DESTINATION, as when it was written). To "
        "move them, back up and restore into a stack with the new destination; if you copied "
        "them there yourself, start once with SLUICE_ADOPT_ARTIFACTS_DESTINATION=1"
    )


def _recorded_destination(engine, table, wanted, destination, adopt, env) -> str | None:
    """None when `wanted` is (now) the record; else the other destination on record."""
    import sqlalchemy as sa

    table.create(engine, checkfirst=True)
    with engine.begin() as conn:
        where = table.c.name == DESTINATION_KEY
        recorded = conn.execute(sa.select(table.c.value).where(where)).scalar()
        if recorded == wanted:
            return None
        if recorded is not None and not adopt:
            return recorded
        if recorded is None and not adopt and _versions_without_files(conn, destination, env):
            # A registry from before this record, started on a destination that holds none of
            # its files: most likely the wrong one (the s3 profile forgotten at the upgrade).
            return "another destination (this one holds none of the registry's files)"
        if recorded is None:
            conn.execute(sa.insert(table).values(name=DESTINATION_KEY, value=wanted))
        else:
            conn.execute(sa.update(table).where(where).values(value=wanted))
            print(f"tracking: artifacts destination is now {wanted} (was {recorded})")
        return None


def _versions_without_files(conn, destination: str, env: Mapping[str, str]) -> bool:
    import sqlalchemy as sa

    if "model_versions" not in sa.inspect(conn).get_table_names():
        return False
    if not conn.execute(sa.text("SELECT COUNT(*) FROM model_versions")).scalar():
        return False
    # Here: artifacts_io imports this module (a cycle at import time).
    from tracking.artifacts_io import listing

    try:
        return next(iter(listing(destination, env)), None) is None
    except Exception:  # noqa: BLE001 - an unreadable store is check_destination's to report
        return False


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config(db_url=""))
    return {revision.revision for revision in script.walk_revisions()}


def legacy_contents(path: str) -> tuple[int, int]:
    """(runs, registered models) in an MLflow SQLite file; (0, 0) when it holds none."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            counts = []
            for table in ("runs", "registered_models"):
                try:
                    counts.append(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                except sqlite3.DatabaseError:
                    counts.append(0)
            return counts[0], counts[1]
    except sqlite3.DatabaseError:
        return 0, 0


def refuse_over_legacy(uri: str, state: str) -> None:
    """A new, empty database while the state directory still holds the SQLite store of an
    earlier Sluice: starting would hide every model behind an empty registry, so refuse."""
    legacy = os.path.join(state, LEGACY_SQLITE)
    if uri == f"sqlite:///{legacy}" or not os.path.isfile(legacy):
        return
    runs, models = legacy_contents(legacy)
    if not runs and not models:
        return
    raise StoreError(
        f"{legacy} holds an earlier Sluice's MLflow store ({runs} runs, {models} registered "
        f"models), and the configured database {redacted(uri)} is empty. To keep using it, set "
        f"MLFLOW_BACKEND_STORE_URI=sqlite:///{legacy} (and MONITORING_DB_URL to the trainer's "
        "monitoring.db; docs/operations.md, Upgrades); to start fresh on the new database, "
        f"move {legacy} away (MLflow has no SQLite-to-PostgreSQL conversion)"
    )


def check_destination(destination: str, env: Mapping[str, str]) -> None:
    """A local destination is created; an s3:// one must answer with its bucket (bounded wait)."""
    if destination.startswith("s3://"):
        check_bucket(destination, env)
    elif "://" not in destination:
        os.makedirs(destination, exist_ok=True)


def s3_client(env: Mapping[str, str], **options):
    """A boto3 S3 client with the settings in `env` (which may differ from os.environ: the s3
    profile's keys are filled in by resolved_env); unset ones fall back to boto3's own chain."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env.get("MLFLOW_S3_ENDPOINT_URL") or None,
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
        region_name=env.get("AWS_DEFAULT_REGION") or None,
        **options,
    )


def check_bucket(destination: str, env: Mapping[str, str]) -> None:
    import botocore.config
    import botocore.exceptions

    bucket = destination[len("s3://") :].split("/", 1)[0]
    if not bucket:
        raise StoreError(f"MLFLOW_ARTIFACTS_DESTINATION {destination!r} names no bucket")
    endpoint = env.get("MLFLOW_S3_ENDPOINT_URL") or None
    client = s3_client(
        env,
        config=botocore.config.Config(
            connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 1}
        ),
    )
    where = f"bucket {bucket!r}" + (f" at {endpoint}" if endpoint else "")
    deadline = time.monotonic() + wait_seconds(env)
    while True:
        try:
            client.head_bucket(Bucket=bucket)
            return
        except botocore.exceptions.NoCredentialsError:
            raise StoreError(
                f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from None
        except botocore.exceptions.ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StoreError(f"S3 refused the credentials for {where} ({code})") from None
            if code in ("404", "NoSuchBucket") and time.monotonic() > deadline:
                raise StoreError(f"{where} does not exist; create it first") from None
            reason = code
        except (botocore.exceptions.BotoCoreError, OSError) as err:
            reason = str(err)
        if time.monotonic() > deadline:
            raise StoreError(f"{where} does not answer: {reason}")
        print(f"tracking: waiting for {where} ({reason})", file=sys.stderr, flush=True)
        time.sleep(1)
