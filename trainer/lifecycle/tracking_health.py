"""Whether the MLflow tracking server answers: the one place Sluice asks its /health."""

from __future__ import annotations

import threading
import time

import mlflow
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

PING_TIMEOUT = 3.0  # seconds; the server answers /health in milliseconds when it is well


def answers(uri: str, timeout: float) -> bool:
    """Whether the server at `uri` answers its health check within `timeout` seconds."""
    try:
        return requests.get(f"{uri.rstrip('/')}/health", timeout=timeout).ok
    except requests.RequestException:
        return False


def ping() -> None:
    """Raise when the tracking server does not answer its health check within
    PING_TIMEOUT seconds: a hung server fails dev fast, before any training."""
    uri = mlflow.get_tracking_uri().rstrip("/")
    if uri.startswith(("http://", "https://")):
        requests.get(f"{uri}/health", timeout=PING_TIMEOUT).raise_for_status()
    else:  # a local store (bench, tests): one cheap call
        MlflowClient().search_experiments(max_results=1)


def refuses_account(err: Exception) -> bool:
    """Whether a tracking-server error says it refused the trainer's account (REST calls raise
    MlflowException; artifact transfers an HTTPError)."""
    if isinstance(err, MlflowException):
        return err.error_code in ("UNAUTHENTICATED", "PERMISSION_DENIED")
    response = getattr(err, "response", None)
    return response is not None and response.status_code in (401, 403)


_probe = {"ok": True, "at": float("-inf")}
_probe_lock = threading.Lock()
PROBE_SECONDS = 1.0  # the probe's own timeout
CONFIRM_SECONDS = 2.5  # the second look before a server that was up is marked down
PROBE_MAX_AGE = 2.0  # how long one probe's "up" stands for every thread
DOWN_MAX_AGE = 0.5  # and its "down"


def reachable() -> bool:
    """Whether the tracking server answered its health check lately. One thread probes at a
    time (1 s timeout, confirmed with 2.5 s before a server that was up is marked down); the
    others take the last answer, so when MLflow hangs, requests that would wait on it fail at
    once instead of holding threads for the client's timeouts."""
    uri = mlflow.get_tracking_uri().rstrip("/")
    if not uri.startswith(("http://", "https://")):
        return True
    if _fresh():
        return _probe["ok"]
    with _probe_lock:  # one probe at a time; the others wait for its answer (1 s, 3.5 s at most)
        if _fresh():
            return _probe["ok"]
        ok = answers(uri, PROBE_SECONDS)
        if not ok and _probe["ok"]:
            # A server that was up and misses one short probe is more often busy (just
            # started, a loaded machine) than gone: a longer second look before every request
            # that needs it is refused. Once it is marked down, probes are short again.
            ok = answers(uri, CONFIRM_SECONDS)
        _probe.update(ok=ok, at=time.monotonic())
        return ok


def _fresh() -> bool:
    """Whether the last answer still stands: "up" for PROBE_MAX_AGE, "down" briefly, so a
    server that just came up (the stack starting together) is believed at once."""
    age = time.monotonic() - _probe["at"]
    return age < (PROBE_MAX_AGE if _probe["ok"] else DOWN_MAX_AGE)
