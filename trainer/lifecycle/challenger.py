"""Shadow challengers: start one (the MLflow alias `challenger`, a tag saying its mode and
start), answer its comparison with the champion on labelled rows, end it.

MLflow holds the truth (alias and tag, so its UI tells the same story); the marker files of
challenger_shadow.Shadow tell this trainer's workers which batches to shadow, and are
rewritten from MLflow whenever the comparison is read.
"""

from __future__ import annotations

import json

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from sluice_common import error_codes
from sluice_common.database import iso_utc, utcnow
from sluice_common.errors import ApiError
from trainer.lifecycle import registry
from trainer.lifecycle.challenger_report import check_metric, report
from trainer.lifecycle.challenger_shadow import Challenger, Shadow
from trainer.lifecycle.champion import (
    CHALLENGER_ALIAS,
    CHALLENGER_TAG,
    challenger_alias,
    change_champion,
    end_challenge,
)
from trainer.lifecycle.dependencies import dependency_errors
from trainer.lifecycle.hints import no_champion
from trainer.lifecycle.locks import promotion_lock
from trainer.lifecycle.signing import UntrustedVersion
from trainer.monitoring.monitor import parse_time

MODES = ("shadow",)


def _registered(name: str, version: str) -> None:
    """404 naming what is unknown: the model or its version."""
    client = MlflowClient()
    try:
        client.get_model_version(name, version)
        return
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    if not registry.model_exists(name):
        raise ApiError(
            error_codes.UNKNOWN_MODEL,
            f"No model named {name!r} is registered; GET /models lists the models.",
        )
    raise ApiError(
        error_codes.UNKNOWN_VERSION,
        f"Model {name!r} has no version {version!r}; GET /models/{name} lists its versions.",
    )


def running(name: str) -> Challenger | None:
    """The challenger MLflow records for `name` (alias and tag), or None. An alias set by hand
    (the MLflow UI) is a shadow challenger from when it is first seen: its tag is written."""
    client = MlflowClient()
    try:
        model = client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    found = challenger_alias(model)
    if found is None:
        return None
    version, info = found
    if str(info.get("version")) == version:
        return Challenger(str(version), str(info.get("mode")), str(info.get("started")))
    found = Challenger(str(version), "shadow", _now())
    client.set_registered_model_tag(name, CHALLENGER_TAG, json.dumps(found.__dict__))
    return found


def _now() -> str:
    return iso_utc(utcnow())


def difference(champion, challenger) -> str | None:
    """Why the two models' predictions cannot be compared on the same labels (another target
    or task; a challenger reading the champion's target, which prod rows lack, says so), or
    None."""
    ours = getattr(challenger, "profile", None) or {}
    theirs = getattr(champion, "profile", None) or {}
    for key in ("target", "task"):
        if ours.get(key) != theirs.get(key):
            why = f"it predicts {key} {ours.get(key)!r}, the champion {theirs.get(key)!r}"
            target = theirs.get("target")
            if target in list(getattr(challenger, "required_columns", None) or []):
                why += f", and it reads columns [{target!r}], which prod rows lack"
            return why
    return None


def _comparable(champion, challenger, name: str, version: str) -> None:
    """409 when the two models do not answer the same question."""
    why = difference(champion, challenger)
    if why is not None:
        raise ApiError(
            error_codes.CHALLENGER_INCOMPARABLE,
            f"v{version} of {name!r} cannot challenge the champion: {why}; their predictions "
            "cannot be compared on the same labels.",
        )


def start(name: str, version: str, mode: str, *, cache, shadow: Shadow, state_dir: str):
    """Make `version` the shadow challenger of `name`; (the challenge, whether it is new). The
    same version again changes nothing; another while one runs is refused (409: DELETE it
    first, so no comparison is dropped by accident)."""
    with dependency_errors(), promotion_lock(state_dir, name):
        _registered(name, version)
        champion = registry.champion_version(name)
        if champion is None:
            raise no_champion(name)
        if champion == version:
            raise ApiError(
                error_codes.CHALLENGER_IS_CHAMPION,
                f"v{version} is the champion of {name!r}; a challenger is another version.",
            )
        current = running(name)
        if current is not None and current.version == version and current.mode == mode:
            shadow.mark(name, current)
            return _described(name, current, champion), False
        if current is not None:
            raise ApiError(
                error_codes.CHALLENGER_RUNNING,
                f"v{current.version} of {name!r} is already the challenger (since "
                f"{current.started}); DELETE /models/{name}/challenger to end it first.",
            )
        try:
            model = cache.model(name, version)
        except UntrustedVersion as err:
            raise ApiError(
                error_codes.UNTRUSTED_VERSION,
                f"Version {version} of {name!r} fails Sluice's signature check ({err}); it "
                "cannot be run. Choose a version Sluice registered, or train a new one.",
            ) from err
        _comparable(cache.model(name, champion), model, name, version)
        challenger = Challenger(version, mode, _now())
        client = MlflowClient()
        # The tag first, then the alias: a challenger alias always has its start recorded.
        client.set_registered_model_tag(name, CHALLENGER_TAG, json.dumps(challenger.__dict__))
        client.set_registered_model_alias(name, CHALLENGER_ALIAS, version)
        shadow.mark(name, challenger)
    return _described(name, challenger, champion), True


def _described(name: str, challenger: Challenger, champion: str | None) -> dict:
    return {
        "model": name,
        "version": challenger.version,
        "mode": challenger.mode,
        "started": challenger.started,
        "champion": champion,
    }


def _current(name: str, shadow: Shadow) -> tuple[Challenger, str | None]:
    """The running challenge and the champion; 404 when there is none. The workers' marker is
    brought in line with MLflow on the way."""
    with dependency_errors():
        if not registry.model_exists(name):
            raise ApiError(
                error_codes.UNKNOWN_MODEL,
                f"No model named {name!r} is registered; GET /models lists the models.",
            )
        challenger = running(name)
        champion = registry.champion_version(name)
    if challenger is None:
        shadow.mark(name, None)
        raise ApiError(
            error_codes.NO_CHALLENGER,
            f"{name!r} has no challenger; PUT /models/{name}/challenger with "
            '{"version": "<n>", "mode": "shadow"} starts one.',
        )
    if shadow.current(name) != challenger:
        shadow.mark(name, challenger)
    return challenger, champion


def status(name: str, shadow: Shadow, metric: str | None = None) -> dict:
    """The challenge as GET answers it: the comparison on labelled rows, skipped batches, each
    side's latency and errors."""
    check_metric(metric)
    challenger, champion = _current(name, shadow)
    answer = _described(name, challenger, champion)
    started = parse_time(challenger.started, "since")
    answer.update(report(shadow.store, name, champion, challenger.version, started, metric))
    if champion == challenger.version:  # the alias set by hand on the champion (MLflow UI)
        answer["note"] = (
            f"v{champion} is the champion now and scores nothing in the shadow; DELETE "
            f"/models/{name}/challenger to end this challenge"
        )
    why = _incomparable(shadow, name, champion, challenger.version)
    if why is not None:
        answer["decision"] = "incomparable"
        answer["reason"] = (
            f"v{challenger.version} cannot be compared with the champion v{champion}: {why}. "
            f"Labels cannot decide it; DELETE /models/{name}/challenger to end this challenge."
        )
    return answer


def _incomparable(shadow: Shadow, name: str, champion, version: str) -> str | None:
    """How the challenger differs from the champion (which changed since the start), or None."""
    if champion is None or champion == version:
        return None
    try:
        return difference(shadow.cache.model(name, champion), shadow.cache.model(name, version))
    except UntrustedVersion as err:
        return f"a signature check fails ({err})"


def end(name: str, shadow: Shadow, state_dir: str) -> dict:
    """End the challenge: the last comparison, then the alias and its tag go. Under the lock
    PUT takes: of concurrent calls one ends it, the others find none (404)."""
    with promotion_lock(state_dir, name):
        final = status(name, shadow)
        with dependency_errors():
            end_challenge(MlflowClient(), name)
        shadow.mark(name, None)
    return {"model": name, "ended": final}


def _clear(name: str, shadow: Shadow, state_dir: str) -> None:
    with dependency_errors(), promotion_lock(state_dir, name):
        end_challenge(MlflowClient(), name)
        shadow.mark(name, None)


def auto_promote(name: str, answer: dict, *, cache, shadow: Shadow, state_dir: str):
    """With CHALLENGER_AUTO_PROMOTE on: a challenger decided `promote` becomes the champion
    (recorded in the history, by "challenger") and the challenge ends; the change, or None."""
    if answer.get("decision") != "promote":
        return None
    change = change_champion(
        name,
        answer["version"],
        f"shadow challenger promoted automatically: {answer['reason']}",
        "challenger",
        cache=cache,
        state_dir=state_dir,
    )
    _clear(name, shadow, state_dir)
    return change


def after_labels(name: str, *, cache, shadow: Shadow, state_dir: str):
    """New labels arrived for `name`: promote its challenger if they decide it (auto)."""
    if shadow.current(name) is None:
        return None
    return auto_promote(name, status(name, shadow), cache=cache, shadow=shadow, state_dir=state_dir)
