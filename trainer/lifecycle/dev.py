"""The dev phase: train with an engine, log, sign, register, and decide promotion."""

from __future__ import annotations

import logging
import shutil
import time

from sluice_common import error_codes, settings
from sluice_common.errors import ApiError
from trainer.fit.config import TrainingConfig
from trainer.fit.metrics import PRIMARY_METRIC
from trainer.lifecycle import registry, tracking_health, training_rows
from trainer.lifecycle.answers import dev_answer
from trainer.lifecycle.champion import move_champion
from trainer.lifecycle.comparison import champion_comparison
from trainer.lifecycle.dependencies import dependency_errors
from trainer.lifecycle.lineage import lineage_tags, mark_model
from trainer.lifecycle.locks import promotion_lock
from trainer.lifecycle.promotion import (
    Decision,
    GateConfig,
    compare,
    decide,
    needs_ranking,
    ranking,
)
from trainer.lifecycle.serving import ChampionCache
from trainer.lifecycle.signing import SIGNATURE_TAG, UntrustedVersion
from trainer.pipeline import stages

log = logging.getLogger(__name__)


class Laps:
    """Seconds taken by each stage of a run, in order."""

    def __init__(self):
        self.clock = time.perf_counter()
        self.timings: dict[str, float] = {}

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.clock, 4)
        self.clock = now


def dev_run(
    engine: stages.Engine,
    parsing: dict,
    *,
    model_name: str,
    target: str | None,
    task: str,
    promote: str,
    config: TrainingConfig,
    gate: GateConfig,
    cache: ChampionCache,
    state_dir: str,
    tags: dict[str, str],
    by: str = "gate",
    rows_max_mb: float | None = None,
    started_from: str | None = None,
) -> dict:
    """Train with `engine` (in memory: pipeline/training.py; on a Dask cluster:
    pipeline/dask_engine.py), log, keep the training rows (up to `rows_max_mb`, default
    TRAINING_ROWS_MAX_MB), register and decide promotion; the dev answer. `by` names who a
    promotion is recorded as made by in the model's history (gate, or retrain);
    `started_from`: the champion a retrain started from (the gate promotes only if it still is)."""
    lap = Laps()
    with dependency_errors():
        tracking_health.ping()  # fail fast: no point training what cannot be logged
    lap("tracking_check")
    trained = stages.train(engine, target, task, config)
    lap("train")
    engine.checkpoint()  # a job cancelled now stops before anything is logged
    metric = PRIMARY_METRIC[trained.task]
    validation = trained.validation
    baseline = compare(metric, validation.losses, validation.baseline_losses, gate)
    ranked = None
    if validation.proba is not None and needs_ranking(trained.task, baseline):
        ranked = ranking(validation.proba, validation.y, gate)
    cleaning = {**parsing, **trained.report}
    with dependency_errors():
        digest = registry.table_digest(trained.table)
        run_id, model_uri, written = registry.log_run(trained, model_name, cleaning, tags, digest)
        lap("log_run")
        data, data_tags = _keep_rows(trained, digest, rows_max_mb)
        lap("keep_rows")
        staging, signature = _sign(model_uri, written, cache, model_name, run_id)
        lap("sign")
        engine.checkpoint()  # the run is logged, but nothing is registered or promoted
        with promotion_lock(state_dir, model_name):
            version_tags = {
                "sluice.run_id": run_id,
                SIGNATURE_TAG: signature,
                **registry.inputs_tag(trained.model.required_columns),
                **lineage_tags(digest, trained.n_train + trained.n_valid, trained.metrics),
                **data_tags,
            }
            try:
                version = registry.register(model_uri, model_name, run_id, version_tags)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            registry.keep_local_copy(staging, signature, model_name, version, cache.models_dir)
            mark_model(model_name)
            lap("register")
            current = registry.champion_version(model_name)
            decision = champion_moved(model_name, started_from, current, promote, trained)
            if decision is None:
                decision = _decide(
                    trained, model_name, version, current, promote, gate, cache, baseline, ranked
                )
            lineage = (run_id, digest)
            _promote(trained, model_name, version, current, decision, cache, by, lineage)
            lap("promotion")
    answer = dev_answer(
        trained, model_name, run_id, version, current, decision, cleaning, lap.timings
    )
    answer["data"] = data
    return answer


def _keep_rows(trained, digest: str, max_mb: float | None) -> tuple[dict, dict[str, str]]:
    """The training rows stored under their digest (unless too large, or on a cluster): what
    the answer says about them, and the version's tags."""
    if max_mb is None:
        max_mb = settings.declared("TRAINING_ROWS_MAX_MB").default
    reason = training_rows.not_kept_reason(trained, max_mb)
    uri = training_rows.keep(trained.table, digest) if reason is None else None
    data = training_rows.data_of(trained, digest, uri, reason)
    return data, training_rows.version_tags(data, uri)


def _sign(model_uri: str, written, cache: ChampionCache, model_name: str, run_id: str):
    """The logged model checked against what was written, and signed; its local copy."""
    try:
        return registry.sign_logged(
            model_uri,
            written,
            cache.models_dir,
            cache.key,
            registry.binding(model_name, run_id),
        )
    except UntrustedVersion as err:
        log.error("refusing to sign run %s of %r: %s", run_id, model_name, err)
        raise ApiError(
            error_codes.SIGNING_FAILED,
            f"The logged model did not hold exactly what Sluice wrote ({err}); it was not "
            "registered. Someone may be writing to the tracking server's artifacts.",
        ) from err


def champion_moved(model_name, started_from, current, promote, trained) -> Decision | None:
    """A retrain whose champion changed while it ran (a rollback, a promotion) is not
    promoted over that change: the decision saying so, or None. Read under the promotion lock,
    so a change made after this check waits for the decision."""
    if started_from is None or current == started_from or promote != "auto":
        return None
    metric = PRIMARY_METRIC[trained.task]
    now = f"v{current}" if current is not None else "none"
    return Decision(
        False,
        f"the champion changed from v{started_from} to {now} while this retrain of "
        f"v{started_from} ran: registered without promotion; retrain again, compare it with "
        f"PUT /models/{model_name}/challenger, or promote it with POST "
        f"/models/{model_name}/champion",
        metric,
        challenger_score=trained.metrics.get(metric),
        rule="champion_changed",
    )


def _decide(trained, model_name, version, current, promote, gate, cache, baseline, ranked):
    """The promotion decision on the registered `version` against the `current` champion."""
    metric = PRIMARY_METRIC[trained.task]
    schema_change = unfair = comparison = untrusted = None
    if current is not None and promote == "auto":
        try:
            champion = cache.model(model_name, current)
        except UntrustedVersion as err:
            untrusted = f"v{current} ({err})"
        else:
            try:
                schema_change, unfair, comparison = champion_comparison(
                    trained, champion, metric, gate
                )
            except Exception as err:  # noqa: BLE001 - the version is registered already
                # A comparison that fails must still leave a decision on the version,
                # never a registered version without one (and a 500).
                log.exception("comparing %s v%s with its champion", model_name, version)
                unfair = f"the champion could not score the comparison rows ({err!r:.200})"
    return decide(
        promote,
        current,
        metric,
        trained.metrics.get(metric),
        config=gate,
        baseline=baseline,
        schema_change=schema_change,
        unfair=unfair,
        champion=comparison,
        untrusted=untrusted,
        follows_latest=model_name == gate.default_model,
        ranked=ranked,
    )


def _promote(trained, model_name, version, current, decision, cache, by, lineage) -> None:
    """The decision recorded on the version and acted on: the alias (history first, by `by`),
    the served model with its `lineage` (run id, data digest), and the local copies kept."""
    registry.record_decision(model_name, version, decision.to_dict())
    if decision.promoted:
        cache.adopt(model_name, version, trained.model)  # this worker serves it at once
        move_champion(model_name, version, current, decision.reason, by, cache, lineage)
    champion_now = version if decision.promoted else current
    cache.forget_others(model_name, keep={champion_now})
    keep = {v for v in (champion_now, version, cache.last_known(model_name)) if v}
    registry.prune_local_copies(model_name, keep, cache.models_dir)
