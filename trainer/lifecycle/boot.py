"""This trainer start's identity: what tells its jobs and MLflow runs from an earlier start's."""

from __future__ import annotations

import os
import secrets

from sluice_common import settings

BOOT_ENV = "SLUICE_BOOT_ID"


def boot_id() -> str:
    """This trainer start's id: set by the gunicorn master for all its workers, else made here."""
    value = settings.value(BOOT_ENV)
    if not value:
        value = os.environ[BOOT_ENV] = secrets.token_hex(8)
    return value
