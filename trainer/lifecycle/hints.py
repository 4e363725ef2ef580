"""Error answers of prod that say what to do: a missing column's newer version, a model with
no champion. Their hints come from the registry, on the error path only, and never delay or
change the answer."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from sluice_common import error_codes
from sluice_common.errors import ApiError
from trainer.lifecycle import registry, tracking_health

log = logging.getLogger(__name__)


def missing_columns_error(
    model_name: str, version: str, missing: list[str], names: set[str], what: str = "file"
) -> ApiError:
    """The 422 for a batch that lacks columns of the champion `version`, naming a newer,
    unpromoted version that reads the batch's columns `names` when there is one."""
    message = (
        f"The {what} lack{'s' if what == 'file' else ''} columns the model {model_name!r} "
        f"v{version} needs: {', '.join(map(repr, missing))}."
    )
    details = {"missing_columns": missing}
    found = _registry_hint(_newer_version_reading, model_name, version, set(names))
    if found is not None:
        candidate, decision, exact = found
        message += " " + _candidate_hint(model_name, candidate, decision, exact)
        details["candidate_version"] = candidate
    return ApiError(error_codes.MISSING_COLUMNS, message, **details)


# Hints in error answers come from the registry, on the error path only, within this time and
# with at most this many look-ups under way: a slow tracking server leaves the hint out.
HINT_SECONDS = 3.0
HINT_VERSIONS = 20  # the newest versions searched for one that reads a batch
_hint_slots = threading.BoundedSemaphore(2)
_hint_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sluice-hint")


def _registry_hint(lookup, *args):
    """`lookup(*args)`, or None when the tracking server is down, slow or fails, or when
    other look-ups already hold every slot: a hint never turns an answer into another."""
    if not _hint_slots.acquire(blocking=False):
        return None

    def run():
        try:
            return lookup(*args)
        finally:
            _hint_slots.release()

    submitted = False
    try:
        if not tracking_health.reachable():
            return None
        future = _hint_pool.submit(run)
        submitted = True
        return future.result(timeout=HINT_SECONDS)
    except Exception as err:  # a hint is optional, whatever went wrong
        log.info("no registry hint for the error answer: %s", err)
        return None
    finally:
        if not submitted:
            _hint_slots.release()


def _newer_version_reading(model_name: str, champion_version: str, columns: set[str]):
    """The newest version after the champion whose input columns are all in `columns`: its
    version, recorded decision, and whether it reads exactly those columns; or None."""
    for found in registry.recent_versions(model_name, HINT_VERSIONS):
        if int(found.version) <= int(champion_version):
            break
        inputs = registry.inputs_of(found)
        if inputs and set(inputs) <= columns:
            return str(found.version), registry.decision_of(found), set(inputs) == columns
    return None


# Where the advice starts in a recorded reason (promotion.decide): an error answer gives its
# own advice, so it quotes the finding only.
_ADVICE = ("; upload ", "; use promote=always")


def _why_not(decision: dict | None) -> str:
    """Why a version was not promoted, briefly, from its recorded decision."""
    reason = str((decision or {}).get("reason") or "")
    for marker in _ADVICE:
        if marker in reason:
            reason = reason[: reason.index(marker)]
    return reason if len(reason) <= 400 else reason[:399] + "…"


def _candidate_hint(model_name: str, version: str, decision: dict | None, exact: bool) -> str:
    """What to say about a newer version that could answer the batch, and how to make it
    the champion."""
    reads = "reads exactly these columns" if exact else "reads only columns this file has"
    if (decision or {}).get("promoted"):
        why = " It was the champion once; the alias 'champion' has been moved since."
    else:
        why = _why_not(decision)
        why = f" It was not promoted: {why}." if why else ""
    return (
        f"Version {version} of {model_name!r} (not the champion) {reads}.{why} To make it the "
        f"champion, train on its data again with phase=dev and promote=always (client: "
        f"--promote always), or make version {version} the champion with POST "
        f"/models/{model_name}/champion and the JSON body "
        f'{{"version": "{version}", "reason": "<why>"}}.'
    )


def _latest_decision(model_name: str):
    """The newest version of `model_name` and its recorded decision, or None."""
    versions = registry.recent_versions(model_name, 1)
    if not versions:
        return None
    return str(versions[0].version), registry.decision_of(versions[0])


def no_champion(model_name: str) -> ApiError:
    """The 409 for a name whose versions were all refused: why the latest one was, and what
    to do."""
    todo = (
        "Upload more rows, or data with more signal, with phase=dev (a version becomes the "
        "champion when it beats the trivial baseline beyond the noise), or train with "
        "promote=always (client: --promote always) to serve a version anyway."
    )
    latest = _registry_hint(_latest_decision, model_name)
    if latest is None:
        return ApiError(
            error_codes.NO_CHAMPION,
            f"Model {model_name!r} has versions but none is the champion. {todo}",
        )
    version, decision = latest
    details = {"latest_version": version, "latest_rule": (decision or {}).get("rule")}
    if decision is not None and decision.get("promoted"):
        state = (
            f"its latest version v{version} was promoted, and the alias 'champion' has "
            "been moved or removed in MLflow since"
        )
    else:
        why = _why_not(decision)
        state = f"its latest version v{version} was not promoted" + (f" ({why})" if why else "")
    return ApiError(
        error_codes.NO_CHAMPION,
        f"Model {model_name!r} has no champion: {state}. {todo} Or make a version the "
        f"champion with POST /models/{model_name}/champion (GET /models/{model_name} lists "
        "the versions and why each was not promoted).",
        **details,
    )
