"""Optional bearer-token auth: on when SLUICE_API_TOKEN is set."""

from __future__ import annotations

import hmac

from flask import Flask, request

from sluice_common import error_codes
from sluice_common.errors import ApiError

# Probes (readiness and liveness) carry no token: orchestrators call them as they are.
OPEN_PATHS = frozenset({"/health", "/livez"})


def install_token_check(app: Flask, token: str | None) -> None:
    """Require `Authorization: Bearer <token>` on every path but the probes (OPEN_PATHS)
    when token is set."""
    if not token:
        return
    expected = f"Bearer {token}".encode()

    @app.before_request
    def _check_token():
        if request.path in OPEN_PATHS:
            return None
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise ApiError(
                error_codes.UNAUTHORIZED,
                "This Sluice stack needs an API token: send 'Authorization: Bearer <token>' "
                "(the client reads SLUICE_API_TOKEN from the environment).",
            )
        return None
