"""HTTP views of the preprocess service: parse the upload, forward it, relay the answer."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from preprocess.forward import TrainerAnswer, forward_to_trainer, relay, trainer_healthy
from sluice_common.app import heavy_slot
from sluice_common.internal import read_token
from sluice_common.params import parse_params, read_upload
from sluice_common.transport import columns_to_arrow, frame_to_arrow
from sluice_common.upload import parse_upload

bp = Blueprint("preprocess", __name__)


@bp.post("/analyze")
def analyze():
    """Parse the CSV into a table of text cells (stateless) and hand it to the trainer, whose
    model decides what the cells mean."""
    config = current_app.config
    params = parse_params(request.args, config["DEFAULT_MODEL_NAME"])
    raw, _ = read_upload(request)
    # Parsing only: the slot is free again while the trainer works.
    with heavy_slot(params.phase, len(raw), "parsing uploads"):
        table, report, target = parse_upload(raw, params.phase, params.target)
        del raw
        if isinstance(table, dict):  # a few rows, parsed without pandas
            payload = columns_to_arrow(table, report)
        else:
            payload = frame_to_arrow(table, report)
        del table
    query = params.as_query()
    if target is not None:
        query["target"] = target
    # Read once and kept; read again after a refusal (a trainer that made a new token).
    token = current_app.extensions.get("internal_token") or read_token(
        config["SLUICE_INTERNAL_TOKEN"], config["SLUICE_INTERNAL_TOKEN_FILE"]
    )
    answer = forward_to_trainer(
        config["TRAINER_URL"],
        query,
        payload,
        request.headers.get("Authorization"),
        token,
        config["TRAINER_CONNECT_TIMEOUT"],
        config["TRAINER_READ_TIMEOUT"],
    )
    # Relay the trainer's answer as it is: re-encoding a large prediction list costs time.
    if answer.status == 403:
        current_app.extensions.pop("internal_token", None)
    elif token:
        current_app.extensions["internal_token"] = token
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


@bp.get("/metrics/trainer")
def trainer_metrics():
    """The trainer's Prometheus metrics, on the public entry."""
    return _to_trainer("GET", "/metrics")


@bp.get("/health")
def health():
    """Liveness plus whether the trainer answers."""
    reachable = trainer_healthy(current_app.config["TRAINER_URL"])
    return jsonify({"status": "ok", "service": "preprocess", "trainer": {"reachable": reachable}})
