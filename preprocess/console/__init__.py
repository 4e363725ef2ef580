"""The console: server-rendered pages over the API, at / and /console/... on preprocess.

Pages: / (home), /console/models[/<name>], /console/train, /console/predict (results at
/console/predictions/<id>), /console/jobs[/<id>], /console/monitoring[/<name>], /console/login.
Forms post without JavaScript; htmx (vendored under static/) only polls a running job.
Access (access.py): a session cookie instead of the Bearer token, a CSRF token in every form;
every answer carries a strict Content-Security-Policy.
"""

from __future__ import annotations

import os
import tempfile

from flask import (
    Blueprint,
    Flask,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from preprocess.console import access, alerts, cleaning, leftovers
from preprocess.console.api import ConsoleError
from sluice_common import error_codes
from sluice_common.errors import ApiError
from sluice_common.svg import number, percent
from sluice_common.web.errors import add_html_error_pages, describe_http_error
from sluice_common.web.params import refuse_repeated, uploaded_files
from sluice_common.web.upload import form_limit_error

bp = Blueprint(
    "console",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/console/static",
)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# Pages a failed form post re-renders with its alert (the others show error.html).
FORM_PAGES = {
    "console.train": "train.html",
    "console.predict": "predict.html",
    "console.login": "login.html",
}
FORM_FIELDS = {  # the fields an error can be about, per form page
    "train.html": ("data_file", "model", "target", "task", "promote"),
    "predict.html": ("data_file", "model", "proba"),
    "login.html": ("token",),
}
OPEN_ENDPOINTS = ("console.static", "console.login", "console.console_root")


def _token() -> str | None:
    return current_app.config["SLUICE_API_TOKEN"]


def _from_another_site() -> bool:
    return request.headers.get("Sec-Fetch-Site") == "cross-site"


@bp.before_request
def _check_access():
    """Sign-in (when the stack has a token) and the CSRF token of every post."""
    cookie = request.cookies.get(_cookie_name())
    if cookie is None and request.method == "GET" and _from_another_site():
        # SameSite=Strict keeps the cookie off a link followed from another site: answering
        # as if there were none would replace the browser's session. Reload from here instead.
        return render_template("reload.html")
    g.session = access.read_session(cookie, _token())
    if request.endpoint == "console.static":
        return None
    if not g.session.signed_in and request.endpoint not in OPEN_ENDPOINTS:
        target = request.full_path if request.method == "GET" else "/"
        return redirect(url_for("console.login", next=target.rstrip("?")), 303)
    if request.method == "POST":
        _read_form()
        given = request.form.get("csrf_token")
        if not access.csrf_ok(given, g.session.sid, _token()):
            message = (
                "This form's security token is missing or out of date (or the form came from "
                "another site). Reload the page and send the form again."
            )
            return render_template("error.html", status=403, message=message), 403
    return None


def _read_form() -> None:
    """Parse the posted form once, up front: a body that is not UTF-8, is cut off or breaks a
    form limit is the API's 400/413 (malformed_multipart, ...), never an exception later."""
    try:
        uploaded_files(request)  # parses request.form too; ApiError for an unreadable body
        request.form  # noqa: B018 (a urlencoded body is parsed here)
    except RequestEntityTooLarge as err:
        raise form_limit_error(err, request) from err
    except ValueError as err:  # UnicodeDecodeError of a urlencoded body
        raise ApiError(
            error_codes.MALFORMED_MULTIPART,
            f"The form cannot be read: {err}. Send it from the console's page (UTF-8).",
        ) from err
    refuse_repeated(request.form, list(request.form))  # the API's repeated_parameter


@bp.after_request
def _headers(response):
    """The strict headers, and a session cookie for a browser that had none."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "console.static":
        response.headers.setdefault("Cache-Control", "no-store")
    session = g.get("session")
    if session is not None and session.fresh and not g.get("cookie_set"):
        set_cookie(response, access.anonymous_cookie(session.sid))
    return response


def _cookie_name() -> str:
    return access.cookie_name(request.host, request.is_secure)


def set_cookie(response, value: str, max_age: int | None = None) -> None:
    """The console's cookie: HttpOnly, SameSite=Strict, Secure over https."""
    response.set_cookie(
        _cookie_name(),
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )
    g.cookie_set = True


@bp.app_context_processor
def _template_helpers():
    session = g.get("session")
    return {
        # No session only on a page rendered before _check_access ran: a token no post accepts.
        "csrf_token": (lambda: access.csrf_token(session.sid, _token())) if session else str,
        "token_required": bool(_token()),
        "signed_in": bool(session and session.signed_in and _token()),
    }


def render_error(status: int, message: str, code: str | None = None):
    """The page of the failed request: its form with the alert when it has one, the field
    the error is about marked."""
    template = FORM_PAGES.get(request.endpoint or "", "error.html")
    fields = FORM_FIELDS.get(template, ())
    if g.get("session") is None:  # an error raised before _check_access read the cookie
        g.session = access.read_session(request.cookies.get(_cookie_name()), _token())
    alerts.mark(alerts.field_of(code, fields, upload=alerts.UPLOAD_FIELD in fields))
    try:
        values = request.form if template != "error.html" else {}
    except (HTTPException, ValueError):  # the form itself could not be read (too large, cut off)
        values = {}
    return render_template(template, error=message, status=status, values=values), status


@bp.errorhandler(ApiError)
@bp.errorhandler(ConsoleError)
def _api_error(err):
    return render_error(err.status, err.message, err.code)


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException):
    status, code, message = describe_http_error(err, current_app.config["MAX_UPLOAD_MB"])
    return render_error(status, message, code)


def results_dir(app: Flask) -> str:
    """Where the console keeps prediction results: shared by the workers of one master."""
    return app.config.get("CONSOLE_RESULTS_DIR") or os.path.join(
        tempfile.gettempdir(), f"sluice-console-{os.getppid()}"
    )


def init_app(app: Flask) -> None:
    """Register the console on the preprocess app."""
    # Imported here: the view modules import `bp` from this module (cycle).
    from preprocess.console import catalogue, pages  # noqa: F401

    if not app.config.get("CONSOLE_RESULTS_DIR"):  # the default place: sweep stopped stacks
        leftovers.remove_stale(tempfile.gettempdir(), results_dir(app))
    app.config["CONSOLE_RESULTS_DIR"] = results_dir(app)
    app.register_blueprint(bp)
    add_html_error_pages(app, _error_page, paths=("/", "/console"), under=("/console/",))


def _error_page(status: int, code: str, message: str):
    """The console's page for an error no console view handled (an unknown page, a method a
    page does not take, a bug): the API's code and message, with the console's headers."""
    response = make_response(
        render_template("error.html", status=status, message=message, code=code), status
    )
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.app_template_filter("num")
def _num(value) -> str:
    """A number for people (n/a when there is none); text as it is."""
    return value if isinstance(value, str) else number(value)


@bp.app_template_filter("pct")
def _pct(value) -> str:
    return percent(value)


bp.add_app_template_global(alerts.field_state, "field_state")
bp.add_app_template_global(cleaning.summary, "cleaning_summary")
bp.add_app_template_global(cleaning.tables, "cleaning_tables")
bp.add_app_template_global(cleaning.feature_details, "feature_details")
