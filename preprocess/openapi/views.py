"""GET /openapi.json (the document) and GET /docs (Swagger UI), served from the packages:
our index page and init script, and Swagger UI's own files from flask-swagger-ui's copy of
swagger-ui-dist (no CDN)."""

from __future__ import annotations

import os

import flask_swagger_ui
from flask import Blueprint, abort, jsonify, send_from_directory

from preprocess.openapi.document import document

openapi_bp = Blueprint("openapi", __name__)
swagger_ui_bp = Blueprint("swagger_ui", __name__)

OWN_FILES = os.path.join(os.path.dirname(__file__), "static")
SWAGGER_UI_FILES = os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist")
# The files of swagger-ui-dist the page loads (and its licence); nothing else is served.
SWAGGER_UI_SERVED = frozenset(
    {"swagger-ui-bundle.js", "swagger-ui.css", "index.css", "favicon-32x32.png", "LICENSE"}
)
# Scripts and styles from this origin only. Swagger UI sets element styles from JavaScript
# (the CSSOM, which style-src does not govern) and needs no inline <style> or script; its CSS
# draws icons from data: URIs; "Try it out" calls this origin.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@openapi_bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 document of the public API."""
    return jsonify(document())


@swagger_ui_bp.after_request
def _policy(response):
    response.headers["Content-Security-Policy"] = DOCS_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@swagger_ui_bp.get("/docs")
def docs():
    """Swagger UI's page, rendering /openapi.json."""
    return send_from_directory(OWN_FILES, "index.html", max_age=0)


@swagger_ui_bp.get("/docs/<name>")
def docs_file(name: str):
    """Our init script, or one of Swagger UI's files."""
    if name == "init.js":
        return send_from_directory(OWN_FILES, name)
    if name not in SWAGGER_UI_SERVED:
        abort(404)
    return send_from_directory(SWAGGER_UI_FILES, name)
