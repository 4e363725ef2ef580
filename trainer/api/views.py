"""HTTP views of the trainer: parse the request, call the phase, return its answer."""

from __future__ import annotations

import os
import secrets

import pyarrow as pa
from flask import Blueprint, Response, current_app, has_app_context, jsonify, request

from sluice_common import error_codes
from sluice_common.choices import resolve_target
from sluice_common.database import utcnow
from sluice_common.errors import ApiError
from sluice_common.tables.parsing import MAX_COLUMNS, SMALL_ROWS, as_frame
from sluice_common.tables.transport import (
    ARROW_MEDIA_TYPE,
    COLUMNS_MEDIA_TYPE,
    read_arrow,
    read_columns_json,
)
from sluice_common.web import internal
from sluice_common.web.app import heavy_slot
from sluice_common.web.params import (
    parse_feedback_params,
    parse_monitoring_params,
    parse_params,
)
from sluice_common.web.upload import parse_upload, read_form_upload
from trainer.api.challenger import after_labels as challenger_after_labels
from trainer.api.jobs import accepted, job_runner
from trainer.api.retrain import after_labels
from trainer.jobs.work import JOB_BODIES, reference_work, upload_work
from trainer.lifecycle import tracking_health
from trainer.lifecycle.dependencies import storage_unavailable
from trainer.lifecycle.dev import dev_run
from trainer.lifecycle.prod import prod_run
from trainer.model import row_flags
from trainer.model.sluice_model import table_rows
from trainer.monitoring.monitor import parse_time
from trainer.monitoring.presenting import public, report_data
from trainer.monitoring.report import CSP, render_report
from trainer.pipeline.training import InMemory

bp = Blueprint("trainer", __name__)
REPORT_POLICY = CSP + "; frame-ancestors 'none'; form-action 'none'"
HEALTH_PROBE_SECONDS = 1.0
# Bodies only preprocess sends (with the internal token): its parsed table as Arrow, or a few
# rows as JSON column lists.
INTERNAL_BODIES = (ARROW_MEDIA_TYPE, COLUMNS_MEDIA_TYPE)


def _table(raw: bytes, media_type: str, phase: str, target: str | None):
    """The upload's cells (an Arrow table, or a dict of column lists for a few prod rows),
    what was detected while parsing, and the resolved target (dev). Prod cells are converted
    later, only in the columns the champion reads."""
    if media_type == COLUMNS_MEDIA_TYPE:  # a few rows, as parse_upload gives them
        columns, report = read_columns_json(raw, SMALL_ROWS, MAX_COLUMNS)
        if phase == "dev":  # training reads Arrow tables only
            table = pa.table(
                {name: pa.array(cells, pa.string()) for name, cells in columns.items()}
            )
            return table, report, resolve_target(list(columns), target)
        return columns, report, None
    if media_type != ARROW_MEDIA_TYPE:
        # A CSV posted here: the string columns preprocess would have sent.
        return parse_upload(raw, phase, target)
    # Parsed by the preprocess service. The caps bound what decoding may cost: no CSV under
    # the upload limit has more rows than half its bytes (each row is at least "x\n").
    # Each cell takes at least one byte of CSV (its delimiter).
    limit = int(current_app.config["MAX_UPLOAD_MB"] * 1024 * 1024)
    table, report = read_arrow(raw, max_rows=limit // 2, max_columns=MAX_COLUMNS, max_cells=limit)
    if phase == "dev":
        target = resolve_target([str(c) for c in table.column_names], target)
    return table, report or {}, target


@bp.post("/ml")
def ml():
    """dev: train and maybe promote; prod: predict with the champion."""
    state = current_app.extensions["sluice"]
    params = parse_params(request.args, current_app.config["DEFAULT_MODEL_NAME"])
    if params.data_uri is not None:
        if request.files or request.content_length:
            raise ApiError(
                error_codes.DATA_URI_AND_FILE,
                "Give either data_uri=... or an uploaded data_file, not both.",
            )
        work = reference_work(params)
        return accepted(job_runner().submit(params.phase, params.model, _described(params), work))
    raw, media_type = read_form_upload(request, raw_types=INTERNAL_BODIES)
    if media_type in INTERNAL_BODIES and not internal.matches(
        current_app.config["INTERNAL_TOKEN"], request.headers.get(internal.HEADER)
    ):
        raise ApiError(
            error_codes.ARROW_NOT_ALLOWED,
            "Arrow and column bodies are accepted only from the preprocess service; send the CSV "
            "as the multipart field data_file instead.",
        )
    # An Arrow body's size says little about its CSV's: preprocess sets async for large files.
    large = (
        media_type not in INTERNAL_BODIES
        and len(raw) > current_app.config["JOBS_UPLOAD_MB"] * 2**20
    )
    if params.run_async or large:
        return accepted(_upload_job(params, raw, media_type, state))
    what = "trainings" if params.phase == "dev" else "large or wide prod batches"
    # A column body holds at most SMALL_ROWS rows in 1 MiB: judged by its size alone (its
    # JSON is no CSV to count cells in; counted as one, a single row took a heavy slot).
    judged = len(raw) if media_type == COLUMNS_MEDIA_TYPE else raw
    with heavy_slot(params.phase, judged, what, arrow=media_type == ARROW_MEDIA_TYPE):
        return jsonify(_run(params, raw, media_type))


def _described(params) -> dict:
    """The job's parameters as listed by GET /jobs."""
    return {k: v for k, v in params.as_query().items() if k != "async"}


def _upload_job(params, raw: bytes, media_type: str, state) -> str:
    """Spool the upload to the state directory and queue its phase as a job."""
    folder = os.path.join(state.state_dir, JOB_BODIES)
    os.makedirs(folder, exist_ok=True)
    job_id = secrets.token_hex(16)
    path = os.path.join(folder, job_id)  # named by its job: a restart removes the dead ones
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
            handle.write(raw)
    except OSError as err:
        raise storage_unavailable(err) from err
    del raw
    work = upload_work(params, path, media_type, _run)

    def discard():
        if os.path.exists(path):
            os.unlink(path)

    try:
        return job_runner().submit(
            params.phase, params.model, _described(params), work, job_id=job_id, discard=discard
        )
    except BaseException:
        discard()
        raise


def _run(params, raw: bytes, media_type: str, on_round=None) -> dict:
    """Parse the upload and run its phase; the answer."""
    state = current_app.extensions["sluice"]
    table, report, target = _table(raw, media_type, params.phase, params.target)
    if table_rows(table) == 0:
        raise ApiError(error_codes.NO_ROWS, "The file has no data rows.")
    if params.phase == "dev":
        answer = dev_run(
            InMemory(table, report.get("delimiter", ","), on_round),
            report,
            model_name=params.model,
            target=target,
            task=params.task,
            promote=params.promote,
            config=state.training,
            gate=state.gate,
            cache=state.cache,
            state_dir=state.state_dir,
            tags=state.tags,
            rows_max_mb=current_app.config["TRAINING_ROWS_MAX_MB"],
        )
    else:
        answer = prod_run(
            table,
            report,
            model_name=params.model,
            proba=params.proba,
            cache=state.cache,
            monitor=state.monitor,
            max_flagged_rows=max_flagged_rows(),
            shadow=state.shadow,
        )
    return answer


def max_flagged_rows() -> int:
    """MAX_FLAGGED_ROWS of the trainer app serving this request (the default outside one)."""
    if not has_app_context():
        return row_flags.DEFAULT_MAX_FLAGGED_ROWS
    return int(current_app.config.get("MAX_FLAGGED_ROWS", row_flags.DEFAULT_MAX_FLAGGED_ROWS))


def _monitor():
    monitor = current_app.extensions["sluice"].monitor
    if monitor is None:
        raise ApiError(
            error_codes.MONITORING_OFF,
            "Monitoring is off on this trainer (MONITORING_ENABLED=0); turn it on to record "
            "prod batches.",
        )
    return monitor


def _summary(monitor):
    query = parse_monitoring_params(request.args, current_app.config["DEFAULT_MODEL_NAME"])
    since = parse_time(query["since"], "since")
    until = parse_time(query["until"], "until")
    if since and until and since > until:
        raise ApiError(error_codes.INVALID_WINDOW, "since must be before until.")
    return monitor.summary(query["model"], query["version"], query["batch_id"], since, until)


@bp.get("/monitoring")
def monitoring():
    """Drift, live quality and status of a model version over a window (JSON)."""
    return jsonify(public(_summary(_monitor())))


@bp.get("/monitoring/report")
def monitoring_report():
    """The same as a self-contained HTML page with plots."""
    monitor = _monitor()
    data = report_data(_summary(monitor), monitor.settings, utcnow())
    response = Response(render_report(data), content_type="text/html; charset=utf-8")
    # The page's own meta CSP, as headers too (frame-ancestors only works as a header).
    response.headers["Content-Security-Policy"] = REPORT_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.post("/feedback")
def feedback():
    """True labels for rows of earlier prod batches (batch_id, row, the target column)."""
    monitor = _monitor()
    model = parse_feedback_params(request.args, current_app.config["DEFAULT_MODEL_NAME"])
    raw, _ = read_form_upload(request)
    with heavy_slot("prod", raw, "label uploads"):  # a large file waits its turn
        cells, _, _ = parse_upload(raw, "dev", None)
        del raw
        if table_rows(cells) == 0:
            raise ApiError(error_codes.NO_ROWS, "The file has no data rows.")
        answer = monitor.feedback(model, as_frame(cells))
    return jsonify({**answer, **after_labels(model, answer), **challenger_after_labels(model)})


@bp.get("/livez")
def livez():
    """Liveness only (no MLflow round trip): what preprocess's readiness probe asks."""
    return jsonify({"status": "alive", "service": "trainer"})


@bp.get("/health")
def health():
    """Liveness plus whether the MLflow tracking server answers."""
    uri = current_app.config["MLFLOW_TRACKING_URI"]
    # Short: a health check must answer fast even when MLflow hangs.
    reachable = tracking_health.answers(uri, HEALTH_PROBE_SECONDS)
    cache = current_app.extensions["sluice"].cache
    return jsonify(
        {
            "status": "ok",
            "service": "trainer",
            "mlflow": {"reachable": reachable},
            "untrusted_versions": cache.untrusted_aliases(),
        }
    )
