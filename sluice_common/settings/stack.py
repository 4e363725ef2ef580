"""The settings of the stack around the services, declared: Compose, local mode, ports and
processes, healthchecks and MLflow."""

from __future__ import annotations

from sluice_common.settings import Setting

COMPOSE = ("compose",)
LOCAL = ("local.sh",)
BOTH_MODES = ("compose", "local.sh")


def _compose(name, type_, default, meaning, **more) -> Setting:
    return Setting(name, type_, default, meaning, COMPOSE, "Compose", env_example=True, **more)


def _process(name, type_, default, meaning, read_by=BOTH_MODES, **more) -> Setting:
    more.setdefault("env_example", True)
    return Setting(name, type_, default, meaning, read_by, "Ports and processes", **more)


def _health(name, default, meaning) -> Setting:
    return Setting(name, str, default, meaning, COMPOSE, "Healthchecks", env_example=True)


STACK_SETTINGS = [
    _compose(
        "COMPOSE_PROJECT_NAME",
        str,
        None,
        (
            "Compose's project name: prefixes the containers, the network and the "
            "volumes; stacks with different names (and ports) run side by side"
        ),
        shown="the checkout's directory name",
        example="main",
        passed=True,
    ),
    _compose(
        "COMPOSE_PROFILES",
        str,
        None,
        (
            "Compose's profiles, comma-separated: s3 adds the s3 service and puts the "
            "artifacts in it; dask adds a Dask scheduler and DASK_WORKERS workers for "
            "data_uri work"
        ),
        example="s3,dask",
        passed=True,
    ),
    _compose(
        "SLUICE_IMAGE_PREFIX",
        str,
        "sluice",
        ("images built and run: `<prefix>-{mlflow,trainer,preprocess,s3}:<tag>`"),
    ),
    _compose("SLUICE_IMAGE_TAG", str, "latest", "the images' tag"),
    _compose(
        "RESTART_POLICY",
        str,
        "unless-stopped",
        ("restart policy of every container (no, always, on-failure, unless-stopped)"),
    ),
    _compose(
        "STOP_GRACE_PERIOD",
        str,
        "30s",
        ("how long down/stop lets a container shut down before killing it"),
    ),
    _compose(
        "MLFLOW_UI",
        bool,
        False,
        (
            "1 publishes MLflow's UI and API on BIND_HOST:MLFLOW_PORT "
            "(docker-compose.mlflow-ui.yml): whoever reaches it can register models and "
            "move aliases"
        ),
    ),
    Setting(
        "START_TIMEOUT",
        int,
        90,
        (
            "seconds start.sh waits for every /health before failing with the log tail "
            "and the last answer"
        ),
        BOTH_MODES,
        "Ports and processes",
        compose="300",
        env_example=True,
    ),
    Setting(
        "SLUICE_HOME",
        str,
        None,
        ("local mode's state: mlflow.db, artifacts/, trainer/, logs/, run/ (pid files)"),
        ("local.sh", "scripts"),
        "Local mode",
        shown="./.sluice",
    ),
    Setting(
        "SLUICE_VENV",
        str,
        None,
        "the Python environment local mode creates and runs",
        ("local.sh", "scripts"),
        "Local mode",
        shown="./.venv",
    ),
    Setting(
        "PYTHON",
        str,
        "python3",
        "interpreter used to create the Python environment",
        LOCAL,
        "Local mode",
    ),
    Setting(
        "GRACEFUL_TIMEOUT",
        int,
        30,
        (
            "seconds a stop lets requests in flight finish; stop (and a start finding a "
            "service still stopping) waits this plus 5 s, then kills what is left"
        ),
        LOCAL,
        "Local mode",
    ),
    Setting(
        "SLUICE_MODE",
        str,
        "auto",
        (
            "docker, local or auto (docker when a Docker engine answers): the mode of "
            "start.sh and the backup scripts"
        ),
        ("start.sh", "scripts"),
        "Local mode",
    ),
    _process(
        "BIND_HOST",
        str,
        "127.0.0.1",
        (
            "address the ports are published on (local mode: bound to); 0.0.0.0 exposes "
            "the stack: then set SLUICE_API_TOKEN, and SLUICE_ALLOWED_HOSTS and "
            "MLFLOW_ALLOWED_HOSTS to the names it is reached by"
        ),
    ),
    _process("PREPROCESS_PORT", int, 8050, "preprocess's port on BIND_HOST"),
    _process("TRAINER_PORT", int, 8080, "the trainer's port on BIND_HOST"),
    _process(
        "MLFLOW_PORT", int, 5000, "MLflow's port (published in Compose only with MLFLOW_UI=1)"
    ),
    _process("PREPROCESS_WORKERS", int, 2, "preprocess's gunicorn workers"),
    _process("PREPROCESS_THREADS", int, 8, "threads per preprocess worker"),
    _process(
        "PREPROCESS_TIMEOUT", int, 3600, "gunicorn's worker timeout for preprocess, in seconds"
    ),
    _process(
        "PREPROCESS_GUNICORN_CMD_ARGS",
        str,
        None,
        ("any other gunicorn options for preprocess (Compose passes them as GUNICORN_CMD_ARGS)"),
        read_by=COMPOSE,
    ),
    _process(
        "PREPROCESS_TRAINER_URL",
        str,
        None,
        ("where preprocess finds the trainer on the Compose network (sets TRAINER_URL)"),
        read_by=COMPOSE,
        compose="http://trainer:8080",
    ),
    _process(
        "TRAINER_WORKERS",
        int,
        1,
        (
            "the trainer's gunicorn workers: each holds MLflow, XGBoost and pandas (~290 "
            "MB) and the champion; champions stay coherent across workers"
        ),
    ),
    _process("TRAINER_THREADS", int, 8, "threads per trainer worker"),
    _process(
        "TRAINER_TIMEOUT",
        int,
        3600,
        (
            "gunicorn's worker timeout for the trainer, in seconds: it must cover your "
            "longest training"
        ),
    ),
    _process(
        "TRAINER_GUNICORN_CMD_ARGS",
        str,
        None,
        ("any other gunicorn options for the trainer (Compose passes them as GUNICORN_CMD_ARGS)"),
        read_by=COMPOSE,
    ),
    _process(
        "TRAINER_MLFLOW_URI",
        str,
        None,
        "where the trainer finds MLflow (sets MLFLOW_TRACKING_URI)",
        compose="http://mlflow:5000",
        shown="http://127.0.0.1:$MLFLOW_PORT",
    ),
    _process(
        "GUNICORN_CMD_ARGS",
        str,
        None,
        ("gunicorn's own: any other options for both services in local mode"),
        read_by=("gunicorn",),
        passed=True,
        env_example=False,
    ),
    _process("MLFLOW_WORKERS", int, 1, "the tracking server's workers"),
    _health("HEALTHCHECK_INTERVAL", "5s", "time between two healthchecks of a container"),
    _health("HEALTHCHECK_TIMEOUT", "5s", "how long a healthcheck may take"),
    _health("HEALTHCHECK_RETRIES", "5", "failed healthchecks before a container is unhealthy"),
    _health("MLFLOW_START_PERIOD", "90s", "grace for MLflow's first healthchecks"),
    _health("TRAINER_START_PERIOD", "90s", "grace for the trainer's first healthchecks"),
    _health("PREPROCESS_START_PERIOD", "30s", "grace for preprocess's first healthchecks"),
    _health("DB_START_PERIOD", "60s", "grace for the db service's first healthchecks"),
    _health("S3_START_PERIOD", "60s", "grace for the s3 service's first healthchecks"),
    _health("DASK_START_PERIOD", "30s", "grace for the Dask containers' first healthchecks"),
    Setting(
        "MLFLOW_TRACKING_USERNAME",
        str,
        "sluice",
        (
            "MLflow's account (an MLflow admin): the tracking server requires it (basic "
            "auth; only /health is open), the trainer signs in with it"
        ),
        ("trainer", "mlflow"),
        "MLflow",
        env_example=True,
    ),
    Setting(
        "MLFLOW_TRACKING_PASSWORD",
        str,
        None,
        (
            "its password, 12 characters or more; set at every start of the tracking "
            "server, so a new value and a restart rotate it. Unset under Compose, read the "
            "generated one with `docker compose exec mlflow cat /run/mlflow-account/password`"
        ),
        ("trainer", "mlflow"),
        "MLflow",
        shown=("unset: generated on first start into MLFLOW_TRACKING_PASSWORD_FILE"),
        env_example=True,
        example="",
    ),
    Setting(
        "MLFLOW_TRACKING_PASSWORD_FILE",
        str,
        None,
        "where the generated password lives (mode 0600)",
        ("trainer", "mlflow"),
        "MLflow",
        shown=(
            "local mode: $SLUICE_HOME/mlflow.password; Compose: "
            "/run/mlflow-account/password on a volume the trainer mounts read-only"
        ),
    ),
    Setting(
        "MLFLOW_AUTH_DATABASE_URI",
        str,
        None,
        "MLflow's user store",
        ("mlflow",),
        "MLflow",
        shown=("sqlite:///$SLUICE_HOME/mlflow-auth.db (Compose: /data/mlflow-auth.db)"),
    ),
    Setting(
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        str,
        None,
        "the key of MLflow's session cookies",
        ("mlflow",),
        "MLflow",
        shown="generated on first start beside the user store",
    ),
    Setting(
        "MLFLOW_ALLOWED_HOSTS",
        str,
        None,
        (
            "Host headers MLflow accepts (comma-separated, `*` wildcards); add your host "
            "name when BIND_HOST is not loopback"
        ),
        ("mlflow",),
        "MLflow",
        compose="mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*",
        passed=True,
        env_example=True,
        shown="MLflow's own",
    ),
    Setting(
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION",
        str,
        "false",
        ("MLflow's GenAI job runner; Sluice does not use it (true costs ~280 MB of memory)"),
        ("mlflow",),
        "MLflow",
        passed=True,
        env_example=True,
    ),
]
