"""Where an HTTP/1.1 request ends, decided from the bytes as they arrive (no sockets, no HTTP
server): the event loop of sluice_common/web/body_worker.py reads a whole request with it before
a thread runs the request.

It only frames (head, then a Content-Length or chunked body); gunicorn's parser still parses
every request from the same bytes. Anything this framing cannot frame is refused with the
status gunicorn would give it, so a thread never waits on a client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sluice_common import error_codes
from sluice_common.error_codes import ErrorCode

HEAD_END = b"\r\n\r\n"
# gunicorn's own limits bound a head at about 100 fields of 8 KiB plus an 8 KiB request line.
MAX_HEAD_BYTES = 8190 + 100 * (8190 + 2) + 4
MAX_CHUNK_LINE = 4096
_EXPECT_LINE = re.compile(rb"\r\nexpect:[ \t]*100-continue[ \t]*(?=\r\n)", re.IGNORECASE)


@dataclass(frozen=True)
class Refusal:
    """A request refused while it was being read, answered by the event loop."""

    error_code: ErrorCode
    message: str

    @property
    def status(self) -> int:
        return self.error_code.status

    @property
    def code(self) -> str:
        return self.error_code.code


class RequestFraming:
    """Feed bytes; `done` once one whole request has arrived, with `extra` the bytes after it
    (a pipelined next request). `head` is the request head to hand on, without any
    `Expect: 100-continue` line (the event loop answers that itself)."""

    def __init__(self, max_body: int | None):
        self.max_body = max_body
        self.head: bytes | None = None
        self.expects_continue = False
        self.body_received = 0  # raw body bytes (chunk framing included)
        self.done = False
        self.extra = b""
        self.refusal: Refusal | None = None
        self._pending = bytearray()  # head bytes, or an unfinished chunk-size line
        self._remaining = 0  # body bytes still expected (Content-Length, or of this chunk)
        self._chunked = False
        self._chunk_state = "size"  # size | data | data_end | trailer
        self._declared = 0  # the chunk sizes announced so far

    # -- the head -------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Consume `data`; answer the part of it that belongs to the body (to be stored)."""
        if self.head is None:
            self._pending += data
            end = self._pending.find(HEAD_END)
            if end < 0:
                if len(self._pending) > MAX_HEAD_BYTES:
                    self._hand_over_head()  # gunicorn answers 414/431 from these bytes
                return b""
            head = bytes(self._pending[: end + 4])
            rest = bytes(self._pending[end + 4 :])
            self._pending = bytearray()
            self._read_head(head)
            if self.done or self.refusal:
                self.extra = rest if self.done else b""
                return b""
            data = rest
        return self._feed_body(data)

    def _hand_over_head(self) -> None:
        self.head = bytes(self._pending)
        self._pending = bytearray()
        self.done = True

    def _read_head(self, head: bytes) -> None:
        lines = head[:-4].split(b"\r\n")
        fields: dict[bytes, list[bytes]] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                fields.setdefault(name.strip().lower(), []).append(value.strip())
        if _EXPECT_LINE.search(head[:-2]):
            self.expects_continue = True
            head = _EXPECT_LINE.sub(b"", head[:-2]) + b"\r\n"
        self.head = head
        encodings = fields.get(b"transfer-encoding")
        lengths = fields.get(b"content-length")
        if encodings:
            if lengths or [value.lower() for value in encodings] != [b"chunked"]:
                self._refuse(
                    error_codes.BAD_REQUEST,
                    "Only Transfer-Encoding: chunked is accepted, without a Content-Length; "
                    "send the body with a Content-Length or chunked.",
                )
                return
            self._chunked = True
            return
        if not lengths:
            self.done = True
            return
        if len(set(lengths)) != 1 or not lengths[0].isdigit():
            self._refuse(error_codes.BAD_REQUEST, "The Content-Length header is not one number.")
            return
        self._remaining = int(lengths[0])
        if self.max_body is not None and self._remaining > self.max_body:
            self._refuse_too_large()
            return
        self.done = self._remaining == 0

    def _refuse(self, error_code: ErrorCode, message: str) -> None:
        self.refusal = Refusal(error_code, message)

    def _refuse_too_large(self) -> None:
        megabytes = (self.max_body or 0) / 2**20
        self._refuse(
            error_codes.UPLOAD_TOO_LARGE,
            f"The request body is larger than this service's {megabytes:.0f} MB limit "
            "(MAX_UPLOAD_MB). Send a smaller file or raise the limit.",
        )

    # -- the body -------------------------------------------------------------------------

    def _feed_body(self, data: bytes) -> bytes:
        if not self._chunked:
            taken = data[: self._remaining]
            self._remaining -= len(taken)
            self.body_received += len(taken)
            if self._remaining == 0:
                self.done = True
                self.extra = data[len(taken) :]
            return taken
        start = 0
        while start < len(data) and not (self.done or self.refusal):
            start = self._chunk_step(data, start)
        taken = data[:start]
        self.body_received += len(taken)
        if self.max_body is not None and self.body_received > self.max_body:
            self._refuse_too_large()
        if self.done:
            self.extra = data[start:]
        return taken

    def _chunk_step(self, data: bytes, start: int) -> int:
        """Advance the chunked state machine over data[start:]; answer where it stopped."""
        if self._chunk_state == "data":
            step = min(self._remaining, len(data) - start)
            self._remaining -= step
            if self._remaining == 0:
                self._chunk_state = "data_end"
            return start + step
        end = data.find(b"\n", start)
        if end < 0:
            self._pending += data[start:]
            if len(self._pending) > MAX_CHUNK_LINE:
                self._refuse(error_codes.BAD_REQUEST, "A chunk-size line of the body is too long.")
            return len(data)
        line = bytes(self._pending) + data[start:end]
        self._pending = bytearray()
        if not line.endswith(b"\r"):
            # gunicorn's reader ends these lines at CRLF only: a request framed on a bare LF
            # here would leave its thread waiting on the socket for a CRLF that never comes.
            self._refuse(
                error_codes.BAD_REQUEST,
                "A line of the chunked body ends in a bare LF; end each line with CRLF.",
            )
            return end + 1
        line = line[:-1]
        if self._chunk_state == "size":
            size = line.split(b";", 1)[0].strip()
            if not size or not re.fullmatch(rb"[0-9A-Fa-f]{1,15}", size):
                self._refuse(
                    error_codes.BAD_REQUEST, "A chunk size of the body is not hexadecimal."
                )
                return end + 1
            self._remaining = int(size, 16)
            self._declared += self._remaining
            if self.max_body is not None and self._declared > self.max_body:
                # Refused when announced, as a Content-Length over the limit is: its bytes
                # would be refused anyway, and a client that lies is held to 408's deadline.
                self._refuse_too_large()
                return end + 1
            self._chunk_state = "data" if self._remaining else "trailer"
        elif self._chunk_state == "data_end":
            if line:
                self._refuse(
                    error_codes.BAD_REQUEST, "A chunk of the body is longer than its size."
                )
            self._chunk_state = "size"
        elif not line:  # trailer: an empty line ends the body
            self.done = True
        return end + 1
