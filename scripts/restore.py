"""Restore a backup (scripts/backup.py) into a fresh stack: verify, refuse a stack with data,
load, start, compare with the manifest. Every check that can refuse runs before anything is
written. Stdlib only."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tarfile
import time

from scripts.backup_common import (
    ARTIFACTS,
    COMPARED,
    DUMP,
    FORMAT,
    FORMAT_VERSION,
    KEY,
    KNOWN_FILES,
    MANIFEST,
    MLFLOW_DB,
    MONITORING_DB,
    ROOT,
    BackupError,
    Compose,
    Local,
    compose_profiles,
    run,
    say,
    sha256,
)
from tracking.artifacts_io import ArtifactsError, safe_name

# -- restore -----------------------------------------------------------------------------------


def verified(directory: str) -> dict:
    """The manifest, once every file it lists is there with its size and sha256."""
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise BackupError(
            f"{directory} has no {MANIFEST}: not a Sluice backup, or unfinished"
        ) from None
    except json.JSONDecodeError as err:
        raise BackupError(f"{path} is not valid JSON ({err})") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"{path} is format {manifest.get('format')!r} v{manifest.get('format_version')!r}; "
            f"this Sluice restores {FORMAT} v{FORMAT_VERSION}"
        )
    files = manifest.get("files") or {}
    for name, expected in files.items():
        if name not in KNOWN_FILES:
            raise BackupError(f"the manifest names a file a backup never holds: {name!r}")
        file = os.path.join(directory, name)
        if not os.path.isfile(file):
            raise BackupError(f"{name} is missing from the backup")
        if os.path.getsize(file) != expected["bytes"] or sha256(file) != expected["sha256"]:
            raise BackupError(f"{name} does not match its checksum in the manifest: damaged")
    missing = sorted(required_files(manifest) - set(files))
    if missing:
        raise BackupError(f"the manifest lists no checksum for {', '.join(missing)}: damaged")
    check_members(os.path.join(directory, ARTIFACTS))
    say(f"backup verified: {len(files)} files match the manifest")
    return manifest


def required_files(manifest: dict) -> set[str]:
    """Every file this restore will read, by the fixed names a backup uses."""
    database = manifest.get("database") or {}
    kind = database.get("kind")
    if kind == "postgresql" and database.get("file") == DUMP:
        needed = {DUMP, ARTIFACTS}
    elif kind == "sqlite" and database.get("mlflow") == MLFLOW_DB:
        needed = {MLFLOW_DB, ARTIFACTS}
        if database.get("monitoring") == MONITORING_DB:
            needed.add(MONITORING_DB)
    else:
        raise BackupError(f"the manifest's database entry {database!r} is not one a backup writes")
    if manifest.get("signing_key") == KEY:
        needed.add(KEY)
    return needed


def check_members(path: str) -> None:
    """Every artifact path stays inside the destination: checked before anything is written."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                safe_name(member.name)
    except ArtifactsError as err:
        raise BackupError(str(err)) from None
    except tarfile.TarError as err:
        raise BackupError(f"{ARTIFACTS} is not a readable tar ({err})") from None


def wait_for(check, what: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            check()
            return
        except BackupError:
            if time.monotonic() > deadline:
                raise BackupError(f"{what} did not become ready in {seconds:.0f} s") from None
            time.sleep(1)


KNOWN_REVISIONS = "from tracking.stores import known_revisions; print(*known_revisions())"
MONITORING_SCHEMA = "from trainer.monitoring.store import SCHEMA_VERSION; print(SCHEMA_VERSION)"


def refuse_newer(manifest: dict, revisions: str, monitoring: str) -> None:
    """A backup written by a newer Sluice would load and then fail to start: refuse it first."""
    stack = manifest.get("stack") or {}
    revision = stack.get("mlflow_schema")
    if revision and revision not in revisions.split():
        raise BackupError(
            f"the backup's MLflow schema {revision} is newer than this Sluice's MLflow: restore "
            "it with the Sluice that wrote it (manifest: sluice_commit)"
        )
    found = stack.get("monitoring_schema")
    if found is not None and int(found) > int(monitoring.strip()):
        raise BackupError(
            f"the backup's monitoring schema {found} is newer than this Sluice's "
            f"({monitoring.strip()}): restore it with the Sluice that wrote it"
        )


def refuse_artifacts(held: dict) -> None:
    """Checked before anything is written: a restore never mixes two stacks' artifacts."""
    if held.get("files"):
        raise BackupError(
            f"this stack's artifacts destination already holds {held['files']} files: restore "
            "into a fresh stack (or empty it first)"
        )


def restore_docker(directory: str, manifest: dict) -> dict:
    if manifest["database"]["kind"] != "postgresql":
        raise BackupError(
            "this backup holds SQLite databases (a local stack's); the Compose stack runs on "
            "PostgreSQL: restore it with scripts/restore.sh --local"
        )
    compose = Compose()
    if compose.running("mlflow") or compose.running("trainer"):
        raise BackupError(
            "this Compose project is running: restore into a fresh project (another "
            "COMPOSE_PROJECT_NAME), or stop it and delete its volumes "
            "(scripts/compose.sh down --purge)"
        )
    stores = ["db", *(["s3"] if "s3" in compose_profiles() else [])]
    say(f"starting {' and '.join(stores)}")
    compose("up", "-d", *stores, what="compose up")
    # Over TCP, like the healthcheck: during first-start initialisation a temporary server
    # answers on the socket only.
    tcp = 'PGPASSWORD="$POSTGRES_PASSWORD" PGHOST=127.0.0.1'
    psql = f'{tcp} psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tA -c'
    wait_for(lambda: compose.exec("db", "sh", "-c", f"{psql} 'SELECT 1'"), "the db service")
    if "s3" in stores:
        wait_for(
            lambda: compose.exec("s3", "python", "-m", "s3.serve", "--check"), "the s3 service"
        )
    tables = compose.exec(
        "db", "sh", "-c", f"{psql} \"SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'\""
    )
    if int(tables.strip() or 0):
        raise BackupError(
            "the db service of this project already holds tables: restore into a fresh project "
            "(another COMPOSE_PROJECT_NAME) or delete its volumes first"
        )
    refuse_newer(
        manifest,
        compose.one_off("mlflow", "python", "-c", KNOWN_REVISIONS),
        compose.one_off("trainer", "python", "-c", MONITORING_SCHEMA),
    )
    held = json.loads(
        compose.one_off("mlflow", "python", "-m", "tracking.artifacts_io", "count").splitlines()[-1]
    )
    refuse_artifacts(held)
    say("loading the database")
    with open(os.path.join(directory, DUMP), "rb") as dump:
        compose.exec(
            "db",
            "sh",
            "-c",
            'PGPASSWORD="$POSTGRES_PASSWORD" pg_restore -h 127.0.0.1 -U "$POSTGRES_USER" '
            '-d "$POSTGRES_DB" --no-owner '
            "--no-privileges --single-transaction --exit-on-error",
            stdin=dump,
        )
    say("writing the artifacts")
    with open(os.path.join(directory, ARTIFACTS), "rb") as tar:
        compose.one_off("mlflow", "python", "-m", "tracking.artifacts_io", "import", stdin=tar)
    # The dump records the first stack's destination; the artifacts now live at this one's.
    compose.one_off("mlflow", "python", "-m", "tracking.inventory", "adopt-destination")
    if manifest.get("signing_key") == KEY:
        with open(os.path.join(directory, KEY), "rb") as key:
            compose.one_off(
                "trainer",
                "sh",
                "-c",
                'umask 077 && mkdir -p "$TRAINER_STATE_DIR" && '
                'cat > "$TRAINER_STATE_DIR/signing.key.new" && '
                'mv "$TRAINER_STATE_DIR/signing.key.new" "$TRAINER_STATE_DIR/signing.key"',
                stdin=key,
            )
    say("starting the stack")
    done = subprocess.run([os.path.join(ROOT, "scripts", "compose.sh"), "up"])
    if done.returncode != 0:
        raise BackupError("the restored stack did not start (see above)")
    return json.loads(compose.exec("mlflow", "python", "-m", "tracking.inventory", "describe"))


def restore_local(directory: str, manifest: dict) -> dict:
    local = Local()
    if local.running():
        raise BackupError(
            f"a local stack runs under {local.home}: stop it, or set SLUICE_HOME to a new directory"
        )
    os.makedirs(local.home, mode=0o700, exist_ok=True)
    facts = json.loads(local.module("tracking.inventory", "describe"))
    if facts.get("runs") or facts.get("registered_models"):
        raise BackupError(
            f"the stack under {local.home} already holds runs or models: restore into a "
            "fresh SLUICE_HOME"
        )
    kind = manifest["database"]["kind"]
    if kind != facts["backend"]:
        raise BackupError(
            f"the backup holds a {kind} database and this stack's MLflow store is "
            f"{facts['backend']}: point MLFLOW_BACKEND_STORE_URI at a {kind} store"
        )
    if kind == "postgresql" and facts.get("tables"):
        raise BackupError(
            f"the database {facts['backend_url']} already holds {facts['tables']} tables: "
            "restore into an empty database"
        )
    monitoring = facts.get("monitoring_url") or ""
    if manifest["database"].get("monitoring") == MONITORING_DB:
        if not monitoring.startswith("sqlite:///"):
            raise BackupError("the backup's monitoring store is SQLite; unset MONITORING_DB_URL")
        if os.path.exists(monitoring[10:]):
            raise BackupError(f"{monitoring[10:]} exists: restore into a fresh SLUICE_HOME")
    refuse_newer(
        manifest, local.module("-c", KNOWN_REVISIONS), local.module("-c", MONITORING_SCHEMA)
    )
    refuse_artifacts(json.loads(local.module("tracking.artifacts_io", "count").splitlines()[-1]))
    say("loading the database")
    if kind == "sqlite":
        target = facts["sqlite_path"]
        for stale in (target, target + "-wal", target + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        shutil.copyfile(os.path.join(directory, MLFLOW_DB), target)
        if manifest["database"].get("monitoring") == MONITORING_DB:
            os.makedirs(os.path.dirname(monitoring[10:]), mode=0o700, exist_ok=True)
            shutil.copyfile(os.path.join(directory, MONITORING_DB), monitoring[10:])
    else:
        pg_restore = shutil.which("pg_restore")
        if not pg_restore:
            raise BackupError(
                "the backup is a PostgreSQL dump: install pg_restore (postgresql-client)"
            )
        url, env = local.pg_connection()
        with open(os.path.join(directory, DUMP), "rb") as dump:
            run(
                [
                    pg_restore,
                    "--no-owner",
                    "--no-privileges",
                    "--single-transaction",
                    "--exit-on-error",
                    f"--dbname={url}",
                ],
                stdin=dump,
                env=env,
                what="pg_restore",
            )
    say("writing the artifacts")
    with open(os.path.join(directory, ARTIFACTS), "rb") as tar:
        local.module("tracking.artifacts_io", "import", stdin=tar)
    local.module("tracking.inventory", "adopt-destination")
    if manifest.get("signing_key") == KEY:
        os.makedirs(local.state, mode=0o700, exist_ok=True)
        target = os.path.join(local.state, KEY)
        with open(target + ".new", "wb") as out:
            os.chmod(target + ".new", 0o600)
            with open(os.path.join(directory, KEY), "rb") as key:
                shutil.copyfileobj(key, out)
        os.replace(target + ".new", target)
    say("starting the stack")
    done = subprocess.run([os.path.join(ROOT, "scripts", "local.sh"), "start"], env=local.env)
    if done.returncode != 0:
        raise BackupError("the restored stack did not start (see above)")
    return json.loads(local.module("tracking.inventory", "describe"))


def compare(manifest: dict, facts: dict) -> list[str]:
    """What the restored stack holds that differs from the manifest."""
    return [
        f"{key}: backup {manifest['stack'].get(key)!r}, restored {facts.get(key)!r}"
        for key in COMPARED
        if manifest["stack"].get(key) is not None and manifest["stack"].get(key) != facts.get(key)
    ]
