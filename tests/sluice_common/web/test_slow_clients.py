"""Slow clients cost a socket, never a thread: requests are read whole by gunicorn's event loop
(sluice_common/web/body_worker.py) and held to the body rate rule (sluice_common/web/slowbody.py) on
the bytes that actually arrive, for multipart and raw bodies, on both services.

Everything here speaks raw HTTP over sockets, as a trickling client does; the bodies are
`multipart/form-data`, what `curl -F`, browsers and client/request.py send.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from sluice_common.web.body_worker import ReplaySocket
from testkit.servers import free_port
from testkit.stack import LocalStack
from tests.datasets import churn, to_csv

GRACE = 6  # BODY_SECONDS of the stack below: a trickle is cut just after it
MIN_RATE_KB = 50
BOUNDARY = "sluiceboundary"
SERVICES = {"preprocess": "/analyze", "trainer": "/ml"}


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory):
    local = LocalStack(
        home=str(tmp_path_factory.mktemp("slow-home")),
        extra_env={"BODY_SECONDS": str(GRACE), "BODY_MIN_RATE_KB": str(MIN_RATE_KB)},
        ports={"mlflow": free_port(), "trainer": free_port(), "preprocess": free_port()},
    )
    local.start()
    frame = churn(600, seed=3)
    answer = requests.post(
        local.analyze_url,
        params={"phase": "dev"},
        files={"data_file": ("churn.csv", to_csv(frame), "text/csv")},
        timeout=300,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["promotion"]["promoted"], answer.json()["promotion"]
    local.prod_csv = to_csv(frame.drop(columns=["churned"]).head(3))
    yield local
    local.stop()


def multipart(csv: bytes, name: str = "data.csv") -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="data_file"; '
            f'filename="{name}"\r\nContent-Type: text/csv\r\n\r\n'
        ).encode()
        + csv
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def request_head(path: str, length: int | None, extra: str = "") -> bytes:
    length_line = f"Content-Length: {length}\r\n" if length is not None else ""
    return (
        f"POST {path}?phase=prod HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{length_line}{extra}\r\n"
    ).encode()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def trickle(port: int, first: bytes, drip: bytes, every: float, limit: float) -> tuple:
    """Send `first`, then `drip` one byte every `every` s until the server answers or closes;
    (seconds until then, the answer's bytes)."""
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        sock.sendall(first)
        sock.settimeout(every)
        sent = 0
        while time.monotonic() - started < limit:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                try:
                    sock.sendall(drip[sent : sent + 1] or b"x")
                    sent += 1
                except OSError:
                    break
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
    return time.monotonic() - started, answer


@pytest.mark.stack
@pytest.mark.parametrize("service", SERVICES)
def test_a_trickled_multipart_upload_gets_408_just_after_the_grace(slow_stack, service):
    # It declares 10,000 bytes and sends one a second: the deadline is on what arrives.
    body = multipart(slow_stack.prod_csv)
    head = request_head(SERVICES[service], 10_000)
    elapsed, answer = trickle(slow_stack.ports[service], head + body[:40], body[40:], 1.0, 40)
    assert status_of(answer) == 408, answer[:300]
    assert b'"upload_too_slow"' in answer and b"BODY_SECONDS" in answer
    assert GRACE <= elapsed < GRACE + 3, f"cut after {elapsed:.1f} s"


@pytest.mark.stack
@pytest.mark.parametrize("service", SERVICES)
def test_a_trickled_head_gets_408_too(slow_stack, service):
    head = request_head(SERVICES[service], 10_000)
    elapsed, answer = trickle(slow_stack.ports[service], head[:10], head[10:], 1.0, 40)
    assert status_of(answer) == 408, answer[:300]
    assert elapsed < GRACE + 3, f"cut after {elapsed:.1f} s"


@pytest.mark.stack
def test_a_declared_huge_body_buys_no_time(slow_stack):
    # 500 MB declared (under the trainer's Arrow limit? no matter): cut at the same moment.
    head = request_head("/analyze", 400 * 2**20)
    elapsed, answer = trickle(slow_stack.ports["preprocess"], head, b"x" * 100, 1.0, 40)
    assert status_of(answer) == 408, answer[:300]
    assert elapsed < GRACE + 3


@pytest.mark.stack
def test_a_slow_but_steady_upload_keeps_going_past_the_grace(slow_stack):
    # Past the grace at 1.25x the minimum rate: a slow link, not an attack.
    rows = churn(14_000, seed=5).drop(columns=["churned"])
    body = multipart(to_csv(rows))
    rate = MIN_RATE_KB * 1024 * 1.25
    assert len(body) / rate > GRACE * 1.3, len(body)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", slow_stack.ports["preprocess"]), timeout=60) as s:
        s.sendall(request_head("/analyze", len(body)))
        step = 8192
        for offset in range(0, len(body), step):
            s.sendall(body[offset : offset + step])
            pause = started + (offset + step) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        answer = _read_answer(s)
    assert time.monotonic() - started > GRACE
    assert status_of(answer) == 200, answer[:300]
    assert b'"predictions"' in answer


_unread: dict[int, bytes] = {}  # bytes read past one answer, per socket


def _read_answer(sock: socket.socket) -> bytes:
    """One whole answer with a Content-Length (keeping what follows it for the next call)."""
    data = _unread.pop(sock.fileno(), b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    _unread[sock.fileno()] = body[length:]
    return head + b"\r\n\r\n" + body[:length]


@pytest.mark.stack
def test_expect_continue_chunked_and_pipelined_requests_are_served(slow_stack):
    port = slow_stack.ports["preprocess"]
    body = multipart(slow_stack.prod_csv)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request_head("/analyze", len(body), "Expect: 100-continue\r\n"))
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        answer = _read_answer(sock)
        assert status_of(answer) == 200 and b"100 Continue" not in answer, answer[:300]
        # Chunked, in odd pieces, then two requests pipelined on the same connection.
        chunked = b"".join(
            b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:300], body[300:])
        )
        sock.sendall(request_head("/analyze", None, "Transfer-Encoding: chunked\r\n"))
        sock.sendall(chunked + b"0\r\n\r\n")
        assert status_of(_read_answer(sock)) == 200
        sock.sendall((request_head("/analyze", len(body)) + body) * 2)
        first, second = _read_answer(sock), _read_answer(sock)
        assert status_of(first) == status_of(second) == 200, (first[:200], second[:200])


@pytest.mark.stack
def test_many_slow_uploads_do_not_starve_health_or_a_small_prod(slow_stack):
    # 16 trickles to preprocess and 10 to the trainer, more than either has threads.
    stop = threading.Event()
    outcomes: list[int] = []

    def hold(service: str) -> None:
        body = multipart(slow_stack.prod_csv)
        head = request_head(SERVICES[service], 10_000)
        _, answer = trickle(slow_stack.ports[service], head + body[:30], body[30:], 0.5, 30)
        outcomes.append(status_of(answer))

    threads = [
        threading.Thread(target=hold, args=(service,), daemon=True)
        for service, count in (("preprocess", 16), ("trainer", 10))
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # every trickle connected and sending
    health, prods = [], []
    deadline = time.monotonic() + GRACE - 2
    while time.monotonic() < deadline:
        for service in ("preprocess", "trainer"):
            started = time.monotonic()
            assert requests.get(f"{slow_stack.url(service)}/health", timeout=5).ok
            health.append(time.monotonic() - started)
        started = time.monotonic()
        answer = requests.post(
            slow_stack.analyze_url,
            params={"phase": "prod"},
            files={"data_file": ("small.csv", slow_stack.prod_csv, "text/csv")},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        prods.append(time.monotonic() - started)
    stop.set()
    for thread in threads:
        thread.join(timeout=GRACE + 10)
    assert max(health) < 1.0, f"health took up to {max(health):.2f} s"
    assert max(prods) < 3.0, f"a small prod took up to {max(prods):.2f} s"
    assert outcomes.count(408) == len(threads), outcomes


def test_a_thread_never_reads_past_the_request_the_loop_framed():
    # Defence in depth for a framing mismatch: once the loaded request is read, the thread
    # sees the end of the stream, not a wait on the client (whose next bytes the loop reads).
    client, server = socket.socketpair()
    try:
        replay = ReplaySocket(server, io_timeout=5)
        replay.load(b"GET / HTTP/1.1\r\n\r\n", None)
        replay.setblocking(True)
        client.sendall(b"more")  # bytes past the request: the loop's to read, not the thread's
        assert replay.recv(1024) == b"GET / HTTP/1.1\r\n\r\n"
        started = time.monotonic()
        assert replay.recv(1024) == b""
        assert time.monotonic() - started < 0.1
        replay.unseal()  # the loop's turn
        assert replay.recv(1024) == b"more"
    finally:
        client.close()
        server.close()
