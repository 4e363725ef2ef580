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

HEADER = "X-Sluice-Internal"


def ensure_token(configured: str | None, path: str | None) -> str | None:
    """The trainer's side: the configured token, else the token file, created if missing."""
    if configured:
        return configured
    if not path:
        return None
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token(None, path)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return read_token(None, path)


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
