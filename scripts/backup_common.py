"""What backup.py and restore.py share: where the stack is (Compose or local), how commands
run, the backup's file names, and reading a PostgreSQL dump's contents. Stdlib only."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess

from sluice_common import settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORMAT = "sluice-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DUMP, ARTIFACTS, KEY = "database.dump", "artifacts.tar", "signing.key"
MLFLOW_DB, MONITORING_DB = "mlflow.db", "monitoring.db"
KNOWN_FILES = frozenset({DUMP, ARTIFACTS, KEY, MLFLOW_DB, MONITORING_DB})
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
        self.home = os.path.realpath(settings.raw("SLUICE_HOME") or os.path.join(ROOT, ".sluice"))
        self.venv = settings.raw("SLUICE_VENV") or os.path.join(ROOT, ".venv")
        self.python = os.path.join(self.venv, "bin", "python")
        self.state = settings.raw("TRAINER_STATE_DIR") or os.path.join(self.home, "trainer")
        self.env = dict(os.environ)
        self.env.update(
            SLUICE_MLFLOW_STATE=self.home,
            TRAINER_STATE_DIR=self.state,
            PYTHONPATH=ROOT
            + (os.pathsep + settings.raw("PYTHONPATH") if settings.raw("PYTHONPATH") else ""),
        )

    def module(self, *args: str, env: dict | None = None, **kwargs) -> str:
        """`python -m MODULE ARGS` (or `python -c CODE`) in the stack's environment."""
        if not os.access(self.python, os.X_OK):
            raise BackupError(f"no Python environment at {self.venv}: run scripts/ensure_venv.sh")
        return run(
            [self.python, *(["-m"] if args[0] != "-c" else []), *args],
            env=env or self.env,
            what=" ".join(args[:2])[:60],
            **kwargs,
        )

    def pg_connection(self) -> tuple[str, dict]:
        """MLflow's PostgreSQL store as pg_dump/pg_restore take it: a URL without the password
        (a command line is readable by every local user in /proc) and an environment with
        PGPASSWORD. Split by SQLAlchemy, which is what the server parses it with."""
        code = (
            "import json, os; from sqlalchemy.engine import make_url; "
            "from sluice_common import settings; from tracking import stores; "
            "env = stores.resolved_env(os.environ); "
            "url = make_url(stores.backend_store_uri(env, settings.raw('SLUICE_MLFLOW_STATE'))); "
            "print(json.dumps({'url': url.set(drivername='postgresql', password=None)"
            ".render_as_string(hide_password=False), 'password': url.password}))"
        )
        found = json.loads(self.module("-c", code).strip().splitlines()[-1])
        env = dict(os.environ)
        if found["password"] is not None:
            env["PGPASSWORD"] = str(found["password"])
        return found["url"], env

    def running(self) -> bool:
        done = subprocess.run(
            [os.path.join(ROOT, "scripts", "local.sh"), "status"],
            capture_output=True,
            text=True,
            env=self.env,
        )
        return "running" in done.stdout


def compose_profiles() -> set[str]:
    """COMPOSE_PROFILES as Compose reads it: the environment, else ./.env."""
    value = settings.raw("COMPOSE_PROFILES")
    if value is None and os.path.exists(os.path.join(ROOT, ".env")):
        with open(os.path.join(ROOT, ".env"), encoding="utf-8") as handle:
            for line in handle:
                name, _, rest = line.strip().partition("=")
                if name.strip() == "COMPOSE_PROFILES":
                    value = rest.strip().strip("'\"")
    return {item.strip() for item in (value or "").split(",") if item.strip()}


COPY_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def copy_field(text: str) -> str | None:
    """One field of PostgreSQL's COPY text format: \\N is NULL, backslash escapes decoded."""
    if text == "\\N":
        return None
    return re.sub(r"\\(.)", lambda m: COPY_ESCAPES.get(m.group(1), m.group(1)), text)


def copy_rows(text: str) -> list[list[str | None]]:
    """The rows of the `COPY ... FROM stdin;` blocks in pg_restore's SQL output. Rows end at
    a newline only (COPY escapes it inside a value; other line breaks are data)."""
    rows, inside = [], False
    for line in text.split("\n"):
        if not inside:
            inside = line.startswith("COPY ")
        elif line == "\\.":
            inside = False
        else:
            rows.append([copy_field(field) for field in line.split("\t")])
    return rows


def dump_facts(table_data) -> dict:
    """What a pg_dump holds, read from the dump itself (so it describes exactly the snapshot
    that was taken): `table_data(name)` gives pg_restore's data-only SQL for one table."""
    facts: dict = {}
    versions = copy_rows(table_data("alembic_version"))
    facts["mlflow_schema"] = versions[0][0] if versions else None
    for key, table in (
        ("runs", "runs"),
        ("registered_models", "registered_models"),
        ("model_versions", "model_versions"),
    ):
        facts[key] = len(copy_rows(table_data(table)))
    text = table_data("registered_model_aliases")
    header = next((line for line in text.splitlines() if line.startswith("COPY ")), "")
    columns = [c.strip().strip('"') for c in header.partition("(")[2].partition(")")[0].split(",")]
    facts["aliases"] = {}
    for row in copy_rows(text):
        record = dict(zip(columns, row, strict=False))
        facts["aliases"][f"{record.get('name')}@{record.get('alias')}"] = record.get("version")
    monitoring = table_data("monitoring_batches")
    if "COPY " in monitoring:
        facts["monitoring_batches"] = len(copy_rows(monitoring))
        schema = copy_rows(table_data("monitoring_schema"))
        facts["monitoring_schema"] = int(schema[0][1]) if schema else None
    return facts
