"""The body rate rule, defined once: a request must arrive at BODY_MIN_RATE_KB kilobytes a
second or faster, counted on the bytes actually received, after a grace of BODY_SECONDS.

A client that trickles (slowloris: one byte a second) fails it just after BODY_SECONDS; a
large upload over a slow link passes as long as it keeps the rate; the limit never grows with
a declared Content-Length. gunicorn's event loop applies it while it reads each request
(sluice_common/web/body_worker.py); `DeadlineReader` applies the same rule inside reads when a
request body is read by a thread (another WSGI server, or a socket read after the buffer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import Flask, request

from sluice_common import error_codes
from sluice_common.errors import ApiError

READ_CHUNK = 64 * 1024  # reads are cut to this, so the rule is checked between small reads


@dataclass(frozen=True)
class BodyRate:
    """BODY_SECONDS of grace, then at least `min_rate` bytes a second on average."""

    grace_seconds: float = 15.0
    min_rate: float = 100.0 * 1024

    @classmethod
    def from_config(cls, config) -> BodyRate:
        return cls(
            float(config.get("BODY_SECONDS", cls.grace_seconds)),
            float(config.get("BODY_MIN_RATE_KB", cls.min_rate / 1024)) * 1024,
        )

    def too_slow(self, received: int, elapsed: float) -> bool:
        """Whether `received` bytes after `elapsed` seconds break the rule."""
        return elapsed > self.grace_seconds and received < self.min_rate * (
            elapsed - self.grace_seconds
        )


def upload_too_slow_message(received: int, elapsed: float) -> str:
    return (
        f"The request arrived too slowly ({received} bytes in {elapsed:.0f} s); send it again "
        "over a faster connection, or raise BODY_SECONDS / lower BODY_MIN_RATE_KB."
    )


def upload_too_slow(received: int, elapsed: float) -> ApiError:
    return ApiError(error_codes.UPLOAD_TOO_SLOW, upload_too_slow_message(received, elapsed))


class DeadlineReader:
    """A WSGI input stream held to the body rate rule inside its reads."""

    def __init__(self, stream, rate: BodyRate):
        self._stream = stream
        self._rate = rate
        self._started = time.monotonic()
        self._received = 0

    def _count(self, data: bytes) -> bytes:
        self._received += len(data)
        elapsed = time.monotonic() - self._started
        if self._rate.too_slow(self._received, elapsed):
            raise upload_too_slow(self._received, elapsed)
        return data

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while part := self.read(READ_CHUNK):
                parts.append(part)
            return b"".join(parts)
        parts, wanted = [], size
        while wanted > 0:
            part = self._count(self._stream.read(min(wanted, READ_CHUNK)))
            if not part:
                break
            parts.append(part)
            wanted -= len(part)
        return b"".join(parts)

    def readline(self, size: int = -1) -> bytes:
        limit = READ_CHUNK if size is None or size < 0 else min(size, READ_CHUNK)
        return self._count(self._stream.readline(limit))

    def __iter__(self):
        return iter(self.readline, b"")


def install_body_deadline(app: Flask) -> None:
    """Hold every request body read by a thread to the body rate rule; the socket also gives
    up after BODY_SECONDS of silence."""
    rate = BodyRate.from_config(app.config)

    @app.before_request
    def _deadline():
        if not request.content_length and "chunked" not in request.headers.get(
            "Transfer-Encoding", ""
        ):
            return
        environ = request.environ
        sock = environ.get("gunicorn.socket")
        if sock is not None:
            sock.settimeout(rate.grace_seconds)
        environ["wsgi.input"] = DeadlineReader(environ["wsgi.input"], rate)
