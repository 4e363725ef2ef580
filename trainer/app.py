"""The trainer's app factory: settings, MLflow client, champion cache, monitoring, jobs and
views wired together (trainer/__init__.py builds it on call)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import mlflow
from flask import Flask, request

from sluice_common import settings
from sluice_common.database import jobs_url, monitoring_url
from sluice_common.tables.transport import ARROW_MEDIA_TYPE, ARROW_PER_CSV_BYTE
from sluice_common.web.app import build_app, install_admission
from sluice_common.web.internal import ensure_secret_file, ensure_token
from trainer.api.challenger import bp as challenger_bp
from trainer.api.jobs import bp as jobs_bp
from trainer.api.models import bp as models_bp
from trainer.api.retrain import bp as retrain_bp
from trainer.api.views import bp
from trainer.fit.config import TrainingConfig
from trainer.jobs.runner import JobRunner, JobStore
from trainer.jobs.work import remove_dead_bodies
from trainer.lifecycle import unfinished_runs
from trainer.lifecycle.challenger_shadow import Shadow
from trainer.lifecycle.locks import sweep_in_background
from trainer.lifecycle.promotion import GateConfig
from trainer.lifecycle.serving import ChampionCache
from trainer.lifecycle.signing import load_key
from trainer.lifecycle.warmup import warm_tracking, warm_up
from trainer.monitoring.drift import METHODS, DriftSettings
from trainer.monitoring.monitor import Monitor, PerformanceSettings, ScrapeCollector
from trainer.monitoring.prod_rows import ProdRows
from trainer.monitoring.store import MonitoringStore

# The settings the trainer reads, with their defaults (declared in sluice_common/settings).
DEFAULTS = settings.defaults("trainer")
# MLflow's client retries a dead server for minutes by default; fail fast and answer 503. The
# timeout is per socket operation, so artifact transfers that keep moving are not cut short,
# while a hung server costs at most ~2 x 15 s on a call already under way.
MLFLOW_CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    # With artifacts on S3, MLflow's server offers presigned URLs and its client then reads and
    # writes the bucket directly. The trainer is not on the bucket's network and holds no
    # storage credentials: every artifact byte goes through the tracking server's proxy.
    "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
    "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false",
}


@dataclass
class TrainerState:
    """What the views need beyond config: the champion cache and training settings."""

    cache: object
    training: object
    gate: object
    state_dir: str
    tags: dict
    monitor: object | None = None
    jobs: object | None = None
    shadow: object | None = None  # shadow challengers (with monitoring only)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=os.path.dirname(__file__),
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _mlflow_credentials(config: dict) -> None:
    """Give MLflow's client (which reads them from the environment) the tracking server's
    account: the configured password, else the one tracking/serve.py keeps in its file."""
    password = config["MLFLOW_TRACKING_PASSWORD"]
    if not password and config["MLFLOW_TRACKING_PASSWORD_FILE"]:
        password = ensure_secret_file(config["MLFLOW_TRACKING_PASSWORD_FILE"])
    if password:
        os.environ["MLFLOW_TRACKING_USERNAME"] = config["MLFLOW_TRACKING_USERNAME"]
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password


def _monitor(config: dict, state_dir: str):
    """The monitoring store and settings, or None with MONITORING_ENABLED off."""
    if not config["MONITORING_ENABLED"]:
        return None
    for key in ("MONITORING_NUMERIC_METHOD", "MONITORING_CATEGORICAL_METHOD"):
        if config[key] not in METHODS:
            raise ValueError(f"{key} must be one of {', '.join(METHODS)}")
    settings = DriftSettings(
        numeric_method=config["MONITORING_NUMERIC_METHOD"],
        categorical_method=config["MONITORING_CATEGORICAL_METHOD"],
        warning={m: float(config[f"MONITORING_{m.upper()}_WARNING"]) for m in METHODS},
        alert={m: float(config[f"MONITORING_{m.upper()}_ALERT"]) for m in METHODS},
        min_rows=int(config["MONITORING_MIN_ROWS"]),
        alpha=float(config["MONITORING_ALPHA"]),
        share_alert=float(config["MONITORING_SHARE_ALERT"]),
    )
    store = MonitoringStore(
        monitoring_url(config, state_dir),
        retention_days=float(config["MONITORING_RETENTION_DAYS"]),
        retention_rows=int(config["MONITORING_RETENTION_ROWS"]),
    )
    perf = PerformanceSettings(
        min_labels=int(config["MONITORING_MIN_LABELS"]),
        tolerance=float(config["MONITORING_METRIC_TOLERANCE"]),
    )
    monitor = Monitor(store, settings, perf)
    if int(config["PROD_ROWS_KEPT"]) > 0:
        monitor.prod_rows = ProdRows(store.engine, int(config["PROD_ROWS_KEPT"]))
    return monitor


def create_app(test_config: dict | None = None) -> Flask:
    """Build the trainer app from environment variables (and overrides for tests)."""
    app = build_app("trainer", test_config)
    for key, value in MLFLOW_CLIENT_ENV.items():
        os.environ.setdefault(key, value)

    mlflow.set_tracking_uri(app.config["MLFLOW_TRACKING_URI"])
    _mlflow_credentials(app.config)

    state_dir = app.config["TRAINER_STATE_DIR"]
    os.makedirs(state_dir, exist_ok=True)
    sweep_in_background(state_dir)  # lock files earlier trainers left behind
    install_admission(app, os.path.join(state_dir, "admission"))
    app.config["INTERNAL_TOKEN"] = ensure_token(
        app.config["SLUICE_INTERNAL_TOKEN"],
        app.config["SLUICE_INTERNAL_TOKEN_FILE"] or os.path.join(state_dir, "internal.token"),
    )
    commit = app.config["SLUICE_GIT_COMMIT"] or _git_commit()
    app.extensions["sluice"] = TrainerState(
        cache=ChampionCache(
            state_dir,
            app.config["CHAMPION_POLL_SECONDS"],
            load_key(state_dir, app.config["SLUICE_SIGNING_KEY"]),
        ),
        training=TrainingConfig(
            seed=app.config["TRAIN_SEED"],
            validation_fraction=app.config["TRAIN_VALIDATION_FRACTION"],
            max_rounds=app.config["TRAIN_MAX_ROUNDS"],
            early_stopping_rounds=app.config["TRAIN_EARLY_STOPPING_ROUNDS"],
            learning_rate=app.config["TRAIN_LEARNING_RATE"],
            max_depth=app.config["TRAIN_MAX_DEPTH"],
            nthread=app.config["TRAIN_NTHREAD"],
            min_category_rows=app.config["TRAIN_MIN_CATEGORY_ROWS"],
        ),
        gate=GateConfig(
            min_rows=app.config["PROMOTION_MIN_ROWS"],
            confidence=app.config["PROMOTION_CONFIDENCE"],
            resamples=app.config["PROMOTION_RESAMPLES"],
            seed=app.config["TRAIN_SEED"],
            default_model=app.config["DEFAULT_MODEL_NAME"],
        ),
        state_dir=state_dir,
        tags={"mlflow.source.git.commit": commit} if commit else {},
    )
    internal_limit = int(app.config["MAX_UPLOAD_MB"] * 1024 * 1024 * ARROW_PER_CSV_BYTE) + 2**20
    app.config["MAX_REQUEST_BODY_BYTES"] = internal_limit  # what gunicorn's event loop reads

    @app.before_request
    def _arrow_limit():
        # preprocess re-sends an accepted upload as Arrow, which can be up to ~4x its CSV.
        if request.mimetype == ARROW_MEDIA_TYPE:
            request.max_content_length = internal_limit

    monitor = app.extensions["sluice"].monitor = _monitor(app.config, state_dir)
    if monitor is not None:
        app.extensions.setdefault("metrics_collectors", []).append(
            ScrapeCollector(
                monitor, app.extensions["sluice"].cache, app.config["MONITORING_METRICS_MINUTES"]
            )
        )
    app.extensions["sluice"].jobs = _jobs(app, state_dir)
    if monitor is not None:
        app.extensions["sluice"].shadow = Shadow(
            state_dir,
            app.extensions["sluice"].cache,
            monitor.store,
            app.config["CHALLENGER_QUEUE_BATCHES"],
        )
    app.register_blueprint(bp)
    app.register_blueprint(jobs_bp)
    app.register_blueprint(models_bp)
    app.register_blueprint(retrain_bp)
    app.register_blueprint(challenger_bp)
    if app.config["TRAINER_WARM_UP"]:
        warm_tracking()
        seconds = warm_up(app.extensions["sluice"].training)
        app.logger.info("trainer worker warmed up in %.2f s", seconds)
    return app


def _jobs(app: Flask, state_dir: str) -> JobRunner:
    """The jobs runner, after a restart's leftovers are dealt with: jobs and MLflow runs cut off
    by the last stop are marked failed, and their spooled bodies removed."""
    job_store = JobStore(
        jobs_url(app.config, state_dir),
        stale_seconds=float(app.config["JOBS_STALE_SECONDS"]),
        retention_days=float(app.config["JOBS_RETENTION_DAYS"]),
        encode=app.json.dumps,  # a job's answer encoded as the synchronous answer is
    )
    interrupted = job_store.mark_orphans()
    if interrupted:
        app.logger.warning("%d job(s) cut off by the last restart marked failed", interrupted)
    # Runs are tagged with this process as owner; those of dead owners are marked at start.
    app.extensions["sluice"].tags.update(unfinished_runs.owner_tags(state_dir))
    unfinished_runs.mark_in_background(state_dir)
    remove_dead_bodies(state_dir, job_store.unfinished())
    return JobRunner(job_store, int(app.config["JOBS_THREADS"]), int(app.config["JOBS_MAX_QUEUED"]))
