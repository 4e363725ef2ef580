"""The model catalogue (reads only): Sluice's registered models, each version with its
evidence (metrics, the gate's decision, its signature checked, its training data), and the
history of champion changes. Every answer is one page: a model with thousands of versions
costs what a page costs.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from sluice_common import error_codes
from sluice_common.errors import ApiError
from trainer.lifecycle import lineage, pages, registry, signing
from trainer.lifecycle.champion import (
    CHAMPION_TAG,
    challenger_alias,
    history_of,
    iso,
)
from trainer.lifecycle.serving import ChampionCache

MODELS_LIMIT = (100, 500)  # default and largest page of GET /models
VERSIONS_LIMIT = (20, 100)  # of GET /models/<name>: each version's signature is checked
CHECK_THREADS = 4  # versions of a page checked at once
HISTORY_LIMIT = 100  # the newest champion changes answered (history_total counts them all)

# Signature verdicts of this process, by (name, version, claimed signature): a registered
# version's files do not change under the same signature, and checking costs a download.
_verdicts: dict[tuple[str, str, str], str | None] = {}
_verdicts_guard = threading.Lock()
# Facts of finished runs read for versions registered before the lineage tags, by run id.
_runs: dict[str, dict] = {}
RUNS_KEPT = 10_000


def is_sluice(model) -> bool:
    """A registered model Sluice made: tagged so, or (registered before the tag) its newest
    version carries a Sluice signature."""
    if lineage.MODEL_TAG in (model.tags or {}):
        return True
    return any(signing.SIGNATURE_TAG in (v.tags or {}) for v in model.latest_versions or [])


def registered_count(model) -> int:
    """Versions registered: the newest version's number (MLflow never reuses a number)."""
    return max((int(v.version) for v in model.latest_versions or []), default=0)


def challenger_of(model) -> dict | None:
    """The challenger alias's version and its mode (when the challenger routes set it)."""
    found = challenger_alias(model)
    if found is None:
        return None
    version, info = found
    return {"version": version, "mode": info.get("mode")}


def summary(model) -> dict:
    """One model in GET /models."""
    champion = (model.aliases or {}).get(registry.CHAMPION_ALIAS)
    return {
        "name": model.name,
        "champion": None if champion is None else str(champion),
        "challenger": challenger_of(model),
        "versions": registered_count(model),
    }


def _paged(call, what: str):
    try:
        return call()
    except MlflowException as err:
        if err.error_code == "INVALID_PARAMETER_VALUE":
            raise ApiError(
                error_codes.INVALID_PAGE,
                f"page must be the next_page token of an earlier answer of {what}.",
            ) from err
        raise


def list_models(limit: int, page: str | None, key: bytes) -> dict:
    """One page of Sluice's models, by name; `next_page` when there are more (`page` is one
    an earlier answer gave, checked with `key`)."""
    listing = "GET /models"
    token = pages.unwrap(page, listing, key)
    found = _paged(
        lambda: MlflowClient().search_registered_models(
            max_results=limit, order_by=["name ASC"], page_token=token
        ),
        listing,
    )
    models = [summary(model) for model in found if is_sluice(model)]
    return {"models": models, "next_page": pages.wrap(found.token, listing, key)}


def registered_model(name: str):
    """The registered model of a Sluice model; 404 unknown_model otherwise."""
    try:
        model = MlflowClient().get_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        model = None
    if model is None or not is_sluice(model):
        raise ApiError(
            error_codes.UNKNOWN_MODEL,
            f"No model named {name!r} is registered by Sluice; GET /models lists the models, "
            f"and phase=dev with model={name} trains one.",
        )
    return model


def model_detail(name: str, limit: int, page: str | None, cache: ChampionCache) -> dict:
    """A model's champion, challenger, one page of versions (newest first) and its history."""
    listing = f"GET /models/{name}"
    token = pages.unwrap(page, listing, cache.key)
    model = registered_model(name)
    found = _paged(
        lambda: MlflowClient().search_model_versions(
            f"name = '{name}'",
            max_results=limit,
            order_by=["version_number DESC"],
            page_token=token,
        ),
        listing,
    )
    history = history_of(model.tags or {})
    return {
        **summary(model),
        "versions": _entries(name, list(found), cache),
        "versions_total": registered_count(model),
        "next_page": pages.wrap(found.token, listing, cache.key),
        "history": history[-HISTORY_LIMIT:],
        "history_total": len(history),
    }


def _entries(name: str, versions: list, cache: ChampionCache) -> list[dict]:
    """The page's version entries, a few at a time: a version not yet verified by this
    process costs a download."""
    if len(versions) <= 1:
        return [version_entry(name, version, cache) for version in versions]
    with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
        return list(pool.map(lambda version: version_entry(name, version, cache), versions))


def version_entry(name: str, version, cache: ChampionCache) -> dict:
    """A version's evidence: metrics, the gate's decision, whether its signature holds, its
    training data, and its last champion change."""
    untrusted = verdict(name, version, cache)
    facts = lineage.facts_of(version) or _run_facts(version)
    try:
        change = json.loads((version.tags or {}).get(CHAMPION_TAG) or "null")
    except ValueError:
        change = None
    return {
        "version": str(version.version),
        "created": iso(int(version.creation_timestamp) * 1_000_000),
        "run_id": version.run_id or None,
        "metrics": facts["metrics"],
        "promotion": registry.decision_of(version),
        "trusted": untrusted is None,
        **({"untrusted_reason": untrusted} if untrusted else {}),
        "data": {"digest": facts["digest"], "rows": facts["rows"]},
        "last_champion_change": change,
    }


def _run_facts(version) -> dict:
    """Digest, rows and metrics of a version without lineage tags: from its run when Sluice
    signed it (registered before the tags), once per process; none for a version someone
    else registered."""
    run_id = version.run_id
    if not run_id or signing.SIGNATURE_TAG not in (version.tags or {}):
        return {"digest": None, "rows": None, "metrics": {}}
    with _verdicts_guard:
        known = _runs.get(run_id)
    if known is None:
        known = lineage.facts_of_run(MlflowClient().get_run(run_id))
        with _verdicts_guard:
            if len(_runs) >= RUNS_KEPT:
                _runs.clear()  # a bound, not a policy: the next pages read their runs again
            _runs[run_id] = known
    return known


def verdict(name: str, version, cache: ChampionCache) -> str | None:
    """None when the version's files carry this trainer's signature, else why not. A verified
    local copy answers at once; otherwise the files are downloaded and checked once per
    process."""
    number = str(version.version)
    claimed = (version.tags or {}).get(signing.SIGNATURE_TAG)
    if not claimed:
        return "the version carries no Sluice signature"
    if (name, number) in cache.untrusted:
        return cache.untrusted[(name, number)]
    key = (name, number, claimed)
    with _verdicts_guard:
        if key in _verdicts:
            return _verdicts[key]
    if registry.has_verified_copy(name, number, cache.models_dir, claimed):
        found = None
    else:
        found = _check(name, number, claimed, version.run_id or "", cache.key)
    with _verdicts_guard:
        _verdicts[key] = found
    return found


def _check(name: str, version: str, claimed: str, run_id: str, key: bytes) -> str | None:
    """Download a version's files to a scratch folder and check its signature there."""
    scratch = tempfile.mkdtemp(prefix="sluice-verify-")
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=scratch
        )
        signing.verify(scratch, key, claimed, registry.binding(name, run_id))
        return None
    except signing.UntrustedVersion as err:
        return str(err)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
