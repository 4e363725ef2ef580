"""Jobs over HTTP: start long work as a job, and GET/DELETE /jobs/<id>.

Views parse, submit and answer 202; the work itself (trainer/jobs/work.py) runs on a job
thread, in the app's context, holding a heavy slot like a synchronous request.
"""

from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify, request

from sluice_common import error_codes
from sluice_common.errors import ApiError

bp = Blueprint("jobs", __name__)
JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def job_runner():
    return current_app.extensions["sluice"].jobs


def accepted(job_id: str):
    """The 202 answer of a submitted job, pointing at where to follow it."""
    location = f"/jobs/{job_id}"
    response = jsonify({"job_id": job_id, "state": "queued", "location": location})
    response.status_code = 202
    response.headers["Location"] = location
    return response


def _checked(job_id: str) -> str:
    if not JOB_ID.match(job_id):
        raise ApiError(
            error_codes.INVALID_JOB_ID, "A job id is the 32-character id a 202 answer gave."
        )
    return job_id


@bp.get("/jobs")
def list_jobs():
    """The most recent jobs (without their answers)."""
    unknown = sorted(set(request.args) - {"limit"})
    if unknown:
        raise ApiError(error_codes.UNKNOWN_PARAMETER, "GET /jobs takes only limit=N (at most 500).")
    if len(request.args.getlist("limit")) > 1:
        raise ApiError(error_codes.REPEATED_PARAMETER, "Give limit once.")
    try:
        limit = int(request.args.get("limit", "100"))
    except ValueError as err:
        raise ApiError(error_codes.INVALID_LIMIT, "limit must be a whole number.") from err
    if not 1 <= limit <= 500:
        raise ApiError(error_codes.INVALID_LIMIT, "limit must be between 1 and 500.")
    return jsonify({"jobs": job_runner().store.list(limit)})


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    """A job's state, progress and, once finished, its answer or error."""
    return jsonify(job_runner().store.get(_checked(job_id)))


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str):
    """Ask for a job's cancellation (it stops at its next progress point)."""
    response = jsonify(job_runner().cancel(_checked(job_id)))
    response.status_code = 202
    return response
