"""Start and stop the real local stack (mlflow server + gunicorn services) for tests and bench.

scripts/local.sh starts and stops the processes (the stack under test); this class gives it
testkit.servers' conventions: free loopback ports, the logs' ends in every failure, and use as
a context manager (`with LocalStack(home) as stack:`).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field

import requests

from testkit.servers import free_port, read_tail

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL = os.path.join(ROOT, "scripts", "local.sh")


@dataclass
class LocalStack:
    """A local-mode stack under its own SLUICE_HOME and ports."""

    home: str
    extra_env: dict = field(default_factory=dict)  # a value of None removes the variable
    ports: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.ports:
            self.ports = {"mlflow": free_port(), "trainer": free_port(), "preprocess": free_port()}

    @property
    def env(self) -> dict:
        env = dict(os.environ)
        env.update(
            SLUICE_HOME=self.home,
            MLFLOW_PORT=str(self.ports["mlflow"]),
            TRAINER_PORT=str(self.ports["trainer"]),
            PREPROCESS_PORT=str(self.ports["preprocess"]),
            CHAMPION_POLL_SECONDS="1",
            START_TIMEOUT="120",
            # A stop waits for requests in flight this long (and 5 s more) before it kills:
            # tests stop many stacks, some with a request stuck on purpose.
            GRACEFUL_TIMEOUT="10",
        )
        env.update(self.extra_env)
        return {key: value for key, value in env.items() if value is not None}

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def analyze_url(self) -> str:
        return f"{self.url('preprocess')}/analyze"

    @property
    def ml_url(self) -> str:
        return f"{self.url('trainer')}/ml"

    @property
    def tracking_uri(self) -> str:
        return self.url("mlflow")

    @property
    def mlflow_account(self) -> tuple[str, str]:
        """The MLflow user name and password this stack's trainer signs in with."""
        env = self.env
        password = env.get("MLFLOW_TRACKING_PASSWORD")
        if not password:
            path = env.get("MLFLOW_TRACKING_PASSWORD_FILE") or os.path.join(
                self.home, "mlflow.password"
            )
            with open(path, encoding="ascii") as handle:
                password = handle.read().strip()
        return env.get("MLFLOW_TRACKING_USERNAME") or "sluice", password

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [LOCAL, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start(self) -> str:
        done = self.run("start")
        assert done.returncode == 0, f"start failed:\n{done.stdout}\n{done.stderr}\n{self.logs()}"
        return done.stdout

    def stop(self, *args: str) -> str:
        done = self.run("stop", *args)
        assert done.returncode == 0, f"stop failed:\n{done.stdout}\n{done.stderr}\n{self.logs()}"
        return done.stdout

    def logs(self, tail: int = 3000) -> str:
        """The end of every service's log, each under a header: for failure messages."""
        return "\n".join(
            f"--- {service} log ---\n"
            + read_tail(os.path.join(self.home, "logs", f"{service}.log"), tail)
            for service in self.ports
        )

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.run("stop")  # __exit__ does not run when __enter__ raises
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def pid(self, service: str) -> int | None:
        try:
            with open(os.path.join(self.home, "run", f"{service}.pid")) as handle:
                pid = int(handle.read().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def kill(self, service: str) -> None:
        """Stop one service (its whole process group) and wait until it is gone."""
        pid = self.pid(service)
        assert pid is not None, f"{service} is not running"
        os.killpg(pid, 15)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.killpg(pid, 9)

    def healthy(self, service: str) -> bool:
        try:
            return requests.get(f"{self.url(service)}/health", timeout=2).ok
        except requests.RequestException:
            return False


def post_csv(url: str, data: bytes, timeout: float = 300, headers=None, **params):
    """POST bytes as the multipart field data_file; return the requests response."""
    return requests.post(
        url,
        params=params,
        files={"data_file": ("data.csv", data, "text/csv")},
        headers=headers or {},
        timeout=timeout,
    )


def wait_job(base: str, accepted: requests.Response, timeout: float = 240) -> dict:
    """Follow a 202 answer's Location until the job finishes; the job."""
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    assert location == f"/jobs/{accepted.json()['job_id']}"
    deadline = time.monotonic() + timeout
    seen = set()
    while time.monotonic() < deadline:
        job = requests.get(base + location, timeout=30).json()
        seen.add(job["state"])
        if job["state"] in ("succeeded", "failed", "cancelled"):
            job["seen_states"] = seen
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {location} did not finish in {timeout} s: {job}")
