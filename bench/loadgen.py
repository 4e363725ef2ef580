"""Plain-HTTP clients for the benchmark: one persistent connection per thread, bodies built once.

http.client instead of requests keeps the client's own cost (2 cores are shared with the
servers) small and equal for both sides.
"""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit


@dataclass(frozen=True)
class Target:
    """One prepared request: where to send it, with which body and headers."""

    name: str
    host: str
    port: int
    path: str
    body: bytes
    headers: dict

    def connect(self, timeout: float = 600) -> http.client.HTTPConnection:
        """A new keep-alive connection to the target."""
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


def analyze_target(url: str, csv: bytes, **params: str) -> Target:
    """POST the CSV to /analyze as the multipart field data_file."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="data_file"; filename="data.csv"\r\n',
            b"Content-Type: text/csv\r\n\r\n",
            csv,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    parts = urlsplit(url)
    return Target(
        name="sluice",
        host=parts.hostname,
        port=parts.port,
        path=f"{parts.path}?{urlencode(params)}",
        body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


def invocations_target(url: str, csv: bytes) -> Target:
    """POST the CSV body to mlflow models serve's /invocations."""
    parts = urlsplit(url)
    return Target(
        name="mlflow-serve",
        host=parts.hostname,
        port=parts.port,
        path="/invocations",
        body=csv,
        headers={"Content-Type": "text/csv"},
    )


class Client:
    """A keep-alive connection that reconnects once when the server closed it."""

    def __init__(self, target: Target, timeout: float = 600):
        self.target = target
        self.timeout = timeout
        self.conn = target.connect(timeout)

    def post(self) -> tuple[int, bytes]:
        """Send the target's request; the status and the whole body."""
        for attempt in range(2):
            try:
                self.conn.request(
                    "POST", self.target.path, body=self.target.body, headers=self.target.headers
                )
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = self.target.connect(self.timeout)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def timed(self) -> tuple[float, int, bytes]:
        """Seconds from sending to the last byte of the answer, status, body."""
        started = time.perf_counter()
        status, body = self.post()
        return time.perf_counter() - started, status, body

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


@dataclass
class LoadResult:
    """What a closed-loop load run did."""

    requests: int
    errors: int
    seconds: float

    @property
    def per_second(self) -> float:
        """Successful requests per second."""
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0


def closed_loop(
    target: Target, concurrency: int, max_requests: int, max_seconds: float
) -> LoadResult:
    """`concurrency` threads send back-to-back requests until either bound is reached."""
    lock = threading.Lock()
    counts = {"issued": 0, "errors": 0}
    deadline = time.perf_counter() + max_seconds

    def worker() -> None:
        client = Client(target, timeout=max_seconds + 30)
        try:
            while True:
                with lock:
                    if counts["issued"] >= max_requests or time.perf_counter() > deadline:
                        return
                    counts["issued"] += 1
                try:
                    status, _ = client.post()
                    ok = status == 200
                except OSError:
                    ok = False
                if not ok:
                    with lock:
                        counts["errors"] += 1
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max_seconds + 60)
    return LoadResult(counts["issued"], counts["errors"], time.perf_counter() - started)
