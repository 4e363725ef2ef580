"""HTTP views of the preprocess service: parse the upload, forward it, relay the answer."""

from __future__ import annotations

import re
from urllib.parse import quote

from flask import Blueprint, Response, current_app, jsonify, request

from preprocess.analyze import analyze_upload
from preprocess.forward import TrainerAnswer, relay
from preprocess.health import trainer_state
from sluice_common import error_codes
from sluice_common.errors import ApiError
from sluice_common.web.params import parse_params, uploaded_files
from sluice_common.web.upload import read_form_upload

bp = Blueprint("preprocess", __name__)
JOB_ID = re.compile(r"^[0-9a-f]{32}$")


@bp.post("/analyze")
def analyze():
    """Parse the CSV into a table of text cells (stateless) and hand it to the trainer, whose
    model decides what the cells mean."""
    config = current_app.config
    params = parse_params(request.args, config["DEFAULT_MODEL_NAME"])
    if params.data_uri is not None:
        if request.content_length or uploaded_files(request):
            raise ApiError(
                error_codes.DATA_URI_AND_FILE,
                "Give either data_uri=... or an uploaded data_file, not both.",
            )
        # The trainer resolves and reads the files (it, or its cluster, holds the data root).
        return _to_trainer("POST", "/ml", b"")
    # The bytes are passed unnamed: the callee holds the only reference and drops it after
    # parsing, as this view did when it parsed them itself.
    answer = analyze_upload(
        params, read_form_upload(request)[0], request.headers.get("Authorization")
    )
    # Relay the trainer's answer as it is: re-encoding a large prediction list costs time.
    return _relayed(answer)


def _relayed(answer: TrainerAnswer) -> Response:
    response = Response(answer.body, status=answer.status, content_type=answer.content_type)
    if answer.retry_after:
        response.headers["Retry-After"] = answer.retry_after
    for name, value in answer.headers:
        response.headers[name] = value
    return response


def _to_trainer(method: str, path: str, body: bytes | None = None, content_type=None):
    """Relay this request to the trainer as it is (the trainer checks it)."""
    config = current_app.config
    headers = {"Content-Type": content_type} if content_type else {}
    answer = relay(
        config["TRAINER_URL"],
        method,
        path,
        list(request.args.items(multi=True)) or None,  # repeats kept: the trainer refuses them
        body,
        headers,
        request.headers.get("Authorization"),
        config["TRAINER_CONNECT_TIMEOUT"],
        config["TRAINER_READ_TIMEOUT"],
    )
    return _relayed(answer)


@bp.get("/jobs")
def jobs():
    """The trainer's recent jobs, on the public entry."""
    return _to_trainer("GET", "/jobs")


@bp.route("/jobs/<job_id>", methods=["GET", "DELETE"])
def job(job_id: str):
    """A job's state and answer (GET) or its cancellation (DELETE), relayed."""
    if not JOB_ID.match(job_id):
        raise ApiError(
            error_codes.INVALID_JOB_ID, "A job id is the 32-character id a 202 answer gave."
        )
    return _to_trainer(request.method, f"/jobs/{job_id}")


@bp.get("/monitoring")
def monitoring():
    """The trainer's monitoring summary (JSON), on the public entry."""
    return _to_trainer("GET", "/monitoring")


@bp.get("/monitoring/report")
def monitoring_report():
    """The trainer's monitoring report (HTML), on the public entry."""
    return _to_trainer("GET", "/monitoring/report")


@bp.post("/feedback")
def feedback():
    """Labels for earlier prod rows, passed to the trainer as they were sent."""
    body = request.get_data(cache=False)
    return _to_trainer("POST", "/feedback", body, request.headers.get("Content-Type"))


MODEL_METHODS = ["GET", "POST", "PUT", "DELETE"]


@bp.route("/models", methods=MODEL_METHODS)
@bp.route("/models/<path:rest>", methods=MODEL_METHODS)
def models(rest: str | None = None):
    """Every /models route (the catalogue, champions, challengers, retraining), relayed with
    its body and media type: the trainer parses and checks it, so new model routes need no
    change here."""
    path = "/models" if rest is None else f"/models/{quote(rest, safe='/')}"
    body = request.get_data(cache=False)
    if not body and request.method in ("GET", "DELETE"):
        body = None
    return _to_trainer(request.method, path, body, request.headers.get("Content-Type"))


@bp.get("/metrics/trainer")
def trainer_metrics():
    """The trainer's Prometheus metrics, on the public entry."""
    return _to_trainer("GET", "/metrics")


@bp.get("/health")
def health():
    """Readiness: 200 "ok" when the trainer answers, else 503 "degraded" with the reason
    (every request preprocess serves goes through the trainer)."""
    state = trainer_state(current_app.config["TRAINER_URL"])
    body = {"status": "ok", "service": "preprocess", "trainer": {"reachable": state.reachable}}
    if state.reachable:
        return jsonify(body)
    return jsonify({**body, "status": "degraded", "reason": state.reason}), 503


@bp.get("/livez")
def livez():
    """Liveness: this process answers; nothing else is checked."""
    return jsonify({"status": "alive", "service": "preprocess"})
