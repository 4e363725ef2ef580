"""The console's pages over the catalogue: models, jobs and monitoring (each a call or two to
the trainer, as the API relays them)."""

from __future__ import annotations

import json
import re

from flask import current_app, g, redirect, render_template, request, url_for

from preprocess.console import alerts, bp, charts, results
from preprocess.console.api import ConsoleError, call, model_path
from sluice_common.errors import ApiError

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
FINISHED = ("succeeded", "failed", "cancelled")


@bp.get("/console/models")
def models():
    """Every model, its champion marked."""
    answer = call("GET", "/models", {"page": request.args.get("page") or None})
    return render_template("models.html", answer=answer)


def _model_page(name: str, status: int = 200, **errors):
    """A model's versions, decisions, chart and challenger; `errors` by the form they belong
    to (champion, retrain)."""
    model = call("GET", model_path(name), {"limit": "100"})
    versions = model.get("versions") or []
    metric = charts.primary_metric(versions)
    try:
        challenger = call("GET", model_path(name, "challenger"))
    except ConsoleError as err:
        challenger = None if err.status == 404 else {"error": err.message}
    page = render_template(
        "model.html",
        model=model,
        versions=versions,
        metric=metric,
        chart=charts.metric_over_versions(name, versions, metric) if metric else None,
        challenger=challenger,
        mlflow_ui=(current_app.config.get("MLFLOW_UI_URL") or "").rstrip("/"),
        changed=_version_changed(),
        errors=errors,
        values=request.form,
    )
    return page, status


def _version_changed() -> str | None:
    """The version ?changed= names after a champion change: a version number or nothing (the
    link's text is anyone's to write, the page must not say it)."""
    changed = request.args.get("changed", "")
    return changed if changed.isascii() and changed.isdigit() and len(changed) < 10 else None


@bp.get("/console/models/<name>")
def model(name: str):
    """One model's page."""
    return _model_page(name)


@bp.post("/console/models/<name>/champion")
def champion(name: str):
    """Make a version the champion, with the reason asked for; errors shown by the form."""
    body = {"version": request.form.get("version", ""), "reason": request.form.get("reason", "")}
    try:
        answer = call("POST", model_path(name, "champion"), body=body)
    except (ConsoleError, ApiError) as err:
        alerts.mark(alerts.field_of(err.code, ("version", "reason"), False), "champion-error")
        return _model_page(name, err.status, champion=err.message)
    version = answer.get("champion") or body["version"]
    return redirect(url_for("console.model", name=name, changed=version), 303)


@bp.post("/console/models/<name>/retrain")
def retrain(name: str):
    """Start a retrain; its job's page follows it."""
    try:
        answer = call("POST", model_path(name, "retrain"))
    except (ConsoleError, ApiError) as err:
        return _model_page(name, err.status, retrain=err.message)
    return redirect(url_for("console.job", job_id=answer["job_id"]), 303)


@bp.get("/console/jobs")
def jobs():
    """Running and finished jobs."""
    answer = call("GET", "/jobs")
    return render_template("jobs.html", jobs=answer.get("jobs") or [], finished=FINISHED)


def _checked(job_id: str) -> str:
    if not JOB_ID.match(job_id):
        raise ConsoleError(404, "A job id is the 32-character id of a job; see the Jobs page.")
    return job_id


@bp.get("/console/jobs/<job_id>")
def job(job_id: str):
    """A job's progress (refreshed until it ends) and its outcome."""
    job = call("GET", f"/jobs/{_checked(job_id)}")
    running = job.get("state") not in FINISHED
    template = "_job.html" if request.headers.get("HX-Request") else "job.html"
    return render_template(template, job=job, running=running)


@bp.post("/console/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    """Ask the trainer to cancel a job; its page shows when it stops."""
    call("DELETE", f"/jobs/{_checked(job_id)}")
    return redirect(url_for("console.job", job_id=job_id), 303)


@bp.post("/console/jobs/<job_id>/predictions")
def job_predictions(job_id: str):
    """A finished prod job's predictions, kept like a form's (results.py) to page and download."""
    answer = call("GET", f"/jobs/{_checked(job_id)}").get("answer") or {}
    if answer.get("phase") != "prod" or "predictions" not in answer:
        raise ConsoleError(409, "This job has no predictions (yet); its page says how it is doing.")
    folder = current_app.config["CONSOLE_RESULTS_DIR"]
    result_id = results.save(folder, answer, len(json.dumps(answer)), g.session.sid)
    if result_id is None:
        raise ConsoleError(
            413,
            f"These predictions are larger than the {results.MAX_RESULT_BYTES // 2**20} MB the "
            "console keeps; read them with the API (GET /jobs/<id>).",
        )
    return redirect(url_for("console.predictions", result_id=result_id), 303)


@bp.get("/console/monitoring")
def monitoring():
    """The models to monitor, each linking to its page."""
    answer = call("GET", "/models")
    return render_template("monitoring.html", answer=answer)


@bp.get("/console/monitoring/<name>")
def monitoring_model(name: str):
    """Drift per feature with thresholds and verdicts, live quality against the baseline,
    label coverage: GET /monitoring's answer, drawn."""
    summary = call("GET", "/monitoring", {"model": name})
    performance = summary.get("performance") or {}
    return render_template(
        "monitoring_model.html",
        name=name,
        summary=summary,
        performance=performance,
        drift=charts.drift_rows(summary.get("drift") or {}),
        quality=charts.quality_over_time(name, performance),
    )
