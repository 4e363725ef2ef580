"""Register-and-promote serialised per model name, across threads and worker processes.

A lock is a file locked with flock(2), which excludes every other open of the file, in this
process or another. The holder removes the file before it lets go, so lock files exist only
while held: names that never become models (a request for an unknown one) leave nothing
behind. Whoever then wins the lock of the removed file sees that the path no longer leads to
it and starts over on a new file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading


def lock_path(state_dir: str, model_name: str) -> str:
    """The lock file of a model name (hashed: any name makes a safe file name)."""
    digest = hashlib.sha1(model_name.encode()).hexdigest()
    return os.path.join(state_dir, "locks", digest + ".lock")


def _acquire(path: str) -> int:
    """An open descriptor holding the lock of the file that `path` names when it returns."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return fd
        os.close(fd)  # its holder removed it while we waited: lock the path's new file


@contextlib.contextmanager
def promotion_lock(state_dir: str, model_name: str):
    """Serialise register-and-promote per model name across threads and worker processes
    (not re-entrant: a thread holding a name's lock must not ask for it again)."""
    path = lock_path(state_dir, model_name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = _acquire(path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # a file left behind is only a file
            os.unlink(path)  # still held: nobody can take this file's lock in between
        os.close(fd)  # releases the lock


def sweep(state_dir: str) -> int:
    """Remove the lock files nobody holds (earlier trainers left one per name ever locked,
    also names that never became models); how many. A file held now is left to its holder."""
    lock_dir = os.path.join(state_dir, "locks")
    removed = 0
    for entry in os.listdir(lock_dir) if os.path.isdir(lock_dir) else []:
        path = os.path.join(lock_dir, entry)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue  # gone since listed, or not a file of ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held, now = os.fstat(fd), os.stat(path)
            if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                os.unlink(path)  # held by us, as a holder removes it
                removed += 1
        except OSError:
            pass  # held by someone (or replaced meanwhile): theirs to remove
        finally:
            os.close(fd)
    return removed


def sweep_in_background(state_dir: str) -> None:
    """sweep() in a thread: a directory grown large never delays a worker's start."""
    threading.Thread(target=sweep, args=(state_dir,), name="lock-sweep", daemon=True).start()
