"""Bounded request parsing: long request lines and oversized headers get a quick JSON 4xx from
gunicorn itself, on both services (slow clients: tests/sluice_common/web/test_slow_clients.py)."""

from __future__ import annotations

import socket
import time

import pytest
import requests

from testkit.stack import post_csv

SERVICES = ["preprocess", "trainer"]


def _raw_request(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send bytes, read the whole answer (the server closes the connection after an error)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading it all
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("size", [10_000, 8 * 1024 * 1024])
def test_a_long_request_line_is_a_quick_json_414(stack, service, size):
    port = stack.ports[service]
    line = b"POST /analyze?phase=dev&model=" + b"x" * size + b" HTTP/1.1\r\n"
    started = time.monotonic()
    answer = _raw_request(port, line + b"Host: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
    elapsed = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414"), head[:200]
    assert b"application/json" in head
    assert b'"request_line_too_long"' in body
    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert stack.healthy(service)


@pytest.mark.parametrize("service", SERVICES)
def test_an_oversized_header_is_a_json_431(stack, service):
    url = stack.analyze_url if service == "preprocess" else stack.ml_url
    boundary = "b" * 70_000  # a multipart boundary as long as a small file
    response = requests.post(
        url,
        params={"phase": "prod"},
        data=b"--" + boundary.encode() + b"--\r\n",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=10,
    )
    assert response.status_code == 431, response.text[:300]
    assert response.json()["error"]["code"] == "headers_too_large"


@pytest.mark.parametrize("service", SERVICES)
def test_many_headers_are_a_json_4xx(stack, service):
    url = stack.analyze_url if service == "preprocess" else stack.ml_url
    headers = {f"X-Filler-{i}": "1" for i in range(150)}
    response = requests.post(url, params={"phase": "prod"}, headers=headers, timeout=10)
    assert 400 <= response.status_code < 500
    assert "error" in response.json()


@pytest.mark.parametrize("service", SERVICES)
def test_a_query_within_the_limit_still_reaches_our_checks(stack, service):
    url = stack.analyze_url if service == "preprocess" else stack.ml_url
    response = post_csv(url, b"a,b\n1,2\n", phase="dev", target="t" * 6000)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_target"
