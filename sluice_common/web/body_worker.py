"""gunicorn's threaded worker, with each request read whole by the worker's event loop before a
thread runs it, so a slow client costs a socket and a buffer, never a thread.

gthread hands a connection to a thread as soon as it is accepted; the thread then blocks on
the client for the head and every read of the body, and 8 clients trickling their uploads hold
all 8 threads (health checks time out behind them). Here the loop reads the request's bytes as
they come (non-blocking, sluice_common/web/request_framing.py says where it ends), holds every
client to the body rate rule (sluice_common/web/slowbody.py: after BODY_SECONDS, at least
BODY_MIN_RATE_KB a second of what actually arrived) and answers 408 when it fails. A complete
request is replayed to gunicorn's own parser from memory, or from a spool file past
SPOOL_MEMORY_BYTES, so threads only ever run requests that are already here.

This is the part of a buffering reverse proxy (nginx's `proxy_request_buffering`) that Sluice
needs, inside the process: the same defence in the Compose stack and in local mode, with no
extra hop on the prod path.
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import tempfile
import time
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

from sluice_common import error_codes
from sluice_common.web.request_framing import Refusal, RequestFraming
from sluice_common.web.slowbody import BodyRate, upload_too_slow_message

READ_CHUNK = 256 * 1024
READ_PER_EVENT = 4 * 2**20  # bytes read from one client per wake-up: fair to the others
SPOOL_MEMORY_BYTES = 256 * 1024  # a body past this waits in a temporary file (0600)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large", 503: "Busy"}


def refusal_response(refusal: Refusal, retry_after: int | None = None) -> bytes:
    """The bytes of Sluice's JSON error answer, closing the connection."""
    body = json.dumps({"error": {"code": refusal.code, "message": refusal.message}}).encode()
    retry = f"Retry-After: {retry_after}\r\n" if retry_after else ""
    head = (
        f"HTTP/1.1 {refusal.status} {_REASONS.get(refusal.status, 'Error')}\r\n"
        f"Connection: close\r\nContent-Type: application/json\r\n{retry}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin1") + body


class ReplaySocket:
    """A client socket whose next request was already read: `recv` answers those bytes first,
    then reads the socket. Blocking mode means a timeout (a thread never waits forever on a
    client that stopped reading its answer)."""

    def __init__(self, sock: socket.socket, io_timeout: float):
        self._sock = sock
        self._io_timeout = io_timeout
        self._head = b""
        self._body = None  # a spooled file, read after the head
        self.leftover = b""  # bytes of a pipelined next request, read by the event loop
        # While a thread runs a loaded request, the socket gives it nothing beyond that request:
        # a parser that wants more than the loop framed sees the end of the stream (and answers
        # or closes) rather than waiting on the client for bytes that may never come.
        self._sealed = False

    def load(self, head: bytes, body) -> None:
        self._drop_body()
        self._head, self._body = head, body
        self._sealed = True
        if body is not None:
            body.seek(0)

    def recv(self, size: int, flags: int = 0) -> bytes:
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
            return data
        if self._body is not None:
            data = self._body.read(size)
            if data:
                return data
            self._drop_body()
        if self._sealed:
            return b""
        return self._sock.recv(size, flags)

    def unseal(self) -> None:
        """The event loop reads the next request from the client itself."""
        self._sealed = False

    def buffered(self) -> bool:
        return bool(self._head) or self._body is not None

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def setblocking(self, flag: bool) -> None:
        if flag:
            self._sock.settimeout(self._io_timeout)
        else:
            self._sock.setblocking(False)

    def close(self) -> None:
        self._drop_body()
        self._head = b""
        self._sock.close()

    def __getattr__(self, name):
        return getattr(self._sock, name)


class PendingRequest:
    """A request being read by the event loop."""

    def __init__(self, conn, max_body: int | None, rate: BodyRate, idle_seconds: float):
        self.conn = conn
        self.framing = RequestFraming(max_body)
        self.rate = rate
        self.started = time.monotonic()
        self.idle_deadline = self.started + idle_seconds
        self.received = 0
        self.body = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        self.large = False
        self.closed = False

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        body = self.framing.feed(data)
        if body:
            self.body.write(body)

    def too_slow(self, now: float) -> bool:
        return self.rate.too_slow(self.received, now - self.started)


class BodyBufferingWorker(ThreadWorker):
    """gthread, with requests read whole by the event loop (see the module's docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reading: dict[int, PendingRequest] = {}
        self.rate = BodyRate()  # the app's settings replace it in load_wsgi
        self.max_body: int | None = None
        self.large_reading = 0

    def load_wsgi(self):
        super().load_wsgi()
        config = getattr(self.wsgi, "config", None) or {}
        self.rate = BodyRate.from_config(config)
        # The largest body any route accepts; Flask still applies each route's own limit.
        self.max_body = config.get("MAX_REQUEST_BODY_BYTES") or config.get("MAX_CONTENT_LENGTH")

    # -- connections in ------------------------------------------------------------------

    def accept(self, listener):
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        sock = ReplaySocket(client_sock, self.rate.grace_seconds)
        conn = TConn(self.cfg, sock, client_addr, listener.getsockname())
        self._start_reading(conn, idle_seconds=max(self.cfg.keepalive, 2.0))

    def on_client_socket_readable(self, conn, client):
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._start_reading(conn, idle_seconds=self.rate.grace_seconds)

    def finish_request(self, conn, fs):
        super().finish_request(conn, fs)
        if conn in self.keepalived_conns and conn.sock.leftover:  # a pipelined request
            self.poller.unregister(conn.sock)
            self.keepalived_conns.remove(conn)
            self._start_reading(conn, idle_seconds=self.rate.grace_seconds)

    def _start_reading(self, conn, idle_seconds: float) -> None:
        conn.sock.unseal()
        conn.sock.setblocking(False)
        pending = PendingRequest(conn, self.max_body, self.rate, idle_seconds)
        self.reading[id(conn)] = pending
        leftover, conn.sock.leftover = conn.sock.leftover, b""
        if leftover:
            pending.feed(leftover)
            if self._settle(pending):
                return
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, pending))

    # -- reading -------------------------------------------------------------------------

    def _on_readable(self, pending: PendingRequest, sock) -> None:
        try:
            self._read_some(pending, sock)
        except Exception:  # never let one client's request take the event loop down
            self.log.exception("Error reading a request; closing its connection")
            self._unregister(pending)
            self._drop(pending)

    def _read_some(self, pending: PendingRequest, sock) -> None:
        got = 0
        while got < READ_PER_EVENT:
            try:
                data = sock.recv(READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:  # the client went away before its request was whole
                self._unregister(pending)
                self._drop(pending)
                return
            got += len(data)
            pending.feed(data)
            if pending.framing.done or pending.framing.refusal:
                break
        if pending.framing.expects_continue and not pending.framing.done:
            pending.framing.expects_continue = False
            _send_quietly(sock, CONTINUE)
        if not pending.large and pending.framing.body_received > SPOOL_MEMORY_BYTES:
            pending.large = True
            self.large_reading += 1
            if self.large_reading > max(1, self.cfg.threads):
                busy = Refusal(
                    error_codes.BUSY,
                    f"This worker is receiving {self.cfg.threads} large uploads already; "
                    "send yours again in a few seconds.",
                )
                self._unregister(pending)
                self._refuse(pending, busy, retry_after=5)
                return
        if pending.framing.done or pending.framing.refusal:
            self._unregister(pending)
            self._settle(pending)

    def _settle(self, pending: PendingRequest) -> bool:
        """Hand a whole request to a thread, or answer its refusal; False while incomplete."""
        framing = pending.framing
        if framing.refusal:
            self._refuse(pending, framing.refusal)
            return True
        if not framing.done:
            return False
        self._forget(pending)
        conn = pending.conn
        conn.sock.load(framing.head, pending.body if framing.body_received else None)
        if not framing.body_received:
            pending.body.close()
        conn.sock.leftover = framing.extra
        conn.data_ready = True
        self.enqueue_req(conn)
        return True

    def _unregister(self, pending: PendingRequest) -> None:
        try:
            self.poller.unregister(pending.conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _forget(self, pending: PendingRequest) -> None:
        self.reading.pop(id(pending.conn), None)
        if pending.large:
            pending.large = False
            self.large_reading -= 1

    def _drop(self, pending: PendingRequest) -> None:
        """Close a connection that never sent a whole request (once)."""
        if pending.closed:
            return
        pending.closed = True
        self._forget(pending)
        pending.body.close()
        self.nr_conns -= 1
        try:
            pending.conn.sock.close()
        except OSError:
            pass

    def _refuse(self, pending: PendingRequest, refusal: Refusal, retry_after=None) -> None:
        _send_quietly(pending.conn.sock, refusal_response(refusal, retry_after))
        try:
            pending.conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._drop(pending)

    def murder_pending(self):
        """gthread's idle sweep, plus the body rate rule on every request being read."""
        super().murder_pending()
        now = time.monotonic()
        for pending in list(self.reading.values()):
            if pending.received == 0 and (now > pending.idle_deadline or not self.alive):
                self._unregister(pending)
                self._drop(pending)  # an idle connection: nothing to answer
            elif pending.too_slow(now):
                self._unregister(pending)
                message = upload_too_slow_message(pending.received, now - pending.started)
                self._refuse(pending, Refusal(error_codes.UPLOAD_TOO_SLOW, message))


def _send_quietly(sock, data: bytes) -> None:
    """Send a short answer without blocking the event loop; a client that does not take it
    is closed anyway."""
    try:
        sock.send(data)
    except OSError:
        pass
