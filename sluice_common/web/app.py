"""What every Sluice service's app factory sets up the same way."""

from __future__ import annotations

import contextlib
import logging
import os

from flask import Flask, Request, current_app
from werkzeug.formparser import FormDataParser

from sluice_common import settings
from sluice_common.web.admission import Admission, work_above
from sluice_common.web.auth import install_token_check
from sluice_common.web.browsers import install_browser_checks
from sluice_common.web.errors import register_error_handlers
from sluice_common.web.jsonio import OrjsonProvider
from sluice_common.web.metrics import install_request_metrics
from sluice_common.web.slowbody import install_body_deadline

# Admission control settings every service reads (see sluice_common/web/admission.py).
ADMISSION_DEFAULTS = settings.section("Admission")
# Peak memory of parsing an upload, per byte of CSV: measured 14-18x for 20-50 MB files of 10
# to 1,000 columns of short cells (python -m bench.parse_memory), the worst case for the ratio.
PARSE_MEMORY_PER_BYTE = 18

log = logging.getLogger(__name__)


def warn_if_memory_is_short(heavy_slots: int, max_upload_mb: float) -> None:
    """Say at start when HEAVY_SLOTS uploads at MAX_UPLOAD_MB could exhaust this machine."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return
    needed = heavy_slots * PARSE_MEMORY_PER_BYTE * max_upload_mb * 2**20
    if needed > physical:
        log.warning(
            "HEAVY_SLOTS=%d uploads of MAX_UPLOAD_MB=%g can need ~%.1f GiB at once (~%dx each "
            "upload while it is parsed), more than this machine's %.1f GiB: lower "
            "MAX_UPLOAD_MB or HEAVY_SLOTS",
            heavy_slots,
            max_upload_mb,
            needed / 2**30,
            PARSE_MEMORY_PER_BYTE,
            physical / 2**30,
        )


class StrictFormRequest(Request):
    """A request whose form parser raises ValueError on a multipart body it cannot read (one
    cut off before its closing boundary, say): werkzeug's default parser drops it silently,
    which answered a truncated upload with "no field named data_file"."""

    def make_form_data_parser(self) -> FormDataParser:
        return self.form_data_parser_class(
            stream_factory=self._get_file_stream,
            max_form_memory_size=self.max_form_memory_size,
            max_content_length=self.max_content_length,
            max_form_parts=self.max_form_parts,
            cls=self.parameter_storage_class,
            silent=False,
        )


def build_app(name: str, test_config: dict | None = None) -> Flask:
    """A Flask app with the settings of service `name` (trainer or preprocess) from the
    environment, fast JSON, one error shape, the upload limit, the refusal of other sites'
    pages (Host allow-list, cross-site requests), the optional API token and Prometheus
    metrics on GET /metrics."""
    app = Flask(name, static_folder=None)  # no static files to serve
    app.request_class = StrictFormRequest
    app.config.from_mapping(settings.read(name))
    if test_config:
        app.config.update(test_config)
    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(levelname)s %(name)s %(message)s")
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_UPLOAD_MB"] * 1024 * 1024)
    register_error_handlers(app, app.config["MAX_UPLOAD_MB"])
    # Before the token: a page elsewhere is refused whether or not the stack has one.
    install_browser_checks(app, app.config["SLUICE_ALLOWED_HOSTS"])
    install_token_check(app, app.config["SLUICE_API_TOKEN"])
    install_body_deadline(app)
    install_request_metrics(app, name)
    return app


def install_admission(app: Flask, lock_dir: str) -> Admission:
    """The service's admission control, with its slot files in `lock_dir`."""
    admission = Admission(
        lock_dir,
        app.config["HEAVY_SLOTS"],
        app.config["ADMISSION_QUEUE"],
        app.config["ADMISSION_WAIT_SECONDS"],
    )
    app.extensions["admission"] = admission
    warn_if_memory_is_short(app.config["HEAVY_SLOTS"], app.config["MAX_UPLOAD_MB"])
    return admission


def heavy_slot(phase: str, raw: bytes | int, what: str, arrow: bool = False):
    """A slot of the current app's admission control for a dev training, or for a prod
    upload above HEAVY_PROD_MB or whose table (a CSV, or an `arrow` stream) is estimated
    above HEAVY_PROD_CELLS; a no-op context for everything else.

    `raw` is the upload's bytes (its size alone, from callers not yet passing the bytes,
    is judged by HEAVY_PROD_MB only).
    """
    config = current_app.config
    size = raw if isinstance(raw, int) else len(raw)
    heavy = (
        phase == "dev"
        or size > config["HEAVY_PROD_MB"] * 1024 * 1024
        or (not isinstance(raw, int) and work_above(raw, arrow, config["HEAVY_PROD_CELLS"]))
    )
    if heavy:
        return current_app.extensions["admission"].admit(what)
    return contextlib.nullcontext()
