"""One lifecycle for every throwaway server (PostgreSQL, S3, a Dask cluster, chromedriver, the
local stack): a temp dir of its own, free loopback ports, start, wait until it is ready, stop,
close; every error carries the end of its logs. A watchdog process cleans up after an owner
that dies without close(), even by SIGKILL.

A server subclasses Throwaway: start() calls open_directory() the first time and wait_ready()
after launching; halt() is what close() does to a server still running; logs() gives the ends
of its logs for error messages.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

HOST = "127.0.0.1"


# Ports come from below the kernel's ephemeral range (32768-60999 here), so no outgoing
# connection takes one between free_port() and the server's bind, and from a slice of that
# range of this process's own: each pytest-xdist worker (gw0, gw1, ...) has one, any other
# process one picked by its pid. A process never hands out the same port twice, so a stack
# asked for three ports gets three (port 0 could give one back twice: a run's only failure
# was a preprocess URL that reached another service).
PORT_RANGE = (10_000, 32_000)
PORT_SLICES = 16
_handed_out: set[int] = set()


def _port_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        index = int(worker[2:]) % (PORT_SLICES // 2)
    else:
        index = PORT_SLICES // 2 + os.getpid() % (PORT_SLICES // 2)
    width = (PORT_RANGE[1] - PORT_RANGE[0]) // PORT_SLICES
    start = PORT_RANGE[0] + index * width
    return range(start, start + width)


def free_port() -> int:
    """A loopback TCP port nobody listens on now, not handed out before by this process."""
    ports = _port_slice()
    first = random.randrange(len(ports))
    for step in range(len(ports)):
        port = ports[(first + step) % len(ports)]
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port left in {ports}")


def listening(port: int, host: str = HOST) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError):
        socket.create_connection((host, port), timeout=1).close()
        return True
    return False


def read_tail(path: str, tail: int = 4000, missing: str = "(no log)") -> str:
    """The last `tail` characters of a text file."""
    try:
        with open(path, errors="replace") as handle:
            return handle.read()[-tail:]
    except FileNotFoundError:
        return missing


class Throwaway:
    """The lifecycle a throwaway server shares; see the module's docstring."""

    error: type[Exception] = RuntimeError  # what this server raises, with its logs
    prefix = "sluice-"  # of its temp dir
    # A shell script the watchdog runs at EOF on its stdin ($1: the dir; lines written with
    # tell_watchdog() are on its stdin before that); None: remove the dir only.
    watchdog_script: str | None = None
    watchdog_env: dict[str, str] | None = None  # default: ours

    def __init__(self, base_dir: str | None = None):
        self.base_dir = base_dir
        self.directory: str | None = None
        self._watchdog: subprocess.Popen | None = None
        self._closed = False

    # -- what a server defines ------------------------------------------------------------------

    def start(self, timeout: float = 30) -> Throwaway:
        raise NotImplementedError

    def halt(self) -> None:
        """Stop a server about to be removed (fast: its data goes with the dir)."""

    def logs(self, tail: int = 4000) -> str:
        return "(no log)"

    # -- shared ---------------------------------------------------------------------------------

    def open_directory(self, watchdog_args: tuple[str, ...] = ()) -> str:
        """The first start: make the temp dir, register close() at exit, start the watchdog."""
        if self._closed:
            raise self.error(f"this {type(self).__name__} was closed; make a new one")
        self.directory = tempfile.mkdtemp(prefix=self.prefix, dir=self.base_dir)
        atexit.register(self.close)
        script = (self.watchdog_script or "cat >/dev/null") + '; rm -rf "$1"'
        self._watchdog = subprocess.Popen(
            ["sh", "-c", script, "sh", self.directory, *watchdog_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the test run must not end it before close()
            env=self.watchdog_env,
            cwd="/",
        )
        return self.directory

    def tell_watchdog(self, line: str) -> None:
        self._watchdog.stdin.write(f"{line}\n".encode())
        self._watchdog.stdin.flush()

    def failure(self, what: str) -> Exception:
        """This server's error: what went wrong, then the end of its logs."""
        return self.error(f"{what}\n{self.logs()}")

    def wait_ready(
        self,
        why_not: Callable[[], str | None],
        timeout: float,
        gone: Callable[[], str | None] = lambda: None,
        interval: float = 0.1,
    ) -> None:
        """Poll until why_not() says nothing (None): it is ready. Fail, with the logs, once
        gone() says why the process is no longer there, or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            why = why_not()
            if why is None:
                return
            exited = gone()
            if exited:
                raise self.failure(exited)
            if time.monotonic() > deadline:
                raise self.failure(f"not ready within {timeout} s: {why}")
            time.sleep(interval)

    def close(self) -> None:
        """halt() it and remove the temp dir; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            with contextlib.suppress(Exception):
                self.halt()
        finally:
            if self._watchdog:
                # EOF tells the watchdog to finish: its script, then the dir goes.
                self._watchdog.stdin.close()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._watchdog.wait(timeout=30)
            if self.directory:
                shutil.rmtree(self.directory, ignore_errors=True)
            atexit.unregister(self.close)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()  # __exit__ does not run when __enter__ raises
            raise

    def __exit__(self, *exc) -> None:
        self.close()


def session_fixture(name: str, make: Callable[[], Throwaway], unavailable: Callable[[], None]):
    """A session-scoped pytest fixture `name` of a started server made by make(); skipped,
    saying why, when unavailable() raises (binaries missing). Define it in a conftest.py."""
    import pytest  # the tests' only: bench uses these servers without pytest

    @pytest.fixture(scope="session", name=name)
    def fixture() -> Iterator[Throwaway]:
        try:
            unavailable()
        except RuntimeError as error:
            pytest.skip(str(error))
        with make() as server:
            yield server

    return fixture


@contextlib.contextmanager
def in_thread(server) -> Iterator[str]:
    """Serve `server` (an http.server or werkzeug server bound on HOST) from a daemon thread;
    yields its base URL, then stops and closes it."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_wsgi(app) -> contextlib.AbstractContextManager[str]:
    """A WSGI app served on a free loopback port from a thread; yields its base URL."""
    # Imported here: most users of this module start subprocesses and need no werkzeug.
    from werkzeug.serving import make_server

    return in_thread(make_server(HOST, free_port(), app, threaded=True))
