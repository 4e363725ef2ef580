"""Shadow challengers over HTTP: PUT, GET and DELETE /models/<name>/challenger."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from sluice_common import error_codes
from sluice_common.errors import ApiError
from sluice_common.web.params import json_object, model_name, shown, version_field
from trainer.lifecycle import challenger
from trainer.lifecycle.dependencies import dependency_errors

bp = Blueprint("challenger", __name__)


def _shadow():
    shadow = current_app.extensions["sluice"].shadow
    if shadow is None:
        raise ApiError(
            error_codes.MONITORING_OFF,
            "Shadow challengers keep their predictions beside the prod batches: turn "
            "monitoring on (MONITORING_ENABLED=1) to run one.",
        )
    return shadow


def _name(name: str, known: tuple[str, ...] = ()) -> str:
    """The model's name; 400 for a query parameter the route does not take or one repeated
    (it would be ignored, or only its first value used)."""
    unknown = sorted(set(request.args) - set(known))
    if unknown:
        takes = f"the known ones are {', '.join(known)}" if known else "this route takes none"
        raise ApiError(
            error_codes.UNKNOWN_PARAMETER,
            f"Unknown query parameter(s): {', '.join(repr(n[:40]) for n in unknown[:5])}; {takes}.",
        )
    repeated = [key for key in known if len(request.args.getlist(key)) > 1]
    if repeated:
        raise ApiError(
            error_codes.REPEATED_PARAMETER,
            f"Give each parameter once; repeated: {', '.join(repeated)}.",
        )
    return model_name({"model": name}, "")


@bp.put("/models/<name>/challenger")
def put_challenger(name: str):
    """Start a shadow challenger: 201 (200 when that version already runs)."""
    name = _name(name)
    shadow = _shadow()
    body = json_object(request, '{"version": "3", "mode": "shadow"}')
    version = version_field(body, name, "3")
    mode = body.get("mode", "shadow")
    if mode not in challenger.MODES:
        raise ApiError(
            error_codes.INVALID_MODE,
            f'mode must be "shadow" (the challenger scores the same rows off the request '
            f"path); got {shown(mode)}.",
        )
    state = current_app.extensions["sluice"]
    answer, created = challenger.start(
        name, version, mode, cache=state.cache, shadow=shadow, state_dir=state.state_dir
    )
    return jsonify(answer), 201 if created else 200


@bp.get("/models/<name>/challenger")
def get_challenger(name: str):
    """The comparison on labelled rows, skipped batches, each side's latency and errors."""
    name = _name(name, ("metric",))
    shadow = _shadow()
    metric = request.args.get("metric") or None
    state = current_app.extensions["sluice"]
    with dependency_errors():
        answer = challenger.status(name, shadow, metric)
        if current_app.config["CHALLENGER_AUTO_PROMOTE"]:
            answer["promoted"] = challenger.auto_promote(
                name, answer, cache=state.cache, shadow=shadow, state_dir=state.state_dir
            )
    return jsonify(answer)


@bp.delete("/models/<name>/challenger")
def delete_challenger(name: str):
    """End the challenge; the answer holds its last comparison."""
    name = _name(name)
    state = current_app.extensions["sluice"]
    return jsonify(challenger.end(name, _shadow(), state.state_dir))


def after_labels(model: str) -> dict:
    """After /feedback stored labels: with CHALLENGER_AUTO_PROMOTE on, a challenger they decide
    `promote` becomes the champion; the answer's `challenger_promoted`, or nothing."""
    state = current_app.extensions["sluice"]
    if not current_app.config["CHALLENGER_AUTO_PROMOTE"] or state.shadow is None:
        return {}
    try:  # the labels are stored whatever happens here
        promoted = challenger.after_labels(
            model, cache=state.cache, shadow=state.shadow, state_dir=state.state_dir
        )
    except Exception:  # noqa: BLE001 - GET /models/<name>/challenger answers why
        current_app.logger.exception("auto-promotion of %r's challenger failed", model)
        return {}
    return {} if promoted is None else {"challenger_promoted": promoted}
