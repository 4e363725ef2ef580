"""A real, throwaway PostgreSQL server for tests: initdb in a temp dir, pg_ctl on loopback.

The tests take the session fixture `postgres` (tests/conftest.py): `postgres.url` is a
SQLAlchemy URL, `postgres.env()` the libpq variables for a subprocess
(`mlflow server`, psql), `postgres.create_database(name)` a URL of a database of one's own.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from urllib.parse import quote

import psycopg
from psycopg import sql

from testkit.servers import HOST, Throwaway, free_port, read_tail, session_fixture

BIN_GLOB = "/usr/lib/postgresql/*/bin"
APT_PACKAGES = ("postgresql-15", "postgresql")
RUN_AS = "postgres"  # initdb refuses to run as root; as root we run the server as this user
DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Speed over durability: the data only lives as long as the test session. A fast or smart stop
# still checkpoints, so the data survives a restart; only an OS crash could lose it.
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, and no way to install them."""


class PostgresError(RuntimeError):
    """initdb, pg_ctl or the first connection failed; the message carries the server's log."""


def find_bindir() -> str | None:
    """The directory with initdb, pg_ctl and postgres (newest Debian version first), or None."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(os.path.realpath(initdb)))
    versions = glob.glob(BIN_GLOB)
    versions.sort(key=lambda path: int(re.sub(r"\D", "", path) or 0), reverse=True)
    candidates.extend(versions)
    for bindir in candidates:
        if bindir and all(
            os.access(os.path.join(bindir, name), os.X_OK)
            for name in ("initdb", "pg_ctl", "postgres")
        ):
            return bindir
    return None


def ensure_bindir() -> str:
    """find_bindir(), installing the Debian package first when we are root and apt exists."""
    bindir = find_bindir()
    if bindir:
        return bindir
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found and not root with apt-get "
            "to install them; install postgresql-15 or set PG_BINDIR"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends"]
    tried = []
    # A fresh image has no package lists: the second round updates them first.
    for update in (False, True):
        if update:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=300)
        for package in APT_PACKAGES:
            done = subprocess.run(
                [*install, package], env=env, capture_output=True, text=True, timeout=600
            )
            tried.append(f"{package}: exit {done.returncode} {done.stderr.strip()[-300:]}")
            bindir = find_bindir()
            if done.returncode == 0 and bindir:
                return bindir
    raise PostgresUnavailable("could not install PostgreSQL with apt-get: " + "; ".join(tried))


def _clean_env() -> dict[str, str]:
    """Our environment without libpq's PG* variables, which would redirect initdb and pg_ctl."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


class PostgresServer(Throwaway):
    """One PostgreSQL cluster in a fresh temp dir, served on 127.0.0.1 at a free port.

    start() runs initdb the first time and starts the server (again, on the same data and port,
    after stop()); close() stops it and removes the temp dir (testkit.servers' lifecycle; its
    watchdog stops the server if this process dies without close()).
    """

    error = PostgresError
    prefix = "sluice-pg-"

    def __init__(
        self,
        base_dir: str | None = None,
        user: str = "sluice",
        dbname: str = "sluice",
        bindir: str | None = None,
    ):
        super().__init__(base_dir)  # when root, the postgres user must be able to enter it
        self.user = user
        self.dbname = dbname
        self.password = secrets.token_urlsafe(24)
        self.bindir = bindir
        self.port: int | None = None
        self.running = False

    # -- addresses ------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the session's database: postgresql+psycopg://user:pw@host:port/db."""
        return self.url_for(self.dbname)

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL of one database on this server."""
        return (
            f"postgresql+psycopg://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(dbname, safe='')}"
        )

    def conninfo(self, dbname: str | None = None) -> str:
        """libpq connection string, for psycopg.connect()."""
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname or self.dbname,
        )

    def env(self, dbname: str | None = None) -> dict[str, str]:
        """libpq's variables for a subprocess: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": dbname or self.dbname,
        }

    @property
    def data_dir(self) -> str:
        assert self.directory, "not started"
        return os.path.join(self.directory, "data")

    @property
    def log_path(self) -> str:
        assert self.directory, "not started"
        return os.path.join(self.directory, "server.log")

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while the server runs."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as handle:
                return int(handle.readline())
        except (FileNotFoundError, ValueError):
            return None

    def log(self, tail: int = 4000) -> str:
        """The end of the server's log (initdb and pg_ctl output are in errors, not here)."""
        if not self.directory:
            return "(no server log)"
        return read_tail(self.log_path, tail, "(no server log)")

    def logs(self, tail: int = 4000) -> str:
        return f"server log:\n{self.log(tail)}"

    @property
    def watchdog_script(self) -> str:
        """Stops the server (`pg_ctl stop -m immediate`) when it still runs."""
        ctl = shlex.join([*self._as_user, self._bin("pg_ctl")])
        return (
            'cat >/dev/null; [ -f "$1/data/postmaster.pid" ] && '
            f'{ctl} -D "$1/data" stop -m immediate -w -t 30 >/dev/null'
        )

    @property
    def watchdog_env(self) -> dict[str, str]:
        return _clean_env()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> PostgresServer:
        """Start the server (initdb first on the first call) and wait for a real connection."""
        if self.running:
            return self
        first = self.directory is None
        if first:
            self._create_cluster()
        # Someone may take the free port before the server binds it: retry on a new one, but
        # only at the first start, so that a restart keeps the URL.
        for attempt in range(3 if first else 1):
            if first:
                self.port = free_port()
            try:
                self._pg_ctl_start(timeout)
                break
            except PostgresError as error:
                if not (first and attempt < 2 and "already in use" in str(error)):
                    raise
        self.running = True
        self._wait_ready(timeout)
        if first:
            with self.connect("postgres", autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))
        return self

    def stop(self) -> None:
        """Stop the server (pg_ctl stop -m fast); the data stays for start()."""
        if self.directory and os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
            self._run(self._ctl("stop", "-m", "fast", "-w", "-t", "30"), "pg_ctl stop", 60)
        self.running = False

    def halt(self) -> None:
        self.stop()

    # -- databases ------------------------------------------------------------------------------

    def connect(self, dbname: str | None = None, **kwargs) -> psycopg.Connection:
        """A psycopg connection as the superuser (the caller closes it)."""
        return psycopg.connect(self.conninfo(dbname), connect_timeout=5, **kwargs)

    def create_database(self, name: str) -> str:
        """Create an empty database owned by the superuser; return its SQLAlchemy URL."""
        if not DATABASE_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r}: use lowercase letters, digits and _")
        with self.connect("postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    # -- internals ------------------------------------------------------------------------------

    @property
    def _as_user(self) -> list[str]:
        return ["runuser", "-u", RUN_AS, "--"] if os.geteuid() == 0 else []

    def _bin(self, name: str) -> str:
        return os.path.join(self.bindir, name)

    def _ctl(self, *args: str) -> list[str]:
        return [*self._as_user, self._bin("pg_ctl"), "-D", self.data_dir, *args]

    def _run(self, command: list[str], what: str, timeout: float) -> str:
        try:
            done = subprocess.run(
                command,
                cwd=self.directory,  # the postgres user may not be able to enter our cwd
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise PostgresError(
                f"{what} took over {timeout} s\nserver log:\n{self.log()}"
            ) from None
        if done.returncode != 0:
            raise PostgresError(
                f"{what} failed (exit {done.returncode}): {shlex.join(command)}\n"
                f"{done.stdout}{done.stderr}\nserver log:\n{self.log()}"
            )
        return done.stdout

    def _create_cluster(self) -> None:
        self.bindir = self.bindir or ensure_bindir()
        self.open_directory()
        if self._as_user:
            shutil.chown(self.directory, user=RUN_AS, group=None)
            if subprocess.run([*self._as_user, "test", "-w", self.directory], cwd="/").returncode:
                raise PostgresError(
                    f"the {RUN_AS} user cannot enter {self.directory}; "
                    "use a base_dir every user can traverse, such as /tmp"
                )
        pwfile = os.path.join(self.directory, "superuser.password")
        with open(os.open(pwfile, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
            handle.write(self.password + "\n")
        if self._as_user:
            shutil.chown(pwfile, user=RUN_AS, group=None)
        try:
            self._run(
                [
                    *self._as_user,
                    self._bin("initdb"),
                    "-D",
                    self.data_dir,
                    "-U",
                    self.user,
                    "-A",
                    "scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                "initdb",
                120,
            )
        finally:
            os.unlink(pwfile)

    def _pg_ctl_start(self, timeout: float) -> None:
        options = [
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            f"unix_socket_directories={self.directory}",
        ]
        for setting in FAST_SETTINGS:
            options += ["-c", setting]
        try:
            self._run(
                self._ctl(
                    "start",
                    "-l",
                    self.log_path,
                    "-o",
                    shlex.join(options),
                    "-w",
                    "-t",
                    str(timeout),
                ),
                "pg_ctl start",
                timeout + 10,
            )
        except PostgresError:
            # pg_ctl gave up waiting; do not leave a server starting behind it.
            if self.pid:
                with contextlib.suppress(PostgresError):
                    self._run(self._ctl("stop", "-m", "immediate", "-w"), "pg_ctl stop", 30)
            raise

    def _wait_ready(self, timeout: float) -> None:
        def why_not() -> str | None:
            try:
                with self.connect("postgres") as conn:
                    conn.execute("SELECT 1")
            except psycopg.OperationalError as error:
                return f"no connection to {self.host}:{self.port}: {error}"
            return None

        self.wait_ready(why_not, timeout)


@contextlib.contextmanager
def running_postgres(base_dir: str | None = None, **kwargs) -> Iterator[PostgresServer]:
    """A started PostgresServer, stopped and removed on leaving, also when the body raised."""
    with PostgresServer(base_dir, **kwargs) as server:
        yield server


def _unavailable() -> None:
    ensure_bindir()


# The session's server, for tests/conftest.py; skipped, saying why, when none can be had.
postgres_fixture = session_fixture("postgres", PostgresServer, _unavailable)
