"""The model catalogue over HTTP: GET /models, GET /models/<name>, and
POST /models/<name>/champion (a promotion or a rollback, with its reason)."""

from __future__ import annotations

import json

from flask import Blueprint, current_app, jsonify, request

from sluice_common import error_codes
from sluice_common.errors import ApiError
from sluice_common.web.params import VERSION, model_name
from trainer.lifecycle import catalogue
from trainer.lifecycle.champion import REASON_MAX_CHARS, change_champion
from trainer.lifecycle.dependencies import dependency_errors

bp = Blueprint("models", __name__)


def _name(name: str) -> str:
    return model_name({"model": name}, "")


def _page(allowed: tuple[int, int]) -> tuple[int, str | None]:
    """limit (default, largest) and page (a next_page token) of a listing."""
    unknown = sorted(set(request.args) - {"limit", "page"})
    if unknown:
        raise ApiError(
            error_codes.UNKNOWN_PARAMETER,
            f"Unknown parameter {unknown[0]!r}: this listing takes limit=N and page=<next_page>.",
        )
    repeated = [k for k in ("limit", "page") if len(request.args.getlist(k)) > 1]
    if repeated:
        raise ApiError(error_codes.REPEATED_PARAMETER, f"Give {repeated[0]} once.")
    default, largest = allowed
    text = request.args.get("limit", str(default))
    if not text.isdigit() or not 1 <= int(text) <= largest:
        raise ApiError(
            error_codes.INVALID_LIMIT, f"limit must be a whole number from 1 to {largest}."
        )
    page = request.args.get("page") or None
    if page is not None and len(page) > 1000:
        raise ApiError(error_codes.INVALID_PAGE, "page must be the next_page of an answer.")
    return int(text), page


@bp.get("/models")
def list_models():
    """Sluice's models: champion, challenger and versions registered, a page at a time."""
    limit, page = _page(catalogue.MODELS_LIMIT)
    with dependency_errors():
        return jsonify(catalogue.list_models(limit, page))


@bp.get("/models/<name>")
def show_model(name: str):
    """A model's versions with their evidence (a page, newest first) and its history."""
    name = _name(name)
    limit, page = _page(catalogue.VERSIONS_LIMIT)
    cache = current_app.extensions["sluice"].cache
    with dependency_errors():
        return jsonify(catalogue.model_detail(name, limit, page, cache))


def _json_object() -> dict:
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ApiError(
            error_codes.NOT_A_JSON_OBJECT,
            'The body must be a JSON object, e.g. {"version": "2", "reason": "rollback: v3 '
            'mislabels returns"}.',
        )
    return body


@bp.post("/models/<name>/champion")
def set_champion(name: str):
    """Make a version the champion (promotion or rollback); the reason goes to the history."""
    name = _name(name)
    body = _json_object()
    version = body.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not VERSION.match(version.strip()):
        raise ApiError(
            error_codes.INVALID_VERSION,
            f'version must be a version number of {name!r} as a string, e.g. "2"; got '
            f"{json.dumps(version)[:40]}.",
        )
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX_CHARS:
        raise ApiError(
            error_codes.INVALID_REASON,
            f"reason must be a non-empty string of at most {REASON_MAX_CHARS} characters "
            "saying why (it is kept in the model's history); got "
            f"{json.dumps(reason)[:40]}.",
        )
    state = current_app.extensions["sluice"]
    answer = change_champion(
        name,
        version.strip(),
        reason.strip(),
        "api",
        cache=state.cache,
        state_dir=state.state_dir,
    )
    return jsonify(answer)
