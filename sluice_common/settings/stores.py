"""The settings of the stores, of data by reference, the cluster and jobs, and those Sluice
sets for itself, declared."""

from __future__ import annotations

from sluice_common.settings import Setting

TRAINER = ("trainer",)
COMPOSE = ("compose",)


def _store(name, type_, default, meaning, read_by, **more) -> Setting:
    more.setdefault("env_example", True)
    return Setting(name, type_, default, meaning, read_by, "Stores", **more)


def _data(name, type_, default, meaning, read_by=TRAINER, **more) -> Setting:
    section = "Data by reference, the cluster and jobs"
    return Setting(name, type_, default, meaning, read_by, section, **more)


def _own(name, meaning, read_by, passed=False) -> Setting:
    section = "Set by Sluice itself"
    return Setting(name, str, None, meaning, read_by, section, passed=passed, internal=True)


STORE_SETTINGS = [
    _store(
        "SLUICE_DB_HOST",
        str,
        None,
        (
            "the PostgreSQL server MLflow's store, the monitoring tables and the jobs "
            "table share; empty means SQLite files"
        ),
        ("trainer", "mlflow", "scripts"),
        compose="db",
    ),
    _store("SLUICE_DB_PORT", int, 5432, "its port", ("trainer", "mlflow", "scripts")),
    _store(
        "SLUICE_DB_NAME",
        str,
        "sluice",
        ("its database (Compose: also the db service's, created with its volume)"),
        ("trainer", "mlflow", "scripts"),
    ),
    _store("SLUICE_DB_USER", str, "sluice", "its account", ("trainer", "mlflow", "scripts")),
    _store(
        "SLUICE_DB_PASSWORD",
        str,
        None,
        (
            "the account's password (Compose: set when the db volume is first created; "
            "change it before the first start of a stack anyone else can reach)"
        ),
        ("trainer", "mlflow", "scripts"),
        compose="sluice-db-password-change-me",
    ),
    _store(
        "MLFLOW_BACKEND_STORE_URI",
        str,
        None,
        (
            "MLflow's runs and registry, any SQLAlchemy URL (postgresql:// gets the "
            "installed psycopg driver); wins over `SLUICE_DB_*`"
        ),
        ("mlflow", "scripts"),
        shown=(
            "the `SLUICE_DB_*` database, else sqlite:///$SLUICE_HOME/mlflow.db (Compose: "
            "/data/mlflow.db)"
        ),
    ),
    _store(
        "MONITORING_DB_URL",
        str,
        None,
        ("the monitoring store, any SQLAlchemy URL; wins over `SLUICE_DB_*`"),
        TRAINER + ("scripts",),
        shown=("the `SLUICE_DB_*` database, else SQLite at $TRAINER_STATE_DIR/monitoring.db"),
    ),
    _store(
        "JOBS_DB_URL",
        str,
        None,
        (
            "the jobs table's database, any SQLAlchemy URL; wins over `SLUICE_DB_*`. Unset,"
            " a set MONITORING_DB_URL still holds the jobs (with a warning at start)"
        ),
        TRAINER,
        shown="the monitoring store's database",
    ),
    _store(
        "MLFLOW_ARTIFACTS_DESTINATION",
        str,
        None,
        ("where MLflow's proxy keeps the artifacts: a directory or s3://bucket/prefix"),
        ("mlflow", "scripts"),
        shown=(
            "$SLUICE_HOME/artifacts (Compose: /data/artifacts; with COMPOSE_PROFILES=s3: "
            "s3://$S3_BUCKET/artifacts)"
        ),
    ),
    _store(
        "SLUICE_ADOPT_ARTIFACTS_DESTINATION",
        str,
        None,
        (
            "1: start once with a changed MLFLOW_ARTIFACTS_DESTINATION whose artifacts "
            "you moved there yourself"
        ),
        ("mlflow",),
        env_example=False,
    ),
    _store(
        "MLFLOW_S3_ENDPOINT_URL",
        str,
        None,
        "the artifacts' S3 endpoint (empty for AWS)",
        ("mlflow",),
        passed=True,
        shown="unset (with the s3 profile: the s3 service)",
    ),
    _store(
        "AWS_ACCESS_KEY_ID",
        str,
        None,
        (
            "S3 credentials of the artifacts (MLflow) and of data_uri=s3:// (the trainer "
            "and the Dask workers)"
        ),
        ("mlflow", "trainer", "dask"),
        passed=True,
        shown="unset (with the s3 profile: S3_ACCESS_KEY)",
    ),
    _store(
        "AWS_SECRET_ACCESS_KEY",
        str,
        None,
        "the secret of that key",
        ("mlflow", "trainer", "dask"),
        passed=True,
        shown="unset (with the s3 profile: S3_SECRET_KEY)",
    ),
    _store(
        "AWS_SESSION_TOKEN",
        str,
        None,
        "a session token for temporary S3 credentials",
        ("mlflow",),
        passed=True,
        env_example=False,
    ),
    _store(
        "AWS_DEFAULT_REGION",
        str,
        None,
        "the S3 region (botocore builds endpoint names from it)",
        ("mlflow", "trainer", "dask"),
        passed=True,
        compose="us-east-1",
    ),
    _store(
        "S3_BUCKET",
        str,
        "sluice",
        "the s3 service's bucket (created at start)",
        ("compose", "mlflow"),
    ),
    _store("S3_ACCESS_KEY", str, "sluice", "the s3 service's only identity", ("compose", "mlflow")),
    _store(
        "S3_SECRET_KEY",
        str,
        None,
        "its secret",
        ("compose", "mlflow"),
        compose="sluice-s3-secret-change-me",
    ),
    _store(
        "SLUICE_STORE_WAIT_SECONDS",
        float,
        60.0,
        "how long MLflow waits at start for its database and bucket",
        ("mlflow",),
    ),
    _data(
        "SLUICE_DATA_DIR",
        str,
        None,
        (
            "the host directory mounted at SLUICE_DATA_ROOT in the trainer and the Dask "
            "workers; create it yourself, writable by uid 10001 (the images' user), for "
            "output_uri"
        ),
        read_by=COMPOSE,
        compose="./data",
        env_example=True,
    ),
    _data(
        "SLUICE_DATA_ROOT",
        str,
        None,
        "the only directory data_uri and output_uri paths may name",
        read_by=("trainer", "dask"),
        shown="unset (Compose: /srv/sluice-data, from SLUICE_DATA_DIR)",
    ),
    _data(
        "SLUICE_DATA_BUCKETS",
        str,
        "",
        "comma-separated buckets data_uri=s3:// URIs may name",
        env_example=True,
    ),
    _data(
        "SLUICE_DATA_S3_ENDPOINT",
        str,
        None,
        (
            "the data's S3 endpoint, e.g. http://minio:9000 (empty for AWS); credentials "
            "from the `AWS_*` settings"
        ),
        env_example=True,
    ),
    _data("DATA_MAX_FILES", int, 10_000, "files per data_uri"),
    _data(
        "DATA_MAX_FILE_MB", int, 2048, "the size of one file (one partition) of a data_uri, in MB"
    ),
    _data(
        "DATA_LOCAL_MAX_MB",
        int,
        4096,
        ("the most a trainer without a cluster reads into its own memory for dev, in MB"),
    ),
    _data(
        "DASK_SCHEDULER_ADDRESS",
        str,
        None,
        "run data_uri work on this Dask cluster (tcp://host:8786)",
        shown=(
            "unset (with COMPOSE_PROFILES=dask: tcp://dask-scheduler:8786; neither: on "
            "the trainer itself)"
        ),
        env_example=True,
    ),
    _data(
        "CLUSTER_SAMPLE_ROWS",
        int,
        200_000,
        (
            "rows sampled on a cluster for column kinds, validation metrics and the "
            "monitoring reference"
        ),
    ),
    _data(
        "DASK_WORKERS",
        int,
        2,
        "the Compose dask profile's workers (one container each)",
        read_by=COMPOSE,
        env_example=True,
    ),
    _data(
        "DASK_WORKER_MEMORY",
        str,
        "2GiB",
        (
            "per worker: the memory it may use before spilling to disk and, past 95%, "
            "being restarted by its nanny"
        ),
        read_by=COMPOSE,
        env_example=True,
    ),
    _data(
        "DASK_WORKER_THREADS",
        int,
        1,
        "per worker: its task threads",
        read_by=COMPOSE,
        env_example=True,
    ),
    _data("JOBS_THREADS", int, 1, "jobs run at once per trainer process"),
    _data("JOBS_MAX_QUEUED", int, 16, "jobs held per trainer process; more are refused"),
    _data("JOBS_STALE_SECONDS", float, 30.0, "a job silent this long is marked failed"),
    _data("JOBS_RETENTION_DAYS", float, 30.0, "how long finished jobs are listed"),
    _own(
        "SLUICE_COMPOSE_PROFILES",
        (
            "COMPOSE_PROFILES as Compose gave it, for the trainer and MLflow to find the "
            "profiles' services"
        ),
        ("trainer", "mlflow"),
    ),
    _own(
        "SLUICE_MLFLOW_STATE",
        ("the tracking server's state directory (local mode: SLUICE_HOME; its image: /data)"),
        ("mlflow", "scripts"),
    ),
    _own(
        "SLUICE_BOOT_ID",
        (
            "this trainer start's id, set by the gunicorn master for its workers (jobs of"
            " an earlier start are marked failed)"
        ),
        ("gunicorn",),
    ),
    _own(
        "PROMETHEUS_MULTIPROC_DIR",
        (
            "prometheus_client's directory for the workers' metric files; the gunicorn "
            "master makes one unless it is set (then it must be a directory of its own "
            "per service)"
        ),
        ("gunicorn",),
        passed=True,
    ),
    _own(
        "SLUICE_PROMETHEUS_DIR_MADE",
        ("the PROMETHEUS_MULTIPROC_DIR the gunicorn master made (so a restart wipes only its own)"),
        ("gunicorn",),
    ),
    _own(
        "PYTHONPATH",
        "Python's own: where local.sh's services and the backup scripts find Sluice's code "
        "(a Dask cluster needs none: the trainer ships the code)",
        ("local.sh", "scripts"),
        passed=True,
    ),
    _own(
        "SLUICE_QUIET_STOP",
        "set by local.sh's start for the stop it runs first: no 'nothing running' message",
        ("local.sh",),
    ),
]
