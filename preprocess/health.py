"""Preprocess's readiness: whether the trainer answers, asked at most once a second.

Everything preprocess serves goes through the trainer, so it is ready only while the trainer
answers. The probe asks the trainer's /livez (the process is up; no MLflow round trip), and
/health of a trainer too old to have /livez. One thread per process probes at a time and the
answer is kept FRESH_SECONDS: a flood of /health calls asks the trainer about once a second
per worker, and a trainer that hangs holds a caller about PROBE_SECONDS at most.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests

CONNECT_SECONDS = 1.0  # a trainer that is up accepts at once (or the kernel refuses at once)
PROBE_SECONDS = 2.0  # the wait for its answer; a trainer that is up answers /livez in ~1 ms
FRESH_SECONDS = 1.0  # how long a probe's answer is reused


@dataclass(frozen=True)
class TrainerState:
    """What the last probe found: whether the trainer answered, and if not, why."""

    reachable: bool
    reason: str | None
    at: float  # time.monotonic() of the probe


_lock = threading.Lock()
_last: dict[str, TrainerState] = {}


def probe(trainer_url: str, timeout: float = PROBE_SECONDS) -> TrainerState:
    """Ask the trainer once whether it is up (uncached)."""
    base = trainer_url.rstrip("/")
    limits = (CONNECT_SECONDS, timeout)
    try:
        answer = requests.get(f"{base}/livez", timeout=limits)
        if answer.status_code == 404:  # a trainer from before /livez
            answer = requests.get(f"{base}/health", timeout=limits)
    except requests.ConnectTimeout:
        why = f"the trainer at {base} did not accept a connection within {CONNECT_SECONDS:g} s"
    except requests.Timeout:
        why = f"the trainer at {base} did not answer within {timeout:g} s"
    except requests.ConnectionError:
        why = f"the trainer at {base} refused or dropped the connection (is it running?)"
    except requests.RequestException as err:
        why = f"the trainer at {base} could not be asked ({type(err).__name__})"
    else:
        if answer.ok:
            return TrainerState(True, None, time.monotonic())
        why = f"the trainer at {base} answered HTTP {answer.status_code}"
    return TrainerState(False, why, time.monotonic())


def trainer_state(trainer_url: str) -> TrainerState:
    """The trainer's state, probed again when the last answer is older than FRESH_SECONDS."""
    last = _last.get(trainer_url)
    if last is not None and time.monotonic() - last.at < FRESH_SECONDS:
        return last
    # Callers that arrive during a probe wait for it rather than probing too.
    with _lock:
        last = _last.get(trainer_url)
        if last is None or time.monotonic() - last.at >= FRESH_SECONDS:
            last = _last[trainer_url] = probe(trainer_url)
        return last
