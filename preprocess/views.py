"""HTTP views of the preprocess service: parse and clean the upload, forward it, relay."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from preprocess.forward import forward_to_trainer, trainer_healthy
from sluice_common.cleaning import clean, clean_small, resolve_target
from sluice_common.params import parse_params, read_upload
from sluice_common.parsing import parse_csv, parse_small_csv
from sluice_common.transport import columns_to_arrow, frame_to_arrow

bp = Blueprint("preprocess", __name__)


@bp.post("/analyze")
def analyze():
    """Clean the CSV (stateless) and hand it to the trainer for the requested phase."""
    config = current_app.config
    params = parse_params(request.args, config["DEFAULT_MODEL_NAME"])
    raw, _ = read_upload(request)
    query = params.as_query()
    payload = _small_prod_payload(raw) if params.phase == "prod" else None
    if payload is None:
        parsed = parse_csv(raw)
        target = None
        if params.phase == "dev":
            target = resolve_target(list(parsed.frame.columns), params.target)
            query["target"] = target
        frame, report = clean(parsed.frame, params.phase, target, parsed.delimiter)
        report.update(encoding=parsed.encoding, delimiter=parsed.delimiter)
        payload = frame_to_arrow(frame, report)
    answer = forward_to_trainer(
        config["TRAINER_URL"],
        query,
        payload,
        request.headers.get("Authorization"),
        config["TRAINER_CONNECT_TIMEOUT"],
        config["TRAINER_READ_TIMEOUT"],
    )
    # Relay the trainer's answer as it is: re-encoding a large prediction list costs time.
    return Response(answer.body, status=answer.status, content_type=answer.content_type)


def _small_prod_payload(raw: bytes) -> bytes | None:
    """A few simple rows parsed and cleaned in plain Python, as Arrow; None for other uploads
    (pandas' per-call costs would be most of a single-row request)."""
    small = parse_small_csv(raw)
    if small is None:
        return None
    columns, report = clean_small(small.columns, decimal_comma=small.delimiter == ";")
    report.update(encoding=small.encoding, delimiter=small.delimiter)
    return columns_to_arrow(columns, report)


@bp.get("/health")
def health():
    """Liveness plus whether the trainer answers."""
    reachable = trainer_healthy(current_app.config["TRAINER_URL"])
    return jsonify({"status": "ok", "service": "preprocess", "trainer": {"reachable": reachable}})
