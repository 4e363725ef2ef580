"""client/request.py with jobs: --data-uri, --output-uri, --key, --async and --wait.

The client is the unit under test, so it talks to a scripted stand-in for the public entry
(http.server on 127.0.0.1) that records every request; the real services are not needed.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from testkit.servers import free_port
from testkit.stack import ROOT

CLIENT = [sys.executable, os.path.join(ROOT, "client", "request.py")]
JOB_ID = uuid.uuid4().hex
ANSWER = {"predictions": [0, 1], "rows": 2, "model": "churn", "version": "3"}


def job(state: str, stage: str = "", rows: int = 0, rounds: int = 0, most: int | None = None):
    """A job document as GET /jobs/<id> answers it."""
    document: dict[str, Any] = {
        "job_id": JOB_ID,
        "state": state,
        "phase": "prod",
        "model": "churn",
        "created_at": "2024-05-01T10:00:00Z",
        "started_at": None if state == "queued" else "2024-05-01T10:00:01Z",
        "finished_at": None,
        "progress": {"stage": stage, "rows_read": rows, "rounds_done": rounds, "rounds_max": most},
    }
    if state == "succeeded":
        document.update(status=200, answer=ANSWER, finished_at="2024-05-01T10:00:09Z")
    if state in ("failed", "cancelled"):
        code = "no_usable_features" if state == "failed" else "cancelled"
        document.update(status=422, error={"code": code, "message": f"it {state}"})
    return document


LOCATION = f"/jobs/{JOB_ID}"
ACCEPTED = {"job_id": JOB_ID, "state": "queued", "location": LOCATION}


class FakeSluice:
    """Scripted answers: one for the POST, then job documents for the polls (last repeated)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.post: tuple[int, Any, dict[str, str]] = (202, ACCEPTED, {"Location": LOCATION})
        self.jobs: list[dict[str, Any]] = [job("succeeded")]
        self.polled = threading.Event()
        self.url = ""

    def answer(self, method: str, path: str) -> tuple[int, Any, dict[str, str]]:
        """What the stand-in says to one request."""
        if method == "POST":
            return self.post
        if method == "GET" and path == f"/jobs/{JOB_ID}":
            self.polled.set()
            return 200, self.jobs.pop(0) if len(self.jobs) > 1 else self.jobs[0], {}
        return 404, {"error": {"code": "not_found", "message": path}}, {}

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]

    def polls(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "GET"]


@pytest.fixture
def fake() -> Iterator[FakeSluice]:
    """A FakeSluice listening on a free loopback port for the length of a test."""
    sluice = FakeSluice()

    class Handler(BaseHTTPRequestHandler):
        def handle_one(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            split = urlsplit(self.path)
            sluice.requests.append(
                {
                    "method": self.command,
                    "path": split.path,
                    "query": parse_qs(split.query),
                    "headers": dict(self.headers),
                    "body": self.rfile.read(length),
                }
            )
            status, document, headers = sluice.answer(self.command, split.path)
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = handle_one

        def log_message(self, *args: Any) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sluice.url = f"http://127.0.0.1:{server.server_address[1]}/analyze"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield sluice
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def client_env(**extra: str) -> dict[str, str]:
    """The environment without the user's SLUICE_* settings, plus extra."""
    env = {k: v for k, v in os.environ.items() if k not in ("SLUICE_URL", "SLUICE_API_TOKEN")}
    return {**env, **extra}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the client as a user would, stdout and stderr captured (so not a tty)."""
    return subprocess.run(
        [*CLIENT, *args, "--poll-interval", "0.05"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or client_env(),
    )


def test_job_without_wait_prints_the_job_and_exits_0(fake):
    done = run("prod", "--data-uri", "query/", "--url", fake.url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ACCEPTED
    assert JOB_ID in done.stderr and f"/jobs/{JOB_ID}" in done.stderr  # how to follow it
    assert fake.polls() == []


def test_data_uri_query_carries_the_options_and_no_body(fake):
    done = run(
        "prod",
        "--data-uri",
        "s3://bucket/in/*.csv",
        "--output-uri",
        "out/predictions.parquet",
        "--key",
        "customer_id",
        "--async",
        "--model",
        "churn",
        "--url",
        fake.url,
    )
    assert done.returncode == 0, done.stderr
    [post] = fake.posts()
    assert post["path"] == "/analyze"
    assert post["query"] == {
        "phase": ["prod"],
        "model": ["churn"],
        "data_uri": ["s3://bucket/in/*.csv"],
        "output_uri": ["out/predictions.parquet"],
        "key": ["customer_id"],
        "async": ["true"],
    }
    assert post["body"] == b""
    assert "Content-Type" not in post["headers"]  # no multipart, no form


def test_upload_keeps_the_positional_usage(fake, tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_bytes(b"a,y\n1,0\n2,1\n")
    fake.post = (200, {"promoted": True, "version": "1"}, {})
    done = run(str(csv), "dev", "--target", "y", "--url", fake.url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"promoted": True, "version": "1"}
    [post] = fake.posts()
    assert post["query"] == {"phase": ["dev"], "target": ["y"]}
    assert post["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    assert b'name="data_file"; filename="train.csv"' in post["body"]
    assert b"a,y\n1,0\n2,1\n" in post["body"]


def test_upload_error_answer_exits_1(fake, tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_bytes(b"a,y\n1,0\n")
    fake.post = (422, {"error": {"code": "unknown_target", "message": "no column nope"}}, {})
    done = run(str(csv), "dev", "--target", "nope", "--url", fake.url)
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"]["code"] == "unknown_target"


def test_wait_follows_the_job_and_prints_its_answer(fake):
    fake.jobs = [
        job("queued"),
        job("running", "reading", rows=1000),
        job("running", "reading", rows=1000),
        job("running", "training", rows=1000, rounds=5, most=50),
        job("running", "training", rows=1000, rounds=5, most=50),
        job("succeeded", "done", rows=1000, rounds=50, most=50),
    ]
    done = run(
        "prod",
        "--data-uri",
        "query/",
        "--wait",
        "--url",
        fake.url,
        env=client_env(SLUICE_API_TOKEN="s3cret-token-123"),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ANSWER
    assert "\r" not in done.stderr  # not a tty: one line per change
    lines = done.stderr.splitlines()
    assert lines == [
        f"job {JOB_ID} queued",
        f"job {JOB_ID} running, reading, 1,000 rows read",
        f"job {JOB_ID} running, training, 1,000 rows read, round 5/50",
        f"job {JOB_ID} succeeded, done, 1,000 rows read, round 50/50",
    ]
    assert len(fake.polls()) == 6
    for request in fake.requests:
        assert request["headers"]["Authorization"] == "Bearer s3cret-token-123"
    assert "s3cret-token-123" not in done.stderr


@pytest.mark.parametrize("state", ["failed", "cancelled"])
def test_wait_on_a_job_that_fails_prints_the_error_and_exits_1(fake, state):
    fake.jobs = [job("running", "reading"), job(state)]
    done = run("dev", "--data-uri", "train/", "--wait", "--url", fake.url)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout) == {"error": job(state)["error"]}


def test_wait_on_an_upload_job_polls_without_the_upload_headers(fake, tmp_path):
    csv = tmp_path / "query.csv"
    csv.write_bytes(b"a\n1\n")
    done = run(str(csv), "prod", "--async", "--wait", "--url", fake.url)
    assert done.returncode == 0, done.stderr
    [post] = fake.posts()
    assert post["query"] == {"phase": ["prod"], "async": ["true"]}
    assert b"a\n1\n" in post["body"]
    [poll] = fake.polls()
    assert poll["body"] == b"" and "Content-Type" not in poll["headers"]


def test_location_path_is_joined_to_the_base_of_url(fake):
    url = fake.url.replace("/analyze", "/some/prefix/analyze")
    done = run("prod", "--data-uri", "query/", "--wait", "--url", url)
    assert done.returncode == 0, done.stderr
    assert fake.posts()[0]["path"] == "/some/prefix/analyze"
    assert [poll["path"] for poll in fake.polls()] == [f"/jobs/{JOB_ID}"]


def test_without_location_header_the_job_location_is_used(fake):
    fake.post = (202, ACCEPTED, {})
    done = run("prod", "--data-uri", "query/", "--wait", "--url", fake.url)
    assert done.returncode == 0, done.stderr
    assert [poll["path"] for poll in fake.polls()] == [f"/jobs/{JOB_ID}"]


def test_unreachable_stack_exits_2():
    url = f"http://127.0.0.1:{free_port()}/analyze"
    done = run("prod", "--data-uri", "query/", "--wait", "--url", url)
    assert done.returncode == 2
    assert "cannot reach Sluice" in done.stderr and url in done.stderr
    assert done.stdout == ""


def test_file_is_needed_without_data_uri():
    done = run("prod")
    assert done.returncode == 2
    assert "usage:" in done.stderr
    assert "FILE is needed unless --data-uri is given" in done.stderr


def test_file_and_data_uri_together_are_refused(tmp_path):
    done = run(str(tmp_path / "x.csv"), "prod", "--data-uri", "query/")
    assert done.returncode == 2
    assert "usage:" in done.stderr and "not both" in done.stderr


def test_ctrl_c_while_waiting_says_how_to_follow_the_job(fake):
    fake.jobs = [job("running", "reading", rows=10)]  # never finishes
    client = subprocess.Popen(
        [*CLIENT, "prod", "--data-uri", "query/", "--wait", "--url", fake.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=client_env(),
        # A suite started in the background (`cmd &` without job control) inherits SIGINT
        # ignored, and Python keeps it ignored: give the client the terminal's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert fake.polled.wait(timeout=30), "the client never polled the job"
        client.send_signal(signal.SIGINT)
        out, err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 130, err
    assert out == ""
    assert f"job {JOB_ID} goes on" in err
    assert f"curl {fake.url.replace('/analyze', '')}/jobs/{JOB_ID}" in err
    assert "Traceback" not in err


class FakeTty(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def load_client() -> ModuleType:
    """client/request.py as a module (it is a script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("sluice_request", CLIENT[1])
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_progress_is_rewritten_in_place_on_a_tty(fake, monkeypatch, capsys):
    request = load_client()
    fake.jobs = [job("running", "reading", rows=123456), job("succeeded")]
    tty = FakeTty()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.delenv("SLUICE_API_TOKEN", raising=False)
    code = request.main(
        ["prod", "--data-uri", "q/", "--wait", "--url", fake.url, "--poll-interval", "0.05"]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out) == ANSWER
    shown = tty.getvalue()
    assert shown.count("\r") == 3 and shown.count("\n") == 1 and shown.endswith("\n")
    assert "123,456 rows read" in shown
    # A shorter line is padded so nothing of the longer one before it stays on screen.
    last = shown.rstrip("\n").rsplit("\r", 1)[1]
    assert last.startswith(f"job {JOB_ID} succeeded") and len(last) >= len(
        f"job {JOB_ID} running, reading, 123,456 rows read"
    )
