"""Forward a cleaned table to the trainer over a kept-alive HTTP connection.

Plain http.client, one connection per thread: `requests` costs ~2.4 ms per call here, more
than the trainer needs to score a row.
"""

from __future__ import annotations

import http.client
import select
import threading
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from sluice_common import error_codes
from sluice_common.errors import ApiError
from sluice_common.tables.transport import ARROW_MEDIA_TYPE
from sluice_common.web.internal import HEADER

_local = threading.local()

# How a kept-alive connection the server closed before reading our request fails.
# Headers of the trainer's answer that mean something to the client (the report's policy).
RELAYED_HEADERS = (
    "Content-Security-Policy",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Location",  # a job's, with a 202
)
_CLOSED_UNDER_US = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True)
class TrainerAnswer:
    """The trainer's answer, to relay as it is."""

    status: int
    content_type: str
    body: bytes
    retry_after: str | None = None
    headers: tuple = ()  # (name, value) of RELAYED_HEADERS the trainer set


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection was closed by the server (it reads as ready)."""
    if conn.sock is None:
        return True
    try:
        readable, _, _ = select.select([conn.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _connection(trainer_url: str, connect_timeout: float, read_timeout: float):
    """This thread's connection to the trainer, new when there is none or it went stale.

    Also says whether it was reused: only a reused one can have been closed under us.
    """
    parts = urlsplit(trainer_url)
    key = (parts.scheme, parts.hostname, parts.port)
    conn = getattr(_local, "conns", {}).get(key)
    if conn is not None and not _dropped(conn):
        return conn, parts.path.rstrip("/"), True
    if conn is not None:
        conn.close()
    factory = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = factory(parts.hostname, parts.port, timeout=connect_timeout)
    conn.connect()
    conn.sock.settimeout(read_timeout)  # connecting is quick; answering may take a training
    _local.conns = {**getattr(_local, "conns", {}), key: conn}
    return conn, parts.path.rstrip("/"), False


def _forget(trainer_url: str) -> None:
    parts = urlsplit(trainer_url)
    conn = getattr(_local, "conns", {}).pop((parts.scheme, parts.hostname, parts.port), None)
    if conn is not None:
        conn.close()


def forward_to_trainer(
    trainer_url: str,
    query: dict[str, str],
    payload: bytes,
    authorization: str | None,
    internal_token: str | None,
    connect_timeout: float,
    read_timeout: float,
    media_type: str = ARROW_MEDIA_TYPE,
) -> TrainerAnswer:
    """POST the parsed table (an Arrow stream, or `media_type`'s body) as the raw body of the
    trainer's /ml; 503/504 when it fails.

    Raw body rather than multipart: no encoding or form parsing on either side.
    """
    headers = {"Content-Type": media_type}
    if internal_token:
        headers[HEADER] = internal_token
    return relay(
        trainer_url,
        "POST",
        "/ml",
        query,
        payload,
        headers,
        authorization,
        connect_timeout,
        read_timeout,
    )


def relay(
    trainer_url: str,
    method: str,
    path: str,
    query: dict[str, str] | list[tuple[str, str]] | None,
    body: bytes | None,
    headers: dict[str, str],
    authorization: str | None,
    connect_timeout: float,
    read_timeout: float,
) -> TrainerAnswer:
    """One request to the trainer on this thread's kept-alive connection; 503/504 when the
    trainer cannot be reached or does not answer in time."""
    headers = dict(headers)
    if body is not None:
        headers["Content-Length"] = str(len(body))
    if authorization:
        headers["Authorization"] = authorization
    target = f"{path}?{urlencode(query)}" if query else path
    try:
        for attempt in (1, 2):
            conn, base_path, reused = _connection(trainer_url, connect_timeout, read_timeout)
            try:
                conn.request(method, f"{base_path}{target}", body=body, headers=headers)
                response = conn.getresponse()
                break
            except _CLOSED_UNDER_US:
                # gunicorn closes a kept-alive connection after its idle timeout; when that
                # crosses our request, the request was never read. Once, on a new connection.
                _forget(trainer_url)
                if not reused or attempt == 2:
                    raise
        answer = response.read()
        if response.will_close:
            _forget(trainer_url)
        return TrainerAnswer(
            response.status,
            response.getheader("Content-Type", "application/json"),
            answer,
            response.getheader("Retry-After"),
            tuple(
                (name, response.getheader(name))
                for name in RELAYED_HEADERS
                if response.getheader(name) is not None
            ),
        )
    except TimeoutError as err:
        _forget(trainer_url)
        raise ApiError(
            error_codes.TRAINER_TIMEOUT, "The trainer did not answer in time; try again later."
        ) from err
    except (OSError, http.client.HTTPException) as err:
        _forget(trainer_url)
        raise ApiError(
            error_codes.TRAINER_UNAVAILABLE,
            "The trainer service is not reachable; try again in a moment.",
        ) from err
