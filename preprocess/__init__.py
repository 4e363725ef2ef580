"""Preprocess service: parses and cleans uploaded CSVs, forwards them to the trainer.

Endpoints:
- POST /analyze?phase=dev|prod  (multipart field data_file: the CSV)
- GET  /health
"""

from __future__ import annotations

import logging

from flask import Flask

from sluice_common.auth import install_token_check
from sluice_common.config import from_env
from sluice_common.errors import register_error_handlers
from sluice_common.jsonio import OrjsonProvider

DEFAULTS = {
    "TRAINER_URL": "http://127.0.0.1:8080",
    "DEFAULT_MODEL_NAME": "default",
    "MAX_UPLOAD_MB": 512,
    "SLUICE_API_TOKEN": None,
    "TRAINER_CONNECT_TIMEOUT": 3.0,
    "TRAINER_READ_TIMEOUT": 3600.0,
    "LOG_LEVEL": "INFO",
}


def create_app(test_config: dict | None = None) -> Flask:
    """Build the preprocess app from environment variables (and overrides for tests)."""
    app = Flask(__name__)
    app.config.from_mapping(from_env(DEFAULTS))
    if test_config:
        app.config.update(test_config)
    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(levelname)s %(name)s %(message)s")

    from preprocess.views import bp

    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_UPLOAD_MB"] * 1024 * 1024)
    register_error_handlers(app, app.config["MAX_UPLOAD_MB"])
    install_token_check(app, app.config["SLUICE_API_TOKEN"])
    app.register_blueprint(bp)
    return app
