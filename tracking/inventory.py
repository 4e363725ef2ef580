"""What a stack's stores hold, for backups and their checks (scripts/backup.py):

python -m tracking.inventory describe            the facts below, as JSON
python -m tracking.inventory adopt-destination   record this stack's artifacts destination
                                                 as the registry's (after a restore)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

from sluice_common import settings
from sluice_common.database import monitoring_url, redacted
from tracking.stores import (
    artifacts_destination,
    backend_store_uri,
    guard_destination,
    resolved_env,
)


def describe(env: Mapping[str, str], state: str) -> dict:
    """What a backup holds and a restore must reproduce: where the stores are, MLflow's schema,
    the counts of runs, models and versions, each model's champion, monitoring batches."""
    import sqlalchemy as sa

    env = resolved_env(env)
    backend = backend_store_uri(env, state)
    facts: dict = {
        "backend": backend.split(":", 1)[0].split("+", 1)[0],
        "backend_url": redacted(backend),
        "bundled_db": (env.get("SLUICE_DB_HOST") or "") == "db"
        and not env.get("MLFLOW_BACKEND_STORE_URI"),
        "artifacts": artifacts_destination(env, state),
    }
    if facts["backend"] == "sqlite":
        facts["sqlite_path"] = backend[len("sqlite:///") :]
    engine = sa.create_engine(backend)
    try:
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
            facts["tables"] = len(names)
            if "experiments" in names:
                facts["runs"], facts["registered_models"], facts["model_versions"] = (
                    conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
                    for table in ("runs", "registered_models", "model_versions")
                )
                facts["mlflow_schema"] = conn.execute(
                    sa.text("SELECT version_num FROM alembic_version")
                ).scalar_one()
                rows = conn.execute(
                    sa.text("SELECT name, alias, version FROM registered_model_aliases")
                ).all()
                facts["aliases"] = {
                    f"{name}@{alias}": str(version) for name, alias, version in rows
                }
            facts["monitoring_in_backend"] = "monitoring_batches" in names
    finally:
        engine.dispose()
    monitoring = monitoring_url(env, env.get("TRAINER_STATE_DIR"))
    facts["monitoring_url"] = redacted(monitoring) if monitoring else None
    local = monitoring and monitoring.startswith("sqlite:///")
    if monitoring and (not local or os.path.exists(monitoring[len("sqlite:///") :])):
        engine = sa.create_engine(monitoring)
        try:
            with engine.connect() as conn:
                if "monitoring_batches" in sa.inspect(conn).get_table_names():
                    facts["monitoring_batches"] = conn.execute(
                        sa.text("SELECT COUNT(*) FROM monitoring_batches")
                    ).scalar_one()
                    facts["monitoring_schema"] = conn.execute(
                        sa.text("SELECT version FROM monitoring_schema")
                    ).scalar_one()
        finally:
            engine.dispose()
    return facts


if __name__ == "__main__":
    here = os.path.abspath(settings.value("SLUICE_MLFLOW_STATE") or ".")
    if sys.argv[1:] == ["describe"]:
        print(json.dumps(describe(os.environ, here), sort_keys=True))
    elif sys.argv[1:] == ["adopt-destination"]:  # after a restore wrote the artifacts here
        resolved = {**resolved_env(os.environ), "SLUICE_ADOPT_ARTIFACTS_DESTINATION": "1"}
        guard_destination(
            backend_store_uri(resolved, here), artifacts_destination(resolved, here), here, resolved
        )
    else:
        sys.exit("usage: python -m tracking.inventory describe | adopt-destination")
