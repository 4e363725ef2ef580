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
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORMAT = "sluice-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DUMP, ARTIFACTS, KEY = "database.dump", "artifacts.tar", "signing.key"
MLFLOW_DB, MONITORING_DB = "mlflow.db", "monitoring.db"
COMPARED = ("runs", "registered_models", "model_versions", "aliases", "monitoring_batches")


class BackupError(Exception):
    """Something to fix before a backup or restore can go on; the message says what."""


def say(message: str) -> None:
    print(f"sluice: {message}", flush=True)


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run(command: list[str], *, stdin=None, stdout=None, env=None, what: str) -> str:
    """Run a command; its error output becomes the BackupError's message when it fails."""
    done = subprocess.run(
        command,
        stdin=stdin,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip()[-1500:]
        raise BackupError(f"{what} failed (exit {done.returncode}): {detail}")
    return done.stdout.decode() if stdout is None else ""


# -- where the stack is ------------------------------------------------------------------------


class Compose:
    """The Compose project in this checkout (COMPOSE_PROJECT_NAME, .env, COMPOSE_PROFILES)."""

    def __init__(self) -> None:
        v2 = subprocess.run(["docker", "compose", "version"], capture_output=True)
        base = ["docker", "compose"] if v2.returncode == 0 else ["docker-compose"]
        self.command = [*base, "-f", os.path.join(ROOT, "docker-compose.yml")]

    def __call__(self, *args: str, what: str, **kwargs) -> str:
        return run([*self.command, *args], what=what, **kwargs)

    def running(self, service: str) -> bool:
        done = subprocess.run(
            [*self.command, "ps", "-q", service], capture_output=True, text=True, cwd=ROOT
        )
        ids = done.stdout.split()
        if not ids:
            return False
        state = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", ids[0]],
            capture_output=True,
            text=True,
        )
        return state.stdout.strip() == "true"

    def services(self) -> list[str]:
        return self("config", "--services", what="compose config").split()

    def exec(self, service: str, *command: str, **kwargs) -> str:
        return self("exec", "-T", service, *command, what=f"{service}: {command[0]}", **kwargs)

    def one_off(self, service: str, *command: str, **kwargs) -> str:
        """The command in a new container of the service (its volumes and settings), removed."""
        return self(
            "run",
            "--rm",
            "--no-deps",
            "-T",
            service,
            *command,
            what=f"{service}: {command[0]}",
            **kwargs,
        )


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


class Local:
    """The local-mode stack under SLUICE_HOME, its processes' settings as scripts/local.sh
    gives them."""

    def __init__(self) -> None:
        self.home = os.path.realpath(os.environ.get("SLUICE_HOME") or os.path.join(ROOT, ".sluice"))
        self.venv = os.environ.get("SLUICE_VENV") or os.path.join(ROOT, ".venv")
        self.python = os.path.join(self.venv, "bin", "python")
        self.state = os.environ.get("TRAINER_STATE_DIR") or os.path.join(self.home, "trainer")
        self.env = dict(os.environ)
        self.env.update(
            SLUICE_MLFLOW_STATE=self.home,
            TRAINER_STATE_DIR=self.state,
            PYTHONPATH=ROOT
            + (os.pathsep + os.environ["PYTHONPATH"] if "PYTHONPATH" in os.environ else ""),
        )

    def module(self, *args: str, **kwargs) -> str:
        if not os.access(self.python, os.X_OK):
            raise BackupError(f"no Python environment at {self.venv}: run scripts/ensure_venv.sh")
        return run(
            [self.python, *(["-m"] if args[0] != "-c" else []), *args],
            env=self.env,
            what=" ".join(args[:2])[:60],
            **kwargs,
        )

    def running(self) -> bool:
        done = subprocess.run(
            [os.path.join(ROOT, "scripts", "local.sh"), "status"],
            capture_output=True,
            text=True,
            env=self.env,
        )
        return "running" in done.stdout


def libpq_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as pg_dump/pg_restore read it."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgres") else url


# -- backup ----------------------------------------------------------------------------------


def new_dir(path: str) -> str:
    path = os.path.abspath(path)
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
    os.replace(target + ".tmp", target)  # a manifest present means the backup is complete


def start_manifest(mode: str, facts: dict) -> dict:
    commit = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "mode": mode,
        "sluice_commit": commit or None,
        "stack": {key: facts.get(key) for key in (*COMPARED, "mlflow_schema", "monitoring_schema")},
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
    facts = json.loads(compose.exec("mlflow", "python", "-m", "tracking.stores", "describe"))
    if not facts.get("bundled_db"):
        raise BackupError(
            f"MLflow's store is {facts['backend_url']}, not the stack's db service: back it up "
            "with that database's own tools (scripts/backup.sh covers the db service and "
            "local mode)"
        )
    if os.environ.get("MONITORING_DB_URL"):
        say("note: MONITORING_DB_URL names a store of its own; it is not in this backup")
    manifest = start_manifest("docker", facts)
    say("dumping the database (one consistent snapshot)")
    with open(os.path.join(directory, DUMP), "wb") as out:
        compose.exec(
            "db",
            "sh",
            "-c",
            'pg_dump -U "$POSTGRES_USER" -d "$POSTGRES_DB" --format=custom',
            stdout=out,
        )
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
    manifest["database"] = {"kind": "postgresql", "file": DUMP, "monitoring": "included"}
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
    facts = json.loads(local.module("tracking.stores", "describe"))
    manifest = start_manifest("local", facts)
    if facts["backend"] == "sqlite":
        say("copying the SQLite databases (online backup)")
        sqlite_copy(facts["sqlite_path"], os.path.join(directory, MLFLOW_DB))
        database = {"kind": "sqlite", "mlflow": MLFLOW_DB}
        monitoring = facts.get("monitoring_url") or ""
        if monitoring.startswith("sqlite:///") and os.path.exists(monitoring[10:]):
            sqlite_copy(monitoring[10:], os.path.join(directory, MONITORING_DB))
            database["monitoring"] = MONITORING_DB
        elif facts.get("monitoring_in_backend"):
            database["monitoring"] = "included"
        else:
            database["monitoring"] = f"not included ({facts.get('monitoring_url')})"
    elif facts["backend"] == "postgresql":
        pg_dump = shutil.which("pg_dump")
        if not pg_dump:
            raise BackupError("MLflow's store is PostgreSQL: install pg_dump (postgresql-client)")
        say("dumping the database (one consistent snapshot)")
        url = libpq_url(local_backend_url(local))
        with open(os.path.join(directory, DUMP), "wb") as out:
            run([pg_dump, "--format=custom", f"--dbname={url}"], stdout=out, what="pg_dump")
        database = {"kind": "postgresql", "file": DUMP}
        database["monitoring"] = (
            "included"
            if facts.get("monitoring_in_backend")
            else f"not included ({facts.get('monitoring_url')})"
        )
    else:
        raise BackupError(f"cannot back up a {facts['backend']} store")
    manifest["database"] = database
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


def local_backend_url(local: Local) -> str:
    """The backend URL with its password, by the tracking server's own rule."""
    code = (
        "import os; from tracking import stores; env = stores.resolved_env(os.environ); "
        "print(stores.backend_store_uri(env, os.environ['SLUICE_MLFLOW_STATE']))"
    )
    return local.module("-c", code).strip()


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
    for name, expected in manifest.get("files", {}).items():
        if os.path.basename(name) != name:
            raise BackupError(f"the manifest names an unsafe file {name!r}")
        file = os.path.join(directory, name)
        if not os.path.isfile(file):
            raise BackupError(f"{name} is missing from the backup")
        if os.path.getsize(file) != expected["bytes"] or sha256(file) != expected["sha256"]:
            raise BackupError(f"{name} does not match its checksum in the manifest: damaged")
    say(f"backup verified: {len(manifest.get('files', {}))} files match the manifest")
    return manifest


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
    stores = ["db", *(["s3"] if "s3" in compose.services() else [])]
    say(f"starting {' and '.join(stores)}")
    compose("up", "-d", *stores, what="compose up")
    psql = 'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tA -c'
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
    held = json.loads(
        compose.one_off("mlflow", "python", "-m", "tracking.artifacts_io", "count").splitlines()[-1]
    )
    refuse_artifacts(held)
    say("loading the database")
    with open(os.path.join(directory, manifest["database"]["file"]), "rb") as dump:
        compose.exec(
            "db",
            "sh",
            "-c",
            'pg_restore -U "$POSTGRES_USER" -d "$POSTGRES_DB" --no-owner --exit-on-error',
            stdin=dump,
        )
    say("writing the artifacts")
    with open(os.path.join(directory, ARTIFACTS), "rb") as tar:
        compose.one_off("mlflow", "python", "-m", "tracking.artifacts_io", "import", stdin=tar)
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
    return json.loads(compose.exec("mlflow", "python", "-m", "tracking.stores", "describe"))


def restore_local(directory: str, manifest: dict) -> dict:
    local = Local()
    if local.running():
        raise BackupError(
            f"a local stack runs under {local.home}: stop it, or set SLUICE_HOME to a new directory"
        )
    os.makedirs(local.home, mode=0o700, exist_ok=True)
    facts = json.loads(local.module("tracking.stores", "describe"))
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
    refuse_artifacts(json.loads(local.module("tracking.artifacts_io", "count").splitlines()[-1]))
    say("loading the database")
    if kind == "sqlite":
        target = facts["sqlite_path"]
        for stale in (target, target + "-wal", target + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        shutil.copyfile(os.path.join(directory, manifest["database"]["mlflow"]), target)
        if manifest["database"].get("monitoring") == MONITORING_DB:
            os.makedirs(local.state, mode=0o700, exist_ok=True)
            monitoring = facts.get("monitoring_url") or ""
            if not monitoring.startswith("sqlite:///"):
                raise BackupError(
                    "the backup's monitoring store is SQLite; unset MONITORING_DB_URL"
                )
            shutil.copyfile(os.path.join(directory, MONITORING_DB), monitoring[10:])
    else:
        pg_restore = shutil.which("pg_restore")
        if not pg_restore:
            raise BackupError(
                "the backup is a PostgreSQL dump: install pg_restore (postgresql-client)"
            )
        url = libpq_url(local_backend_url(local))
        with open(os.path.join(directory, manifest["database"]["file"]), "rb") as dump:
            run(
                [pg_restore, "--no-owner", "--exit-on-error", f"--dbname={url}"],
                stdin=dump,
                what="pg_restore",
            )
    say("writing the artifacts")
    with open(os.path.join(directory, ARTIFACTS), "rb") as tar:
        local.module("tracking.artifacts_io", "import", stdin=tar)
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
    return json.loads(local.module("tracking.stores", "describe"))


def compare(manifest: dict, facts: dict) -> list[str]:
    """What the restored stack holds that differs from the manifest."""
    return [
        f"{key}: backup {manifest['stack'].get(key)!r}, restored {facts.get(key)!r}"
        for key in COMPARED
        if manifest["stack"].get(key) is not None and manifest["stack"].get(key) != facts.get(key)
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/backup.py")
    parser.add_argument("action", choices=("backup", "restore"))
    parser.add_argument("directory", nargs="?")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--docker", dest="mode", action="store_const", const="docker")
    group.add_argument("--local", dest="mode", action="store_const", const="local")
    args = parser.parse_intermixed_args(argv)
    mode = args.mode or os.environ.get("SLUICE_MODE") or "auto"
    if mode == "auto":
        mode = "docker" if docker_answers() else "local"
    os.chdir(ROOT)  # Compose reads ./.env, like scripts/compose.sh
    try:
        if args.action == "backup":
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            directory = new_dir(args.directory or os.path.join(ROOT, "backups", f"sluice-{stamp}"))
            manifest = (backup_docker if mode == "docker" else backup_local)(directory)
            record(directory, manifest)
            stack = manifest["stack"]
            say(
                f"backup written to {directory}: {stack.get('runs')} runs, "
                f"{stack.get('model_versions')} model versions, "
                f"{manifest['artifacts']['files']} artifact files "
                f"({manifest['artifacts']['bytes']} bytes), "
                f"{stack.get('monitoring_batches') or 0} monitoring batches"
            )
            return 0
        if not args.directory:
            parser.error("restore needs the backup's directory")
        directory = os.path.abspath(args.directory)
        manifest = verified(directory)
        facts = (restore_docker if mode == "docker" else restore_local)(directory, manifest)
        differences = compare(manifest, facts)
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
