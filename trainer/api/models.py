"""The model catalogue over HTTP: GET /models, GET /models/<name>, and
POST /models/<name>/champion (a promotion or a rollback, with its reason)."""

from __future__ import annotations

import unicodedata

from flask import Blueprint, current_app, jsonify, request

from sluice_common import error_codes
from sluice_common.errors import ApiError
from sluice_common.web.params import json_object, model_name, shown, version_field
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
            f"Unknown parameter {unknown[0][:40]!r}: this listing takes limit=N and "
            "page=<next_page>.",
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
        raise ApiError(
            error_codes.INVALID_PAGE,
            "page must be the next_page value of the previous answer, passed as it is.",
        )
    return int(text), page


@bp.get("/models")
def list_models():
    """Sluice's models: champion, challenger and versions registered, a page at a time."""
    limit, page = _page(catalogue.MODELS_LIMIT)
    key = current_app.extensions["sluice"].cache.key
    with dependency_errors():
        return jsonify(catalogue.list_models(limit, page, key))


@bp.get("/models/<name>")
def show_model(name: str):
    """A model's versions with their evidence (a page, newest first) and its history."""
    name = _name(name)
    limit, page = _page(catalogue.VERSIONS_LIMIT)
    cache = current_app.extensions["sluice"].cache
    with dependency_errors():
        return jsonify(catalogue.model_detail(name, limit, page, cache))


BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _hidden(char: str) -> bool:
    return unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS


@bp.post("/models/<name>/champion")
def set_champion(name: str):
    """Make a version the champion (promotion or rollback); the reason goes to the history."""
    name = _name(name)
    if request.args:
        raise ApiError(
            error_codes.UNKNOWN_PARAMETER,
            f"Unknown parameter {sorted(request.args)[0][:40]!r}: this request takes no query "
            'parameters, only a JSON body such as {"version": "2", "reason": "..."}.',
        )
    body = json_object(request, '{"version": "2", "reason": "rollback: v3 mislabels returns"}')
    version = version_field(body, name, "2")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX_CHARS:
        raise ApiError(
            error_codes.INVALID_REASON,
            f"reason must be a non-empty string of at most {REASON_MAX_CHARS} characters "
            f"saying why (it is kept in the model's history); got {shown(reason)}.",
        )
    hidden = sorted({f"U+{ord(c):04X}" for c in reason if _hidden(c)})
    if hidden:
        # Kept in the history, shown in the MLflow UI and the console: no control characters
        # or bidirectional overrides that would make it read otherwise than it was written.
        raise ApiError(
            error_codes.INVALID_REASON,
            f"reason contains control or direction characters ({', '.join(hidden[:5])}); "
            "write it as plain text on one line.",
        )
    state = current_app.extensions["sluice"]
    answer = change_champion(
        name,
        version,
        reason.strip(),
        "api",
        cache=state.cache,
        state_dir=state.state_dir,
    )
    return jsonify(answer)
