"""Optional bearer-token auth: on when SLUICE_API_TOKEN is set."""

from __future__ import annotations

import hmac

from flask import Flask, request

from sluice_common import error_codes
from sluice_common.errors import ApiError

# Probes (readiness and liveness) carry no token: orchestrators call them as they are. The API's
# description (/openapi.json, /docs) holds no data. The console (/ and /console/...) is checked
# by its own session cookie instead (preprocess/console/access.py): a browser sends no Bearer.
OPEN_PATHS = frozenset({"/health", "/livez", "/openapi.json", "/docs", "/", "/console"})
OPEN_PREFIXES = ("/docs/", "/console/")


def is_open(path: str) -> bool:
    """Whether `path` needs no Bearer token."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def install_token_check(app: Flask, token: str | None) -> None:
    """Require `Authorization: Bearer <token>` on every path but the open ones (is_open)
    when token is set."""
    if not token:
        return
    expected = f"Bearer {token}".encode()

    @app.before_request
    def _check_token():
        if is_open(request.path):
            return None
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise ApiError(
                error_codes.UNAUTHORIZED,
                "This Sluice stack needs an API token: send 'Authorization: Bearer <token>' "
                "(the client reads SLUICE_API_TOKEN from the environment).",
            )
        return None
