"""ApiError, werkzeug's HTTP errors and unexpected exceptions as JSON responses in the one
error shape (sluice_common/errors.py; the codes are in sluice_common/error_codes.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from sluice_common import error_codes
from sluice_common.errors import ApiError

log = logging.getLogger(__name__)

# Machine codes for the HTTP errors werkzeug raises on its own (routing, limits).
HTTP_CODES = {
    entry.status: entry
    for entry in (
        error_codes.BAD_REQUEST,
        error_codes.UNAUTHORIZED,
        error_codes.NOT_FOUND,
        error_codes.METHOD_NOT_ALLOWED,
        error_codes.UPLOAD_TOO_LARGE,
        error_codes.UNSUPPORTED_MEDIA_TYPE,
    )
}


# A site's error page: (status, code, message) -> a response (see add_html_error_pages).
HtmlErrorPage = Callable[[int, str, str], object]


def add_html_error_pages(
    app: Flask, render: HtmlErrorPage, paths: tuple[str, ...], under: tuple[str, ...]
) -> None:
    """Answer the errors of requests for `paths` (exactly) or paths starting with one of `under`
    with `render`'s page instead of JSON: pages served by an API's app (the console) keep their
    HTML for errors no view of theirs handles (an unknown page, a wrong method, a bug). Every
    other path keeps the JSON error shape."""
    app.extensions.setdefault("html_error_pages", []).append((paths, under, render))


def _html_page(status: int, code: str, message: str):
    """The page of the request's site for this error, or None for an API path."""
    path = request.path
    for paths, under, render in current_app.extensions.get("html_error_pages", ()):
        if path in paths or path.startswith(under):
            return render(status, code, message)
    return None


def error_response(err: ApiError):
    """A Flask response for `err` (with Retry-After when it says when to come back)."""
    seconds = err.details.get("retry_after")
    headers = {"Retry-After": str(seconds)} if seconds else {}
    page = _html_page(err.status, err.code, err.message)
    if page is not None:
        return page, err.status, headers
    return jsonify(err.to_dict()), err.status, headers


def describe_http_error(
    err: HTTPException, max_upload_mb: float | None = None
) -> tuple[int, str, str]:
    """The status, code and message a werkzeug HTTP error is answered with (the JSON API's,
    and the console's alert)."""
    status = err.code or 500
    message = err.description or err.name
    if status == 413:
        limit = max_upload_mb if max_upload_mb is not None else "the configured"
        message = (
            f"The upload is larger than the {limit} MB limit (MAX_UPLOAD_MB). "
            "Send a smaller file or raise the limit."
        )
    elif status == 404:
        message = "No such endpoint; the API's routes are listed in docs/reference/api.md."
    elif status == 405:
        message = f"Method not allowed here; allowed: {', '.join(err.valid_methods or [])}."
    code = HTTP_CODES[status].code if status in HTTP_CODES else error_codes.HTTP_ERROR.code
    return status, code, message


def register_error_handlers(app: Flask, max_upload_mb: float | None = None) -> None:
    """Render ApiError, werkzeug HTTP errors and unexpected exceptions as JSON."""
    app.register_error_handler(ApiError, error_response)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        status, code, message = describe_http_error(err, max_upload_mb)
        if status in HTTP_CODES:
            return error_response(ApiError(HTTP_CODES[status], message))
        # Another status (werkzeug's own): its code says only that, with the status it has.
        page = _html_page(status, code, message)
        if page is not None:
            return page, status
        return jsonify({"error": {"code": code, "message": message}}), status

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        # A bug, not bad input: log the traceback, never send it.
        log.exception("unhandled error")
        return error_response(
            ApiError(
                error_codes.INTERNAL_ERROR,
                "Unexpected server error; the details are in the service log.",
            )
        )
