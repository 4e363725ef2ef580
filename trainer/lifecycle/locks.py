"""Register-and-promote serialised per model name, across threads and worker processes."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def promotion_lock(state_dir: str, model_name: str):
    """Serialise register-and-promote per model name across threads and worker processes."""
    with _thread_locks_guard:
        thread_lock = _thread_locks.setdefault(model_name, threading.Lock())
    lock_dir = os.path.join(state_dir, "locks")
    os.makedirs(lock_dir, exist_ok=True)
    path = os.path.join(lock_dir, hashlib.sha1(model_name.encode()).hexdigest() + ".lock")
    with thread_lock, open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
