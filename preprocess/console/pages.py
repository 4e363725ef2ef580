"""The console's home, sign-in, and the train and predict forms with their answers."""

from __future__ import annotations

import json
import re

from flask import current_app, g, redirect, render_template, request, send_file, url_for
from werkzeug.datastructures import MultiDict

from preprocess.analyze import analyze_upload
from preprocess.console import access, alerts, bp, results, set_cookie
from preprocess.console.api import ConsoleError, bearer, decoded
from sluice_common.web.params import Params, parse_params
from sluice_common.web.upload import read_form_upload

# The form fields each phase passes on as the API's query parameters (empty ones are left out,
# so the API's defaults apply).
FIELDS = {"dev": ("model", "target", "task", "promote"), "prod": ("model", "proba")}


@bp.get("/")
def home():
    """Links to every page."""
    return render_template("home.html")


@bp.get("/console")
@bp.get("/console/")
def console_root():
    """The console's home is /."""
    return redirect(url_for("console.home"), 308)


# A console path (and query) of plain URL characters: no control characters (header
# injection), no backslash or `//` (another site), nothing a redirect would have to escape.
SAFE_NEXT = re.compile(r"^/console/(?!/)[A-Za-z0-9._~/?&=%+-]{0,500}$")
# Pages that only answer a post: going "back" to one after signing in would be a 405.
POST_ONLY = ("/console/logout",)


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console page of this site, never another site."""
    if target and SAFE_NEXT.fullmatch(target) and "//" not in target:
        if target.split("?")[0].rstrip("/") not in POST_ONLY:
            return target
    return url_for("console.home")


@bp.route("/console/login", methods=["GET", "POST"])
def login():
    """The token, asked once; a signed cookie (not the token) remembers it."""
    token = current_app.config["SLUICE_API_TOKEN"]
    target = _safe_next(request.values.get("next"))
    if not token:
        return redirect(target, 303)  # an open stack has nothing to sign in to
    if request.method == "GET":
        return render_template("login.html", next=target, values={})
    if not access.token_matches(request.form.get("token", ""), token):
        alerts.mark("token")
        return render_template(
            "login.html", next=target, values={}, error="That is not this stack's API token."
        ), 401
    _, cookie = access.signed_in_cookie(token)
    response = redirect(target, 303)
    set_cookie(response, cookie, max_age=access.SESSION_SECONDS)
    return response


@bp.post("/console/logout")
def logout():
    """A new, anonymous cookie in place of the signed one."""
    response = redirect(url_for("console.login"), 303)
    set_cookie(response, access.anonymous_cookie(access.read_session(None, None).sid))
    return response


def form_params(phase: str) -> Params:
    """The form's options checked as the API checks its query (one definition of each rule)."""
    args = MultiDict([("phase", phase)])
    for name in FIELDS[phase]:
        value = request.form.get(name, "").strip()
        if value:
            args.add(name, value)
    return parse_params(args, current_app.config["DEFAULT_MODEL_NAME"])


def _submit(phase: str):
    """The upload through the API's own path; a long one becomes a job to follow."""
    params = form_params(phase)
    answer = analyze_upload(params, read_form_upload(request)[0], bearer())
    body = decoded(answer)
    if answer.status == 202 and body.get("job_id"):
        return None, body, redirect(url_for("console.job", job_id=body["job_id"]), 303)
    return answer, body, None


@bp.route("/console/train", methods=["GET", "POST"])
def train():
    """The dev form; its answer shows the new version, its features and the decision."""
    if request.method == "GET":
        return render_template("train.html", values={})
    _, body, followed = _submit("dev")
    if followed is not None:
        return followed
    return render_template("train.html", values=request.form, answer=body)


@bp.route("/console/predict", methods=["GET", "POST"])
def predict():
    """The prod form; its answer is kept (results.py) and shown page by page."""
    if request.method == "GET":
        return render_template("predict.html", values={})
    answer, body, followed = _submit("prod")
    if followed is not None:
        return followed
    folder = current_app.config["CONSOLE_RESULTS_DIR"]
    result_id = results.save(folder, body, len(answer.body), g.session.sid)
    if result_id is None:  # too large to keep (or nowhere private): its first page, once
        rows, pages = results.page_rows(body, 1)
        return render_template(
            "predictions.html",
            answer=body,
            rows=rows,
            page=1,
            pages=pages,
            too_large=results.too_large(len(answer.body)),
            limit_mb=results.MAX_RESULT_BYTES // 2**20,
        )
    return redirect(url_for("console.predictions", result_id=result_id), 303)


def _result(result_id: str) -> results.Kept:
    found = results.load(current_app.config["CONSOLE_RESULTS_DIR"], result_id, g.session.sid)
    if found is None:
        raise ConsoleError(
            404,
            "These predictions are no longer kept (or belong to another browser); send the "
            "file again from the Predict page.",
        )
    return found


def page_number(text: str) -> int:
    """The ?page= asked for: ASCII digits only ('²'.isdigit() is True too), short enough for
    int(); anything else is page 1 (page_rows clamps a number past the last page)."""
    if text.isascii() and text.isdigit() and len(text) < 10:
        return int(text)
    return 1


@bp.get("/console/predictions/<result_id>")
def predictions(result_id: str):
    """One page of a kept result, flagged rows marked."""
    kept = _result(result_id)
    page = page_number(request.args.get("page", "1"))
    rows, pages = kept.page(page)
    return render_template(
        "predictions.html",
        answer=kept.answer,
        rows=rows,
        page=min(max(page, 1), pages),
        pages=pages,
        result_id=result_id,
    )


@bp.get("/console/predictions/<result_id>/predictions.csv")
def predictions_csv(result_id: str):
    """Every prediction of a kept result as CSV."""
    kept = _result(result_id)
    name = json.dumps(f"predictions-{kept.answer.get('model', 'model')}-{result_id[:8]}.csv")
    response = send_file(kept.csv_path, mimetype="text/csv", conditional=False)
    response.headers["Content-Disposition"] = f"attachment; filename={name}"
    return response
