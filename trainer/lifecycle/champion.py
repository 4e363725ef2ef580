"""Champion changes: the one way the champion alias moves (the gate, the API, retraining, an
auto-promoted challenger). Each change is recorded first, in the model's history (MLflow
registered-model tags, so the MLflow UI tells the same story) and on the version; the alias
moves only then, and every worker of this trainer hot-swaps at its next request.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from datetime import UTC, datetime, timedelta

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from sluice_common import error_codes
from sluice_common.errors import ApiError
from trainer.lifecycle import registry
from trainer.lifecycle.dependencies import dependency_errors
from trainer.lifecycle.lineage import facts
from trainer.lifecycle.locks import promotion_lock
from trainer.lifecycle.promotion import schema_difference, schema_of
from trainer.lifecycle.serving import ChampionCache
from trainer.lifecycle.signing import UntrustedVersion

log = logging.getLogger(__name__)

# One registered-model tag per change: sluice.history.<nanoseconds since the epoch, 20 digits>,
# so the keys sort in time order and two writers never need to agree on a counter.
HISTORY_PREFIX = "sluice.history."
# On the version: its latest champion change ({at, from, reason, by}).
CHAMPION_TAG = "sluice.champion"
BY = ("gate", "api", "retrain", "challenger")
# The shadow challenger's alias and its tag (a champion that was the challenger ends it).
CHALLENGER_ALIAS = "challenger"
CHALLENGER_TAG = "sluice.challenger"
REASON_MAX_CHARS = registry.REASON_MAX_CHARS


def challenger_alias(model) -> tuple[str, dict] | None:
    """A registered model's challenger version and its tag's fields ({} when unreadable), or
    None without the alias: how every reader sees a challenger."""
    version = (model.aliases or {}).get(CHALLENGER_ALIAS)
    if version is None:
        return None
    try:
        info = json.loads((model.tags or {}).get(CHALLENGER_TAG) or "{}")
    except ValueError:
        info = {}
    return str(version), info if isinstance(info, dict) else {}


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
VERSION = re.compile(r"^[0-9]{1,12}$")


def history_key(at_ns: int) -> str:
    """The tag key of a change made at `at_ns` (nanoseconds since the epoch)."""
    return f"{HISTORY_PREFIX}{at_ns:020d}"


def iso(at_ns: int) -> str:
    """An instant as ISO 8601 UTC with milliseconds."""
    moment = EPOCH + timedelta(microseconds=at_ns // 1000)  # exact: no float seconds
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def history_entry(at_ns: int, previous: str | None, version: str, reason: str, by: str) -> dict:
    """One champion change as kept and answered."""
    if by not in BY:
        raise ValueError(f"by must be one of {BY}, not {by!r}")
    return {"at": iso(at_ns), "from": previous, "to": version, "reason": short(reason), "by": by}


def short(reason: str) -> str:
    """A reason within what a tag keeps (the history entry stays readable JSON)."""
    reason = str(reason)
    return reason if len(reason) <= REASON_MAX_CHARS else reason[: REASON_MAX_CHARS - 1] + "…"


def history_of(tags: dict[str, str]) -> list[dict]:
    """The champion changes recorded in a registered model's tags, oldest first (unreadable
    entries, written by hand, are skipped)."""
    entries = []
    for key in sorted(k for k in tags if k.startswith(HISTORY_PREFIX)):
        try:
            entry = json.loads(tags[key])
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def move_champion(
    name: str,
    version: str,
    previous: str | None,
    reason: str,
    by: str,
    cache: ChampionCache,
    lineage: tuple[str | None, str | None] | None = None,
) -> dict:
    """Record the change (history, then the version's tag) and only then move the alias and
    tell every worker, with the version's `lineage` (run id, data digest; read from the
    registry when not given), so that even the first prod answer names it. Call under the
    model's promotion lock. A failed alias move takes back what was written."""
    at_ns = time.time_ns()
    entry = history_entry(at_ns, previous, version, reason, by)
    client = MlflowClient()
    if lineage is None:
        lineage = lineage_of(client.get_model_version(name, version))
    ends = _runs_as_challenger(client, name, version)
    if ends:  # said in the history: the challenge ends with this change
        entry["challenge_ended"] = f"v{version} was the challenger; the challenge ended"
    key = history_key(at_ns)
    client.set_registered_model_tag(name, key, json.dumps(entry))
    tagged = False
    try:
        client.set_model_version_tag(
            name, version, CHAMPION_TAG, json.dumps({k: entry[k] for k in entry if k != "to"})
        )
        tagged = True
        registry.set_champion(name, version)
    except BaseException:
        _take_back(client, name, version, key, tagged)
        raise
    if ends:
        end_challenge(client, name)
    cache.notify_promoted(name, version, *lineage)
    return entry


def _runs_as_challenger(client, name: str, version: str) -> bool:
    """Whether `version` is the model's challenger (a champion cannot challenge itself)."""
    aliases = client.get_registered_model(name).aliases or {}
    return str(aliases.get(CHALLENGER_ALIAS)) == str(version)


def end_challenge(client, name: str) -> None:
    """Remove the challenger alias and its tag (either may be gone already)."""
    for remove, key in (
        (client.delete_registered_model_alias, CHALLENGER_ALIAS),
        (client.delete_registered_model_tag, CHALLENGER_TAG),
    ):
        try:
            remove(name, key)
        except MlflowException as err:
            if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise


def _take_back(client, name: str, version: str, key: str, tagged: bool) -> None:
    """Remove what a failed change wrote (its history entry, the version's tag), so neither
    names a change that did not happen."""
    try:
        client.delete_registered_model_tag(name, key)
        if tagged:
            client.delete_model_version_tag(name, version, CHAMPION_TAG)
    except Exception:  # noqa: BLE001 - the first error is the one to answer
        log.exception("could not take back champion change %s of %r", key, name)


def lineage_of(record) -> tuple[str | None, str | None]:
    """A registered version's run id and training data digest."""
    return record.run_id or None, facts(record)["digest"]


def _unknown(name: str, version: str) -> ApiError:
    if not registry.model_exists(name):
        return ApiError(
            error_codes.UNKNOWN_MODEL,
            f"No model named {name!r} is registered; GET /models lists the models.",
        )
    return ApiError(
        error_codes.UNKNOWN_VERSION,
        f"Model {name!r} has no version {version!r}; GET /models/{name} lists its versions.",
    )


def _registered(name: str, version: str):
    """The registered version, or 404 naming what is unknown."""
    if not VERSION.match(version):
        raise _unknown(name, version)
    try:
        return MlflowClient().get_model_version(name, version)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise _unknown(name, version) from err
        raise


def _verified_copy(name: str, version: str, cache: ChampionCache) -> str:
    """The version's local copy, checked against this trainer's signature; 409 when it fails."""
    try:
        return registry.local_copy(name, version, cache.models_dir, cache.key)
    except UntrustedVersion as err:
        raise ApiError(
            error_codes.UNTRUSTED_VERSION,
            f"Version {version} of {name!r} fails Sluice's signature check ({err}); it was not "
            "made the champion. Choose a version Sluice registered (GET /models/"
            f"{name} shows trusted ones), or train a new one.",
        ) from err


def _schema(path: str) -> dict:
    with open(os.path.join(path, "artifacts", "feature_spec.json"), encoding="utf-8") as handle:
        return schema_of(json.load(handle))


def _schema_change(name: str, version: str, path: str, previous, cache) -> str | None:
    """How the new champion's inputs differ from the previous one's, in words, or None."""
    if previous is None or previous == version:
        return None
    try:
        before = _schema(registry.local_copy(name, previous, cache.models_dir, cache.key))
    except UntrustedVersion:
        return f"unknown: the previous champion v{previous} fails Sluice's signature check"
    return schema_difference(_schema(path), before)


def change_champion(
    name: str,
    version: str,
    reason: str,
    by: str,
    *,
    cache: ChampionCache,
    state_dir: str,
) -> dict:
    """Make `version` the champion of `name` (a promotion or a rollback): 404 for an unknown
    model or version, 409 for a version failing the signature check; the history records
    `reason` and `by` before the alias moves. The answer says whether the inputs changed."""
    if not isinstance(reason, str) or not reason.strip():
        raise ApiError(error_codes.INVALID_REASON, "Give a reason: a non-empty string.")
    version = str(version)
    version = str(int(version)) if VERSION.match(version) else version  # "007" is v7
    with dependency_errors(), promotion_lock(state_dir, name):
        record = _registered(name, version)
        path = _verified_copy(name, version, cache)
        previous = registry.champion_version(name)
        change = _schema_change(name, version, path, previous, cache)
        answer = {
            "model": name,
            "champion": version,
            "previous": previous,
            "changed": previous != version,
            "columns_changed": change is not None,
            "schema_change": change,
        }
        if previous == version:
            return {**answer, "history": None}
        entry = move_champion(name, version, previous, reason, by, cache, lineage_of(record))
        keep = {version, previous, cache.last_known(name)}
        registry.prune_local_copies(name, {v for v in keep if v}, cache.models_dir)
    return {**answer, "history": entry}
