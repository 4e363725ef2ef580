"""The throwaway PostgreSQL server: it keeps data, checks passwords, stays on loopback, restarts."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time

import psycopg
import pytest
import sqlalchemy as sa

import testkit.postgres
from testkit.postgres import (
    PostgresError,
    PostgresServer,
    running_postgres,
)
from testkit.stack import ROOT


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its parent does not)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def listeners(port: int) -> list[str]:
    """Local addresses of the TCP sockets listening on port, from /proc/net/tcp{,6}."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                rows = handle.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, _, port_hex = local.partition(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A is LISTEN
                continue
            if len(address) == 8:  # IPv4, little-endian
                found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
            else:
                found.append(f"ipv6:{address}")
    return found


def test_sqlalchemy_creates_a_table_inserts_and_reads(postgres):
    engine = sa.create_engine(postgres.url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)"))
            conn.execute(
                sa.text("INSERT INTO notes (body) VALUES (:body)"),
                [{"body": "first"}, {"body": "zweite Zeile — ünïcode"}],
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, body FROM notes ORDER BY id")).all()
            database, user = conn.execute(sa.text("SELECT current_database(), current_user")).one()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [(1, "first"), (2, "zweite Zeile — ünïcode")]
    assert (database, user) == (postgres.dbname, postgres.user)
    assert postgres.url == (
        f"postgresql+psycopg://{postgres.user}:{postgres.password}@127.0.0.1:{postgres.port}/"
        f"{postgres.dbname}"
    )


def test_a_wrong_password_is_refused(postgres, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", os.devnull)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host="127.0.0.1", port=postgres.port, user=postgres.user, password="wrong", dbname="x"
        )
    engine = sa.create_engine(postgres.url.replace(postgres.password, "wrong" + postgres.password))
    with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
        engine.connect()
    # The unix socket is no back door: it asks for the password too.
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(host=postgres.directory, port=postgres.port, user=postgres.user)


def test_it_listens_on_127_0_0_1_only(postgres):
    assert listeners(postgres.port) == ["127.0.0.1"]
    with postgres.connect() as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    # Another loopback address reaches the same interface, yet nobody answers there.
    with pytest.raises(ConnectionRefusedError), socket.socket() as sock:
        sock.settimeout(5)
        sock.connect(("127.0.0.2", postgres.port))


def test_env_lets_a_subprocess_connect(postgres):
    env = {**os.environ, **postgres.env()}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import psycopg\n"
            "with psycopg.connect('') as conn:\n"
            "    print(*conn.execute('SELECT current_database(), current_user').fetchone())",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [postgres.dbname, postgres.user]
    assert set(postgres.env()) == {"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"}


def test_create_database_gives_an_independent_database(postgres):
    name = f"own_{secrets.token_hex(4)}"
    url = postgres.create_database(name)
    assert url == postgres.url_for(name) and url.endswith(f"/{name}")
    own, main = sa.create_engine(url), sa.create_engine(postgres.url)
    try:
        with own.begin() as conn:
            conn.execute(sa.text("CREATE TABLE only_here (x int)"))
            conn.execute(sa.text("INSERT INTO only_here VALUES (7)"))
            assert conn.execute(sa.text("SELECT current_database()")).scalar() == name
        with main.connect() as conn:
            assert conn.execute(sa.text("SELECT to_regclass('only_here')")).scalar() is None
        with own.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM only_here")).scalar() == 7
    finally:
        own.dispose()
        main.dispose()
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        postgres.create_database(name)
    with pytest.raises(ValueError, match="lowercase"):
        postgres.create_database("Robert'); DROP TABLE")


def test_stop_and_start_keep_the_data_and_the_url():
    with running_postgres() as server:
        url, pid = server.url, server.pid
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE kept AS SELECT 42 AS answer"))
        engine.dispose()

        server.stop()
        assert server.pid is None and not server.running
        with pytest.raises(psycopg.OperationalError):
            server.connect()

        server.start()
        assert server.url == url and server.pid not in (None, pid)
        engine = sa.create_engine(server.url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT answer FROM kept")).scalar() == 42
        engine.dispose()
        directory = server.directory
    assert not os.path.exists(directory)


def test_a_failed_start_shows_the_server_log_and_leaves_nothing(monkeypatch):
    # Every port the server is offered is taken, so it cannot bind.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(testkit.postgres, "free_port", lambda: taken.getsockname()[1])
        server = PostgresServer()
        with pytest.raises(PostgresError) as failure:
            with server:
                pass
    message = str(failure.value)
    assert "pg_ctl start failed" in message
    assert "server log:" in message and "Address already in use" in message
    assert server.directory and not os.path.exists(server.directory)


def test_the_server_does_not_outlive_a_killed_owner():
    # The owner dies by SIGKILL: no atexit, no finalizer; the watchdog still cleans up.
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from testkit.postgres import PostgresServer\n"
            "server = PostgresServer().start()\n"
            "print(server.pid, server.directory, flush=True)\n"
            "time.sleep(120)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pid, directory = owner.stdout.readline().split()
        assert alive(int(pid)) and os.path.isdir(directory)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (alive(int(pid)) or os.path.exists(directory)):
        time.sleep(0.1)
    assert not alive(int(pid)), "the postmaster outlived its owner"
    assert not os.path.exists(directory)


def test_without_binaries_or_root_the_reason_says_what_to_install(monkeypatch):
    monkeypatch.setattr(testkit.postgres, "find_bindir", lambda: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(testkit.postgres.PostgresUnavailable, match="install postgresql-15"):
        testkit.postgres.ensure_bindir()
