"""The hop from preprocess to the trainer, against a raw socket server that closes on cue."""

from __future__ import annotations

import socket
import threading

import pytest

from preprocess.forward import forward_to_trainer
from sluice_common.errors import ApiError

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head


class ClosingServer:
    """Answers the first request on each connection; `drop` says which requests it drops
    unanswered (closing the connection, as gunicorn does at its idle timeout)."""

    def __init__(self, drop: set[int]):
        self.drop = drop
        self.requests = 0
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        with conn:
            while _read_request(conn):
                self.requests += 1
                if self.requests in self.drop:
                    return
                conn.sendall(ANSWER)


def _post(url: str):
    return forward_to_trainer(url, {"phase": "prod"}, b"x" * 10, None, None, 2.0, 5.0)


def test_a_kept_alive_connection_closed_under_a_request_is_retried_once_on_a_new_one():
    server = ClosingServer(drop={2})
    assert _post(server.url).status == 200
    # The second request crosses the server closing its kept-alive connection.
    assert _post(server.url).status == 200
    assert server.requests == 3 and server.connections == 2


def test_a_new_connection_that_fails_is_not_retried():
    server = ClosingServer(drop={1})
    with pytest.raises(ApiError) as refused:
        _post(server.url)
    assert refused.value.status == 503 and server.requests == 1


def test_a_retry_that_fails_too_is_a_503_not_a_loop():
    server = ClosingServer(drop={2, 3})
    assert _post(server.url).status == 200
    with pytest.raises(ApiError) as refused:
        _post(server.url)
    assert refused.value.status == 503 and server.requests == 3
