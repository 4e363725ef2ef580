"""What every Sluice service's app factory sets up the same way."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import Flask

from sluice_common.auth import install_token_check
from sluice_common.config import from_env
from sluice_common.errors import register_error_handlers
from sluice_common.jsonio import OrjsonProvider


def build_app(name: str, defaults: Mapping, test_config: dict | None = None) -> Flask:
    """A Flask app with config from the environment, fast JSON, one error shape, the upload
    limit and the optional API token."""
    app = Flask(name, static_folder=None)  # no static files to serve
    app.config.from_mapping(from_env(defaults))
    if test_config:
        app.config.update(test_config)
    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(levelname)s %(name)s %(message)s")
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_UPLOAD_MB"] * 1024 * 1024)
    register_error_handlers(app, app.config["MAX_UPLOAD_MB"])
    install_token_check(app, app.config["SLUICE_API_TOKEN"])
    return app
