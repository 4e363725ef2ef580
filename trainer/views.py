"""HTTP views of the trainer: parse the request, call the phase, return its answer."""

from __future__ import annotations

import requests
from flask import Blueprint, current_app, jsonify, request

from sluice_common.cleaning import resolve_target
from sluice_common.errors import ApiError
from sluice_common.params import parse_params, read_upload
from sluice_common.parsing import SMALL_ROWS
from sluice_common.transport import ARROW_MEDIA_TYPE, read_arrow, table_to_frame
from sluice_common.upload import clean_upload
from trainer.runs import dev_run, prod_run
from trainer.sluice_model import table_rows

bp = Blueprint("trainer", __name__)


def _table(raw: bytes, media_type: str, phase: str, target: str | None):
    """The cleaned table, its cleaning report and the resolved target (dev).

    A prod batch of a few rows comes back as a dict of column lists, not a DataFrame:
    building one costs more than scoring the rows.
    """
    if media_type != ARROW_MEDIA_TYPE:
        return clean_upload(raw, phase, target)
    table, report = read_arrow(raw)  # already cleaned by the preprocess service
    if phase == "prod" and table.num_rows <= SMALL_ROWS:
        return table.to_pydict(), report or {}, None
    frame = table_to_frame(table)
    if phase == "dev":
        target = resolve_target([str(c) for c in frame.columns], target)
    return frame, report or {}, target


@bp.post("/ml")
def ml():
    """dev: train and maybe promote; prod: predict with the champion."""
    state = current_app.extensions["sluice"]
    params = parse_params(request.args, current_app.config["DEFAULT_MODEL_NAME"])
    raw, media_type = read_upload(request, raw_types=(ARROW_MEDIA_TYPE,))
    frame, report, target = _table(raw, media_type, params.phase, params.target)
    if params.phase == "dev":
        answer = dev_run(
            frame,
            report,
            model_name=params.model,
            target=target,
            task=params.task,
            promote=params.promote,
            config=state.training,
            cache=state.cache,
            state_dir=state.state_dir,
            tags=state.tags,
        )
    else:
        if table_rows(frame) == 0:
            raise ApiError(400, "no_rows", "The file has no data rows to score.")
        answer = prod_run(
            frame, report, model_name=params.model, proba=params.proba, cache=state.cache
        )
    return jsonify(answer)


@bp.get("/health")
def health():
    """Liveness plus whether the MLflow tracking server answers."""
    uri = current_app.config["MLFLOW_TRACKING_URI"]
    reachable = False
    try:
        reachable = requests.get(f"{uri.rstrip('/')}/health", timeout=2).ok
    except requests.RequestException:
        reachable = False
    return jsonify({"status": "ok", "service": "trainer", "mlflow": {"reachable": reachable}})
