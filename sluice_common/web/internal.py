"""The preprocess service's credential toward the trainer: a shared secret, so the trainer
takes Arrow bodies (which skip CSV parsing) only from preprocess.

SLUICE_INTERNAL_TOKEN gives it directly (every replica of both services must share it);
otherwise the trainer creates it on first start in SLUICE_INTERNAL_TOKEN_FILE (mode 0600)
and preprocess reads it from there: local mode points both at $SLUICE_HOME/internal.token,
Compose at a small volume the two containers share.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time

HEADER = "X-Sluice-Internal"


def ensure_secret_file(path: str) -> str:
    """A random secret kept in `path` (mode 0600): created by the first process that asks,
    read by the others (waiting briefly while it is being written)."""
    if not os.path.exists(path):  # checked first: a reader may have it on a read-only mount
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it just now
        else:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(32) + "\n")
    for _ in range(100):
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
        if text:
            return text
        time.sleep(0.05)  # another process is writing it
    raise RuntimeError(f"secret file {path} is empty")


def ensure_token(configured: str | None, path: str | None) -> str | None:
    """The trainer's side: the configured token, else the token file, created if missing."""
    if configured:
        return configured
    return ensure_secret_file(path) if path else None


def read_token(configured: str | None, path: str | None) -> str | None:
    """The preprocess side: the configured token, else the token file's (None when absent)."""
    if configured:
        return configured
    if not path:
        return None
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def matches(expected: str | None, presented: str | None) -> bool:
    """Whether a request presented the internal token (constant-time comparison)."""
    return bool(expected) and bool(presented) and hmac.compare_digest(expected, presented)
