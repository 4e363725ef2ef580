"""Preprocess service: parses and cleans uploaded CSVs, forwards them to the trainer.

Endpoints:
- POST /analyze?phase=dev|prod  (multipart field data_file: the CSV)
- GET  /health  (readiness: 503 "degraded" while the trainer does not answer)
- GET  /livez   (liveness: the process is up)
- GET  /        the console (preprocess/console: pages over the same API)
- GET  /openapi.json, /docs  (the API described, and Swagger UI on it)
"""

from __future__ import annotations

import os
import tempfile

from flask import Flask

from preprocess import console
from preprocess.openapi.views import openapi_bp, swagger_ui_bp
from preprocess.views import bp
from sluice_common import settings
from sluice_common.web.app import build_app, install_admission

# The settings preprocess reads, with their defaults (declared in sluice_common/settings).
DEFAULTS = settings.defaults("preprocess")


def create_app(test_config: dict | None = None) -> Flask:
    """Build the preprocess app from environment variables (and overrides for tests)."""
    app = build_app(__name__, test_config)
    # Slots are shared by the workers of one gunicorn master (their parent process).
    lock_dir = app.config["ADMISSION_DIR"] or os.path.join(
        tempfile.gettempdir(), f"sluice-preprocess-{os.getppid()}"
    )
    install_admission(app, lock_dir)
    app.register_blueprint(bp)
    console.init_app(app)  # the pages at / and /console/...
    app.register_blueprint(openapi_bp)
    app.register_blueprint(swagger_ui_bp)
    return app
