"""The console's session cookie and CSRF tokens: stateless, so every gunicorn worker checks them.

The cookie is `<sid>` for a browser that has not signed in (or a stack without
SLUICE_API_TOKEN), and `<sid>.<expiry>.<mac>` once it has: the MAC is keyed by a key derived
from the token, so the cookie never holds the token and a new token voids every session. A form's
CSRF token is a MAC of the sid (keyed the same way): a page of another site can neither read the
HttpOnly cookie nor guess the token, and SameSite=Strict keeps the cookie off its posts anyway.
Signing out replaces the cookie; a copied signed cookie stays good until its expiry (no server
state to revoke it), as a copied token would forever.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

COOKIE = "sluice_console"
PORT = re.compile(r":([0-9]{1,5})$")
SESSION_SECONDS = 12 * 3600  # a working day; then the console asks for the token again
SID = re.compile(r"^[0-9a-f]{32}$")
EXPIRY = re.compile(r"^[0-9]{1,12}$")  # ASCII digits ('²'.isdigit() is True), int()-sized
# Without a token the CSRF MAC needs no secret: the sid, unreadable to other sites, is the secret.
OPEN_KEY = b"sluice-console-open"


@dataclass(frozen=True)
class Session:
    """What the request's cookie says: its sid (new when it had none) and whether it is
    signed in."""

    sid: str
    signed_in: bool
    fresh: bool  # no usable cookie came: the answer sets one


def _key(token: str | None) -> bytes:
    if not token:
        return OPEN_KEY
    return hashlib.sha256(b"sluice-console-session\0" + token.encode()).digest()


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def read_session(cookie: str | None, token: str | None, now: float | None = None) -> Session:
    """The session of a request whose cookie is `cookie` (None when absent)."""
    now = time.time() if now is None else now
    parts = (cookie or "").split(".")
    if parts and SID.fullmatch(parts[0]):
        sid = parts[0]
        if len(parts) == 3 and token and EXPIRY.fullmatch(parts[1]) and int(parts[1]) > now:
            expected = _mac(_key(token), f"{sid}.{parts[1]}")
            if hmac.compare_digest(parts[2].encode(), expected.encode()):
                return Session(sid, True, False)
        return Session(sid, not token, False)
    return Session(secrets.token_hex(16), not token, True)


def cookie_name(host: str, secure: bool) -> str:
    """The cookie's name for the stack at `host`: browsers send a host's cookies to every port
    of it, so the port is in the name (two stacks on one host keep their own sessions); over
    https the `__Host-` prefix makes the browser refuse one set without Secure, Path=/ or with a
    Domain (by another app of the host over plain http, say)."""
    port = PORT.search(host)
    name = f"{COOKIE}_{port[1]}" if port else COOKIE
    return f"__Host-{name}" if secure else name


def anonymous_cookie(sid: str) -> str:
    """The cookie of a browser that has not signed in."""
    return sid


def signed_in_cookie(token: str, now: float | None = None) -> tuple[str, str]:
    """A new sid (never the one used before signing in) and its signed cookie."""
    sid = secrets.token_hex(16)
    expiry = int((time.time() if now is None else now) + SESSION_SECONDS)
    return sid, f"{sid}.{expiry}.{_mac(_key(token), f'{sid}.{expiry}')}"


def token_matches(given: str, token: str) -> bool:
    """Whether the token typed at the login form is the stack's."""
    return hmac.compare_digest(given.encode(), token.encode())


def csrf_token(sid: str, token: str | None) -> str:
    """The CSRF token every form of this session carries."""
    return _mac(_key(token), f"csrf:{sid}")


def csrf_ok(given: str | None, sid: str, token: str | None) -> bool:
    """Whether a form's CSRF token belongs to this session."""
    return bool(given) and hmac.compare_digest(given.encode(), csrf_token(sid, token).encode())
