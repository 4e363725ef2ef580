"""Back up a running Sluice stack, and restore a backup into a fresh stack.

    scripts/backup.sh [--docker|--local] [DIR]   (default DIR: backups/sluice-<UTC time>)
    scripts/restore.sh [--docker|--local] DIR

A backup is a directory: the database (PostgreSQL: one pg_dump of MLflow's runs and registry
and the monitoring tables, a single snapshot; SQLite: online copies of mlflow.db and
monitoring.db), the artifacts as one tar (from a directory or S3), the trainer's signing key
(without it a restored stack would refuse every model it signed), and manifest.json: what each
file holds, its size and sha256, MLflow's schema, the counts of runs, models and versions, each
champion, the monitoring batches. The database goes first: every artifact a dumped version
points at was written before the version was registered, so it is in the tar.

Restore checks every file against the manifest, refuses a stack that already holds data,
loads it, starts the stack and compares what it serves with the manifest.

The backup holds secrets (the signing key, the database's password hashes): it is written with
mode 0700/0600; keep it like the database itself. Stdlib only: in Docker mode it needs nothing
but Python and Compose on the host (the work runs in the stack's own containers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from scripts import restore  # noqa: E402
from scripts.backup_common import (  # noqa: E402
    ARTIFACTS,
    COMPARED,
    DUMP,
    FORMAT,
    FORMAT_VERSION,
    KEY,
    MANIFEST,
    MLFLOW_DB,
    MONITORING_DB,
    ROOT,
    BackupError,
    Compose,
    Local,
    docker_answers,
    dump_facts,
    run,
    say,
    sha256,
)
from sluice_common import settings  # noqa: E402


def new_dir(path: str) -> str:
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise BackupError(f"{path} is a file: name a new directory")
    if os.path.exists(path) and os.listdir(path):
        raise BackupError(f"{path} exists and is not empty: name a new directory")
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def record(directory: str, manifest: dict) -> None:
    files = {}
    for name in sorted(os.listdir(directory)):
        if name != MANIFEST:
            path = os.path.join(directory, name)
            os.chmod(path, 0o600)
            files[name] = {"bytes": os.path.getsize(path), "sha256": sha256(path)}
    manifest["files"] = files
    target = os.path.join(directory, MANIFEST)
    with open(target + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.chmod(target + ".tmp", 0o600)
    os.replace(target + ".tmp", target)  # a manifest present means the backup is complete


def start_manifest(mode: str, facts: dict, snapshot: dict) -> dict:
    """The manifest's head; `snapshot` is what the copied database itself holds."""
    commit = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "mode": mode,
        "sluice_commit": commit or None,
        "stack": {
            key: snapshot.get(key) for key in (*COMPARED, "mlflow_schema", "monitoring_schema")
        },
        "backend": facts["backend"],
    }


def backup_docker(directory: str) -> dict:
    compose = Compose()
    for service in ("db", "mlflow", "trainer"):
        if not compose.running(service):
            raise BackupError(
                f"the {service} service of this Compose project is not running: start the stack "
                "(./start.sh) or set COMPOSE_PROJECT_NAME to the project to back up"
            )
    facts = json.loads(compose.exec("mlflow", "python", "-m", "tracking.inventory", "describe"))
    if not facts.get("bundled_db"):
        raise BackupError(
            f"MLflow's store is {facts['backend_url']}, not the stack's db service: back it up "
            "with that database's own tools (scripts/backup.sh covers the db service and "
            "local mode)"
        )
    say("dumping the database (one consistent snapshot)")
    dump = os.path.join(directory, DUMP)
    with open(dump, "wb") as out:
        compose.exec(
            "db",
            "sh",
            "-c",
            'pg_dump -U "$POSTGRES_USER" -d "$POSTGRES_DB" --format=custom',
            stdout=out,
        )

    def table_data(table: str) -> str:
        with open(dump, "rb") as handle:
            return compose.exec(
                "db",
                "pg_restore",
                "--data-only",
                "--schema=public",
                f"--table={table}",
                "--file=-",
                stdin=handle,
            )

    snapshot = dump_facts(table_data)
    manifest = start_manifest("docker", facts, snapshot)
    own = subprocess.run(
        [*compose.command, "exec", "-T", "trainer", "printenv", "MONITORING_DB_URL"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if own:
        monitoring = "not included: the trainer's MONITORING_DB_URL names a store of its own"
        say(f"note: monitoring is {monitoring}")
    elif "monitoring_batches" in snapshot:
        monitoring = "included"
    else:
        monitoring = "not included: no monitoring tables in the database"
    manifest["database"] = {"kind": "postgresql", "file": DUMP, "monitoring": monitoring}
    say(f"copying the artifacts ({'S3' if facts['artifacts'].startswith('s3://') else 'volume'})")
    with open(os.path.join(directory, ARTIFACTS), "wb") as out:
        compose.exec("mlflow", "python", "-m", "tracking.artifacts_io", "export", stdout=out)
    key = os.path.join(directory, KEY)
    with open(key, "wb") as out:
        compose.exec(
            "trainer",
            "sh",
            "-c",
            'f="$TRAINER_STATE_DIR/signing.key"; if [ -f "$f" ]; then cat "$f"; fi',
            stdout=out,
        )
    return finish_manifest(manifest, directory, key)


def finish_manifest(manifest: dict, directory: str, key: str) -> dict:
    if os.path.getsize(key) == 0:
        os.unlink(key)
        manifest["signing_key"] = "not in the backup: SLUICE_SIGNING_KEY is set; restore with it"
    else:
        manifest["signing_key"] = KEY
    members = artifact_members(os.path.join(directory, ARTIFACTS))
    manifest["artifacts"] = {"file": ARTIFACTS, **members}
    return manifest


def artifact_members(path: str) -> dict:
    import tarfile

    files = total = 0
    with tarfile.open(path, mode="r:") as tar:
        for member in tar:
            if member.isfile():
                files, total = files + 1, total + member.size
    return {"files": files, "bytes": total}


def sqlite_copy(source: str, target: str) -> None:
    """An online, consistent copy (SQLite's backup API: writers may keep writing)."""
    with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src:
        with contextlib.closing(sqlite3.connect(target)) as dst:
            src.backup(dst)


def backup_local(directory: str) -> dict:
    local = Local()
    if not local.running():
        raise BackupError(f"no local stack runs under {local.home}: start it, or set SLUICE_HOME")
    facts = json.loads(local.module("tracking.inventory", "describe"))
    if facts["backend"] == "sqlite":
        say("copying the SQLite databases (online backup)")
        copy = os.path.join(directory, MLFLOW_DB)
        sqlite_copy(facts["sqlite_path"], copy)
        database = {"kind": "sqlite", "mlflow": MLFLOW_DB}
        monitoring = facts.get("monitoring_url") or ""
        monitoring_copy = os.path.join(directory, MONITORING_DB)
        if monitoring.startswith("sqlite:///") and os.path.exists(monitoring[10:]):
            sqlite_copy(monitoring[10:], monitoring_copy)
            database["monitoring"] = MONITORING_DB
        else:
            database["monitoring"] = f"not included: a store of its own ({monitoring or 'none'})"
        # The counts come from the copies themselves: what this backup holds, exactly.
        snapshot = json.loads(
            local.module(
                "tracking.inventory",
                "describe",
                env={
                    **local.env,
                    "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{copy}",
                    "MONITORING_DB_URL": f"sqlite:///{monitoring_copy}",
                    "SLUICE_DB_HOST": "",
                },
            )
        )
    elif facts["backend"] == "postgresql":
        pg_dump, pg_restore = shutil.which("pg_dump"), shutil.which("pg_restore")
        if not pg_dump or not pg_restore:
            raise BackupError(
                "MLflow's store is PostgreSQL: install pg_dump and pg_restore (postgresql-client)"
            )
        say("dumping the database (one consistent snapshot)")
        url, env = local.pg_connection()
        dump = os.path.join(directory, DUMP)
        with open(dump, "wb") as out:
            run(
                [pg_dump, "--format=custom", f"--dbname={url}"], stdout=out, env=env, what="pg_dump"
            )
        snapshot = dump_facts(
            lambda table: run(
                [
                    pg_restore,
                    "--data-only",
                    "--schema=public",
                    f"--table={table}",
                    "--file=-",
                    dump,
                ],
                what="pg_restore",
            )
        )
        database = {"kind": "postgresql", "file": DUMP}
        database["monitoring"] = (
            "included"
            if "monitoring_batches" in snapshot
            else f"not included: a store of its own ({facts.get('monitoring_url')})"
        )
    else:
        raise BackupError(f"cannot back up a {facts['backend']} store")
    manifest = start_manifest("local", facts, snapshot)
    manifest["database"] = database
    if database["monitoring"].startswith("not included"):
        say(f"note: monitoring is {database['monitoring']}")
    say("copying the artifacts")
    with open(os.path.join(directory, ARTIFACTS), "wb") as out:
        local.module("tracking.artifacts_io", "export", stdout=out)
    key = os.path.join(directory, KEY)
    source = os.path.join(local.state, "signing.key")
    if os.path.exists(source):
        shutil.copyfile(source, key)
    else:
        open(key, "wb").close()
    return finish_manifest(manifest, directory, key)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/backup.py")
    parser.add_argument("action", choices=("backup", "restore"))
    parser.add_argument("directory", nargs="?")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--docker", dest="mode", action="store_const", const="docker")
    group.add_argument("--local", dest="mode", action="store_const", const="local")
    args = parser.parse_intermixed_args(argv)
    mode = args.mode or settings.value("SLUICE_MODE")
    if mode == "auto":
        mode = "docker" if docker_answers() else "local"
    given = os.path.abspath(args.directory) if args.directory else None  # before the chdir
    os.chdir(ROOT)  # Compose reads ./.env, like scripts/compose.sh
    try:
        if args.action == "backup":
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            target = given or os.path.join(ROOT, "backups", f"sluice-{stamp}")
            existed = os.path.isdir(target)
            directory = new_dir(target)
            try:
                manifest = (backup_docker if mode == "docker" else backup_local)(directory)
                record(directory, manifest)
            except BaseException:
                # No half backup left to trust; a directory the user made (empty) is kept.
                for name in os.listdir(directory):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(directory, name))
                if not existed:
                    shutil.rmtree(directory, ignore_errors=True)
                raise
            stack = manifest["stack"]
            say(
                f"backup written to {directory}: {stack.get('runs')} runs, "
                f"{stack.get('model_versions')} model versions, "
                f"{manifest['artifacts']['files']} artifact files "
                f"({manifest['artifacts']['bytes']} bytes), "
                + (
                    f"{stack['monitoring_batches']} monitoring batches"
                    if stack.get("monitoring_batches") is not None
                    else "monitoring not included"
                )
            )
            return 0
        if not args.directory:
            parser.error("restore needs the backup's directory")
        directory = given
        manifest = restore.verified(directory)
        restoring = restore.restore_docker if mode == "docker" else restore.restore_local
        facts = restoring(directory, manifest)
        differences = restore.compare(manifest, facts)
        if differences:
            raise BackupError(
                "the restored stack differs from the backup: " + "; ".join(differences)
            )
        say(
            f"restored {facts.get('runs')} runs, {facts.get('model_versions')} model versions, "
            f"champions {facts.get('aliases')}; it matches the manifest"
        )
        return 0
    except BackupError as err:
        print(f"sluice: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
