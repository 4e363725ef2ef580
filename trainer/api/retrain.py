"""POST /models/<name>/retrain, and the retrain triggers run as labels arrive (views parse,
check, queue the job and answer 202)."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, request

from sluice_common import error_codes
from sluice_common.errors import ApiError
from sluice_common.web.params import json_object, model_name
from trainer.api.jobs import accepted, job_runner
from trainer.jobs.retraining import retrain_work
from trainer.lifecycle import retrain
from trainer.lifecycle.locks import promotion_lock

bp = Blueprint("retrain", __name__)
log = logging.getLogger(__name__)
PHASE = "retrain"  # the jobs' phase


@bp.post("/models/<name>/retrain")
def retrain_model(name: str):
    """Queue a retrain of `name` on its champion's rows plus its labelled prod rows."""
    name = model_name({"model": name}, "")
    state = current_app.extensions["sluice"]
    promote = retrain.options(json_object(request, '{"promote": "never"}', optional=True))
    plan = retrain.plan(name, state.cache, state.monitor, promote)
    return accepted(start(plan, "api"))


def start(plan: retrain.Plan, trigger: str) -> str:
    """Queue the retrain job unless one of the model runs already (409 naming it); its id."""
    state = current_app.extensions["sluice"]
    runner = job_runner()
    # One retrain per model: the check and the job's row are one step across workers.
    with promotion_lock(state.state_dir, f"retrain\0{plan.model}"):
        running = runner.store.unfinished_of(PHASE, plan.model)
        if running:
            raise ApiError(
                error_codes.RETRAIN_RUNNING,
                f"A retrain of {plan.model!r} is queued or running: follow /jobs/{running[0]}, "
                "and retrain again once it has finished.",
                job_id=running[0],
                location=f"/jobs/{running[0]}",
            )
        described = {
            "champion": plan.champion,
            "labels": plan.labels,
            "promote": plan.promote,
            "trigger": trigger,
        }
        return runner.submit(PHASE, plan.model, described, retrain_work(plan))


def after_labels(model: str, saved: dict) -> dict:
    """Run once labels are stored: how many labelled rows of the model a retrain could use
    (their cells kept), and the triggers, off by default: RETRAIN_AFTER_LABELS (that many
    labels since the last retrain) and RETRAIN_ON_ALERT (the model's status is alert and labels
    arrived since). What was started (or why not), for the feedback answer."""
    state = current_app.extensions["sluice"]
    kept = state.monitor.prod_rows if state.monitor is not None else None
    if kept is None:
        return {}
    every = int(current_app.config["RETRAIN_AFTER_LABELS"])
    on_alert = bool(current_app.config["RETRAIN_ON_ALERT"])
    found: dict = {}
    try:
        total = kept.label_count(model)
        found["retraining"] = {
            "labelled_rows": total,
            "with_cells_kept": kept.label_count(model, with_cells=True),
        }
        if not (every > 0 or on_alert) or not (saved.get("new") or saved.get("changed")):
            return found
        since = total - retrain.labels_at_last_retrain(model)
        trigger = retrain.trigger(every, on_alert, since, lambda: state.monitor.summary(model))
        if trigger is None:
            return found
        plan = retrain.plan(model, state.cache, state.monitor)
        job_id = start(plan, trigger)
    except ApiError as err:  # the labels are stored; the retrain says why it did not start
        found["retrain"] = {"started": False, "code": err.code, "message": err.message}
        return found
    except Exception as err:  # noqa: BLE001 - the labels are stored: never a 500 for them
        log.exception("the retrain trigger of %r failed", model)
        message = f"the retrain trigger failed ({err!r:.200}); the labels are stored"
        code = error_codes.INTERNAL_ERROR.code
        found["retrain"] = {"started": False, "code": code, "message": message}
        return found
    found["retrain"] = {
        "started": True,
        "job_id": job_id,
        "location": f"/jobs/{job_id}",
        "trigger": trigger,
    }
    return found
