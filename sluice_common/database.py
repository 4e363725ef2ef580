"""Where the stack's database is: one PostgreSQL database named by parts, or explicit URLs.

The Compose stack sets SLUICE_DB_HOST (and the other SLUICE_DB_* settings); MLflow's backend
store and the monitoring tables then share that database, so one dump backs up both. Building
the URL here, not in the compose file, means a password with `@`, `/` or `%` in it still works.
An explicit MLFLOW_BACKEND_STORE_URI or MONITORING_DB_URL wins over the parts.

- SLUICE_DB_HOST: unset means embedded (SQLite files in the state directory)
- SLUICE_DB_PORT (5432), SLUICE_DB_NAME (sluice), SLUICE_DB_USER (sluice), SLUICE_DB_PASSWORD
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import quote

DEFAULT_PORT = 5432
DEFAULT_NAME = "sluice"
DEFAULT_USER = "sluice"
# psycopg 3 is the driver installed in every image; a bare postgresql:// would mean psycopg2.
POSTGRES_SCHEME = "postgresql+psycopg"


def postgres_url(env: Mapping[str, str]) -> str | None:
    """The SQLAlchemy URL the SLUICE_DB_* settings name, or None when SLUICE_DB_HOST is unset."""
    host = (env.get("SLUICE_DB_HOST") or "").strip()
    if not host:
        return None
    port = int(env.get("SLUICE_DB_PORT") or DEFAULT_PORT)
    user = env.get("SLUICE_DB_USER") or DEFAULT_USER
    name = env.get("SLUICE_DB_NAME") or DEFAULT_NAME
    password = env.get("SLUICE_DB_PASSWORD") or ""
    credentials = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return f"{POSTGRES_SCHEME}://{credentials}@{host}:{port}/{quote(name, safe='')}"


def monitoring_url(settings: Mapping[str, str], state_dir: str | None) -> str | None:
    """The monitoring store: MONITORING_DB_URL, else the SLUICE_DB_* database, else SQLite in
    the trainer's state directory (None when that directory is not known)."""
    if settings.get("MONITORING_DB_URL"):
        return with_driver(settings["MONITORING_DB_URL"])
    shared = postgres_url(settings)
    if shared:
        return shared
    return f"sqlite:///{os.path.join(state_dir, 'monitoring.db')}" if state_dir else None


def with_driver(url: str) -> str:
    """A PostgreSQL URL with the installed driver named (postgresql:// -> postgresql+psycopg://)."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return POSTGRES_SCHEME + "://" + url[len(bare) :]
    return url


def redacted(url: str) -> str:
    """The URL with its password replaced, for logs and messages. Up to the last `@`: a
    password written without percent-encoding may hold `@`, `/` or `:` itself."""
    url = re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)  # libpq's query form
    scheme, separator, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not separator or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"
