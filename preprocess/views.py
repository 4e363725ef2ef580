"""HTTP views of the preprocess service: parse the upload, forward it, relay the answer."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from preprocess.forward import forward_to_trainer, trainer_healthy
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
    response = Response(answer.body, status=answer.status, content_type=answer.content_type)
    if answer.retry_after:
        response.headers["Retry-After"] = answer.retry_after
    return response


@bp.get("/health")
def health():
    """Liveness plus whether the trainer answers."""
    reachable = trainer_healthy(current_app.config["TRAINER_URL"])
    return jsonify({"status": "ok", "service": "preprocess", "trainer": {"reachable": reachable}})
