"""Forward a cleaned table to the trainer over a kept-alive HTTP connection."""

from __future__ import annotations

import threading

import requests

from sluice_common.errors import ApiError
from sluice_common.transport import ARROW_MEDIA_TYPE

_local = threading.local()


def _session() -> requests.Session:
    # One session per thread: connection reuse without sharing a Session across threads.
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def forward_to_trainer(
    trainer_url: str,
    query: dict[str, str],
    payload: bytes,
    authorization: str | None,
    connect_timeout: float,
    read_timeout: float,
) -> requests.Response:
    """POST the Arrow payload to the trainer's /ml; ApiError 503 when it cannot be reached.

    The table goes as the raw body (not multipart): no encoding or form parsing on either side.
    """
    headers = {"Content-Type": ARROW_MEDIA_TYPE}
    if authorization:
        headers["Authorization"] = authorization
    try:
        return _session().post(
            f"{trainer_url.rstrip('/')}/ml",
            params=query,
            data=payload,
            headers=headers,
            timeout=(connect_timeout, read_timeout),
        )
    except requests.Timeout as err:
        raise ApiError(
            504, "trainer_timeout", "The trainer did not answer in time; try again later."
        ) from err
    except requests.RequestException as err:
        _local.session = None  # drop connections that may be dead
        raise ApiError(
            503,
            "trainer_unavailable",
            "The trainer service is not reachable; try again in a moment.",
        ) from err


def trainer_healthy(trainer_url: str) -> bool:
    """Whether the trainer answers its health endpoint."""
    try:
        return requests.get(f"{trainer_url.rstrip('/')}/health", timeout=2).ok
    except requests.RequestException:
        return False
