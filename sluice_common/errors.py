"""One error shape for every service: {"error": {"code": ..., "message": ...}}."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# Machine codes for the HTTP errors werkzeug raises on its own (routing, limits).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "upload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An error the client can act on; views raise it, the handler renders it."""

    def __init__(self, status: int, code: str, message: str, **details):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def __reduce__(self):
        # Raised on a Dask worker and re-raised on the trainer: pickled with its fields.
        return (_rebuilt_error, (self.status, self.code, self.message, self.details))

    def to_dict(self) -> dict:
        """The JSON body of this error."""
        body = {"code": self.code, "message": self.message}
        body.update(self.details)
        return {"error": body}


def _rebuilt_error(status: int, code: str, message: str, details: dict) -> ApiError:
    return ApiError(status, code, message, **details)


def error_response(status: int, code: str, message: str, **details):
    """A Flask response in the one error shape."""
    return jsonify(ApiError(status, code, message, **details).to_dict()), status


def register_error_handlers(app: Flask, max_upload_mb: float | None = None) -> None:
    """Render ApiError, werkzeug HTTP errors and unexpected exceptions as JSON."""

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):
        seconds = err.details.get("retry_after")
        headers = {"Retry-After": str(seconds)} if seconds else {}
        return jsonify(err.to_dict()), err.status, headers

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        status = err.code or 500
        code = HTTP_CODES.get(status, "http_error")
        message = err.description or err.name
        if status == 413:
            limit = max_upload_mb if max_upload_mb is not None else "the configured"
            message = (
                f"The upload is larger than the {limit} MB limit (MAX_UPLOAD_MB). "
                "Send a smaller file or raise the limit."
            )
        elif status == 404:
            message = "No such endpoint. See the README for the API: POST /analyze, GET /health."
        elif status == 405:
            message = f"Method not allowed here; allowed: {', '.join(err.valid_methods or [])}."
        return error_response(status, code, message)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        # A bug, not bad input: log the traceback, never send it.
        log.exception("unhandled error")
        return error_response(
            500, "internal_error", "Unexpected server error; the details are in the service log."
        )
