"""A deadline on reading a request body, so a client that trickles its upload (slowloris)
frees its worker thread within seconds instead of holding it for the worker timeout."""

from __future__ import annotations

import time

from flask import Flask, request

from sluice_common.errors import ApiError


class DeadlineReader:
    """A WSGI input stream that raises once reading takes longer than its deadline."""

    def __init__(self, stream, deadline: float):
        self._stream = stream
        self._deadline = deadline

    def _check(self) -> None:
        if time.monotonic() > self._deadline:
            raise ApiError(
                408,
                "upload_too_slow",
                "The upload arrived too slowly; send it again over a faster connection, or "
                "raise BODY_SECONDS / lower BODY_MIN_RATE_KB.",
            )

    def read(self, size: int = -1) -> bytes:
        self._check()
        return self._stream.read(size)

    def readline(self, size: int = -1) -> bytes:
        self._check()
        return self._stream.readline(size)

    def __iter__(self):
        return iter(self.readline, b"")


def install_body_deadline(app: Flask) -> None:
    """Every request body must arrive within BODY_SECONDS plus its size at BODY_MIN_RATE_KB
    kilobytes a second; the socket also gives up after BODY_SECONDS of silence."""
    base = float(app.config["BODY_SECONDS"])
    rate = float(app.config["BODY_MIN_RATE_KB"]) * 1024

    @app.before_request
    def _deadline():
        length = request.content_length or 0
        if not length:
            return
        environ = request.environ
        sock = environ.get("gunicorn.socket")
        if sock is not None:
            sock.settimeout(base)
        deadline = time.monotonic() + base + length / rate
        environ["wsgi.input"] = DeadlineReader(environ["wsgi.input"], deadline)
