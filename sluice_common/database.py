"""Where the stack's database is: one PostgreSQL database named by parts, or explicit URLs.

The Compose stack sets SLUICE_DB_HOST (and the other SLUICE_DB_* settings); MLflow's backend
store, the monitoring tables and the jobs table then share that database, so one dump backs up
them all. Building the URL here, not in the compose file, means a password with `@`, `/` or `%`
in it still works. An explicit MLFLOW_BACKEND_STORE_URI, MONITORING_DB_URL or JOBS_DB_URL wins
over the parts (sluice_common/settings declares them all). Also here: the SQLAlchemy engine and
the time helpers the monitoring and jobs tables share.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

from sluice_common.settings import SETTINGS

if TYPE_CHECKING:
    import sqlalchemy as sa

DEFAULT_PORT = SETTINGS["SLUICE_DB_PORT"].default
DEFAULT_NAME = SETTINGS["SLUICE_DB_NAME"].default
DEFAULT_USER = SETTINGS["SLUICE_DB_USER"].default
# psycopg 3 is the driver installed in every image; a bare postgresql:// would mean psycopg2.
POSTGRES_SCHEME = "postgresql+psycopg"
log = logging.getLogger(__name__)


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


def jobs_url(settings: Mapping[str, str], state_dir: str | None) -> str | None:
    """The jobs table's database: JOBS_DB_URL, else (kept from before JOBS_DB_URL, with a
    warning) MONITORING_DB_URL, else the SLUICE_DB_* database, else the SQLite file the
    monitoring store uses by default."""
    if settings.get("JOBS_DB_URL"):
        return with_driver(settings["JOBS_DB_URL"])
    if settings.get("MONITORING_DB_URL"):
        log.warning(
            "the jobs table is in MONITORING_DB_URL's database (%s), as before JOBS_DB_URL "
            "existed: set JOBS_DB_URL to name the jobs database",
            redacted(settings["MONITORING_DB_URL"]),
        )
    return monitoring_url(settings, state_dir)


def make_engine(url: str) -> sa.Engine:
    """An engine for a Sluice store; SQLite waits for other writers instead of failing."""
    # Imported here: the backup scripts import this module with the host's Python, which
    # need not have SQLAlchemy (optional heavy dependency).
    import sqlalchemy as sa

    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(connection, _record):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writers
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def utcnow() -> datetime:
    """Naive UTC (every backend stores it the same way)."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso_utc(value: datetime | None) -> str | None:
    """A naive UTC time as ISO 8601 with a Z, to the second."""
    return None if value is None else value.replace(microsecond=0).isoformat() + "Z"


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
