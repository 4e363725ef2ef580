"""Admission control: a bounded number of heavy requests run at once per service.

Heavy means a dev training, or parsing and scoring a large upload. Each service has
HEAVY_SLOTS slots shared by all its worker processes (one lock file per slot, held with
flock while the request runs, released by the kernel if the worker dies). A heavy request
that finds every slot busy waits up to ADMISSION_WAIT_SECONDS; at most ADMISSION_QUEUE wait
per worker process, so waiting requests never take every thread and /health and small prod
requests stay fast. The rest get 503 with Retry-After.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time

from sluice_common.errors import ApiError

POLL_SECONDS = 0.05


class Admission:
    """Slots for heavy requests, shared across the worker processes of one service."""

    def __init__(self, lock_dir: str, slots: int, queue: int, wait_seconds: float):
        self.lock_dir = lock_dir
        self.slots = max(1, slots)
        self.queue = max(0, queue)
        self.wait_seconds = wait_seconds
        self._waiting = 0
        self._guard = threading.Lock()
        os.makedirs(lock_dir, exist_ok=True)

    def _try_slot(self):
        """An open, locked slot file, or None when every slot is taken."""
        for index in range(self.slots):
            handle = open(os.path.join(self.lock_dir, f"slot-{index}.lock"), "a+")  # noqa: SIM115
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            return handle
        return None

    def _busy(self, what: str) -> ApiError:
        retry = max(1, round(self.wait_seconds or 5))
        return ApiError(
            503,
            "busy",
            f"The service is running {self.slots} heavy request(s) ({what}) and its queue is "
            f"full; try again in about {retry} s.",
            retry_after=retry,
        )

    @contextlib.contextmanager
    def admit(self, what: str):
        """Run the block in a slot; ApiError 503 `busy` when none frees up in time."""
        handle = self._try_slot()
        if handle is None:
            with self._guard:
                if self._waiting >= self.queue:
                    raise self._busy(what)
                self._waiting += 1
            try:
                deadline = time.monotonic() + self.wait_seconds
                while handle is None and time.monotonic() < deadline:
                    time.sleep(POLL_SECONDS)
                    handle = self._try_slot()
            finally:
                with self._guard:
                    self._waiting -= 1
            if handle is None:
                raise self._busy(what)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    @contextlib.contextmanager
    def hold(self, stop):
        """Run the block in a slot, waiting as long as it takes (a queued job) unless `stop()`
        says to give up; `stop` raises to give up (a cancelled job)."""
        handle = self._try_slot()
        while handle is None:
            stop()
            time.sleep(POLL_SECONDS * 4)
            handle = self._try_slot()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
