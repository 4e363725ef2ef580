"""One upload's way to the trainer: parse the CSV into text cells, hand it over as Arrow, keep
the internal token. Used by POST /analyze and by the console's train and predict forms, so
both follow the same rules (the job threshold, admission, the target's resolution)."""

from __future__ import annotations

from flask import current_app

from preprocess.forward import TrainerAnswer, forward_to_trainer
from sluice_common.tables.transport import (
    ARROW_MEDIA_TYPE,
    COLUMNS_MEDIA_TYPE,
    columns_to_json,
    table_to_arrow,
)
from sluice_common.web.app import heavy_slot
from sluice_common.web.internal import read_token
from sluice_common.web.params import Params
from sluice_common.web.upload import parse_upload


def analyze_upload(params: Params, raw: bytes, authorization: str | None) -> TrainerAnswer:
    """The trainer's answer to the upload `raw` with `params` (run as a job above
    JOBS_UPLOAD_MB); `authorization` is passed on as the client sent it."""
    config = current_app.config
    # Parsing only: the slot is free again while the trainer works.
    len_raw = len(raw)
    with heavy_slot(params.phase, raw, "parsing uploads"):  # by bytes and by cells
        table, report, target = parse_upload(raw, params.phase, params.target)
        del raw
        if isinstance(table, dict):  # a few rows, parsed without pandas or Arrow
            payload, media_type = columns_to_json(table, report), COLUMNS_MEDIA_TYPE
        else:  # the string columns as parsed: no DataFrame between
            payload, media_type = table_to_arrow(table, report), ARROW_MEDIA_TYPE
        del table
    query = params.as_query()
    if len_raw > config["JOBS_UPLOAD_MB"] * 2**20:
        query["async"] = "true"  # long work: answered 202 with a job to follow
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
        authorization,
        token,
        config["TRAINER_CONNECT_TIMEOUT"],
        config["TRAINER_READ_TIMEOUT"],
        media_type,
    )
    if answer.status == 403:
        current_app.extensions.pop("internal_token", None)
    elif token:
        current_app.extensions["internal_token"] = token
    return answer
