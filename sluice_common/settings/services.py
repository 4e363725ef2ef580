"""The settings the trainer and preprocess read (their Flask config), declared."""

from __future__ import annotations

import os
import tempfile

from sluice_common.settings import Setting

BOTH = ("trainer", "preprocess")
TRAINER = ("trainer",)


def _both(name, type_, default, meaning, **more) -> Setting:
    return Setting(name, type_, default, meaning, BOTH, "Both services", env_example=True, **more)


def _admission(name, type_, default, meaning) -> Setting:
    return Setting(name, type_, default, meaning, BOTH, "Admission")


def _trainer(name, type_, default, meaning, section="trainer", **more) -> Setting:
    return Setting(name, type_, default, meaning, TRAINER, section, **more)


SERVICE_SETTINGS = [
    _both(
        "DEFAULT_MODEL_NAME",
        str,
        "default",
        (
            "model name when a request gives none; this name follows the latest dataset "
            "(a schema change is judged like a first version instead of refused)"
        ),
    ),
    _both("MAX_UPLOAD_MB", int, 512, "largest upload in MB (413 above it)"),
    _both(
        "SLUICE_API_TOKEN",
        str,
        None,
        (
            "when set, every request except the probes /health and /livez, the API's "
            "description (/openapi.json, /docs) and the console (/, /console/..., which asks "
            "for the token once at /console/login) needs `Authorization: Bearer <token>`"
        ),
    ),
    _both(
        "SLUICE_ALLOWED_HOSTS",
        str,
        None,
        (
            "host names with a dot the services answer to (comma-separated, e.g. "
            "`sluice.example.com`; `*` wildcards, `name:port` for one port); IP addresses, "
            "localhost and names without a dot (Compose's `trainer`) are always accepted, "
            "any other Host gets 403 `host_not_allowed` (against DNS rebinding). `*` accepts "
            "every Host: only behind a proxy that checks Host itself"
        ),
        shown="unset: IP addresses, localhost and names without a dot only",
    ),
    _both("LOG_LEVEL", str, "INFO", "logging to stderr"),
    Setting(
        "SLUICE_INTERNAL_TOKEN",
        str,
        None,
        (
            "preprocess's credential toward the trainer for Arrow bodies; set the same "
            "value on both services when they do not share a file"
        ),
        BOTH,
        "Both services",
        shown=("unset: the trainer creates SLUICE_INTERNAL_TOKEN_FILE on first start"),
        env_example=True,
    ),
    Setting(
        "SLUICE_INTERNAL_TOKEN_FILE",
        str,
        None,
        "where that token lives (mode 0600)",
        BOTH,
        "Both services",
        shown=(
            "$TRAINER_STATE_DIR/internal.token; local mode: $SLUICE_HOME/internal.token; "
            "Compose: /run/sluice/internal.token on a volume both containers mount"
        ),
    ),
    Setting(
        "JOBS_UPLOAD_MB",
        float,
        100.0,
        "uploads above this many MB run as jobs (202 and `/jobs/<id>`)",
        BOTH,
        "Data by reference, the cluster and jobs",
    ),
    _admission(
        "HEAVY_SLOTS",
        int,
        2,
        (
            "heavy requests (dev trainings; prod and label uploads over HEAVY_PROD_MB or "
            "HEAVY_PROD_CELLS) running at once per service, across its workers"
        ),
    ),
    _admission(
        "ADMISSION_QUEUE",
        int,
        2,
        ("heavy requests per worker process that may wait for a slot; more get 503 `busy` at once"),
    ),
    _admission(
        "ADMISSION_WAIT_SECONDS",
        float,
        30.0,
        ("how long a queued heavy request waits before 503 `busy` with Retry-After"),
    ),
    _admission(
        "HEAVY_PROD_MB", float, 1.0, "prod and label uploads above this size count as heavy"
    ),
    # Estimated cells (see admission.work_cells): ~1 MB of 10 short columns, or 500 columns.
    _admission(
        "HEAVY_PROD_CELLS",
        int,
        500_000,
        (
            "prod and label uploads whose estimated work is above this count as heavy: "
            "rows x columns plus 1,000 per column, counted from the bytes that arrived"
        ),
    ),
    _admission(
        "BODY_SECONDS",
        float,
        15.0,
        (
            "after this grace a request (head and body) must have arrived at "
            "BODY_MIN_RATE_KB KB/s on average, else 408 `upload_too_slow`"
        ),
    ),
    _admission(
        "BODY_MIN_RATE_KB",
        float,
        100.0,
        "the slowest average upload rate accepted after BODY_SECONDS",
    ),
    Setting(
        "ADMISSION_DIR",
        str,
        None,
        "where preprocess keeps its admission slot files",
        ("preprocess",),
        "preprocess",
        shown="a directory of the gunicorn master's in $TMPDIR",
    ),
    Setting(
        "MLFLOW_UI_URL",
        str,
        None,
        (
            "where people open MLflow's UI (e.g. http://127.0.0.1:5000): the console links each "
            "version's run there; unset, it shows the run ids"
        ),
        ("preprocess",),
        "preprocess",
    ),
    Setting(
        "TRAINER_URL",
        str,
        "http://127.0.0.1:8080",
        ("where preprocess finds the trainer (Compose sets it from PREPROCESS_TRAINER_URL)"),
        ("preprocess",),
        "preprocess",
        shown="http://127.0.0.1:$TRAINER_PORT",
    ),
    Setting(
        "TRAINER_CONNECT_TIMEOUT",
        float,
        3.0,
        "seconds preprocess waits to connect to the trainer",
        ("preprocess",),
        "preprocess",
        env_example=True,
    ),
    Setting(
        "TRAINER_READ_TIMEOUT",
        float,
        3600.0,
        "seconds preprocess waits for the trainer's answer",
        ("preprocess",),
        "preprocess",
        env_example=True,
    ),
    _trainer(
        "MLFLOW_TRACKING_URI",
        str,
        "http://127.0.0.1:5000",
        ("the tracking server (Compose and local mode set it from TRAINER_MLFLOW_URI)"),
    ),
    _trainer(
        "TRAINER_STATE_DIR",
        str,
        os.path.join(tempfile.gettempdir(), "sluice-trainer"),
        (
            "promotion locks, champion markers, local champion copies, the signing key "
            "and (by default) the SQLite monitoring and jobs store"
        ),
        shown=("$TMPDIR/sluice-trainer; local mode: $SLUICE_HOME/trainer; Compose: /data/trainer"),
    ),
    _trainer(
        "CHAMPION_POLL_SECONDS",
        float,
        5.0,
        ("how often to check for an alias moved outside Sluice (e.g. in the MLflow UI)"),
        env_example=True,
    ),
    _trainer(
        "CHALLENGER_AUTO_PROMOTE",
        bool,
        False,
        (
            "a shadow challenger decided `promote` (better beyond the noise on labelled rows)"
            " becomes the champion by itself; off: promotion stays a call to /champion"
        ),
        env_example=True,
    ),
    _trainer(
        "CHALLENGER_QUEUE_BATCHES",
        int,
        256,
        (
            "prod batches each trainer worker holds for its shadow challenger (besides those"
            " being scored); when full, a batch is skipped (counted), never waited for"
        ),
    ),
    _trainer("TRAIN_SEED", int, 42, "seeds the split and XGBoost", env_example=True),
    _trainer(
        "TRAIN_VALIDATION_FRACTION",
        float,
        0.2,
        "held-out rows for metrics and promotion",
        env_example=True,
    ),
    _trainer("TRAIN_MAX_ROUNDS", int, 1000, "boosting rounds", env_example=True),
    _trainer(
        "TRAIN_EARLY_STOPPING_ROUNDS",
        int,
        100,
        "rounds without improvement before boosting stops",
        env_example=True,
    ),
    _trainer("TRAIN_LEARNING_RATE", float, 0.1, "XGBoost's eta", env_example=True),
    _trainer("TRAIN_MAX_DEPTH", int, 6, "XGBoost's max_depth", env_example=True),
    _trainer(
        "TRAIN_NTHREAD", int, 0, "XGBoost threads per training (0: all cores)", env_example=True
    ),
    _trainer(
        "TRAIN_MIN_CATEGORY_ROWS",
        int,
        5,
        ("training rows a category level needs to be kept (rarer ones are grouped)"),
    ),
    _trainer(
        "MAX_FLAGGED_ROWS",
        int,
        1000,
        (
            "prod answers list at most this many flagged_rows (the first ones, in input "
            "order); the rest are counted in flagged_rows_omitted"
        ),
        env_example=True,
    ),
    _trainer("PROMOTION_MIN_ROWS", int, 100, "comparison rows needed for automatic promotion"),
    _trainer(
        "PROMOTION_CONFIDENCE", float, 0.95, "confidence of the paired interval (0.9, 0.95 or 0.99)"
    ),
    _trainer("PROMOTION_RESAMPLES", int, 1000, "bootstrap resamples"),
    _trainer(
        "SLUICE_GIT_COMMIT",
        str,
        None,
        "recorded on every run as mlflow.source.git.commit",
        shown="from git (scripts/compose.sh and local mode fill it)",
        env_example=True,
    ),
    _trainer(
        "SLUICE_SIGNING_KEY",
        str,
        None,
        (
            "key for the HMAC that marks versions Sluice made (at least 32 characters); "
            "set the same value on every trainer that shares a registry"
        ),
        shown=("unset: generated into $TRAINER_STATE_DIR/signing.key on first start"),
    ),
    _trainer(
        "TRAINER_WARM_UP",
        bool,
        True,
        (
            "at start each worker trains and scores a tiny model and signs in to MLflow, "
            "so the first dev answer is as fast as later ones (0 skips it)"
        ),
    ),
]
