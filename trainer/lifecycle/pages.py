"""The page tokens of the catalogue's listings. MLflow's own token is never handed out as is:
it goes out wrapped with a MAC of this trainer's key and of the listing it pages, and only a
token that checks is given back to MLflow. A forged token (MLflow decodes it and fails, e.g.
on an offset of 1e308, or pages from -1) is a 400 invalid_page, not a 503 or a quiet answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from sluice_common import error_codes
from sluice_common.errors import ApiError

MAC_CHARS = 32  # hex characters of the MAC kept: 128 bits
PURPOSE = b"sluice page token"  # the key's use here: a MAC of no other kind checks as a token


def _mac(key: bytes, listing: str, inner: bytes) -> str:
    page_key = hmac.new(key, PURPOSE, hashlib.sha256).digest()
    mac = hmac.new(page_key, listing.encode() + b"\0" + inner, hashlib.sha256)
    return mac.hexdigest()[:MAC_CHARS]


def wrap(inner: str | bytes | None, listing: str, key: bytes) -> str | None:
    """The next_page of an answer of `listing` (e.g. "GET /models"): MLflow's token, checked
    and URL-safe; None on the last page."""
    if not inner:
        return None
    raw = inner.encode() if isinstance(inner, str) else bytes(inner)
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"{text}.{_mac(key, listing, raw)}"


def unwrap(token: str | None, listing: str, key: bytes) -> str | None:
    """MLflow's token inside a next_page an earlier answer of `listing` gave; 400 invalid_page
    for anything else."""
    if token is None:
        return None
    text, _, mac = token.partition(".")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        inner = raw.decode("ascii")
    except (ValueError, binascii.Error):
        raw, inner = b"", ""
    if not inner or not hmac.compare_digest(mac.encode(), _mac(key, listing, raw).encode()):
        raise ApiError(
            error_codes.INVALID_PAGE,
            f"page is not a next_page of {listing}: to see the next page, pass the next_page "
            "value of the previous answer as it is; leave page out for the first page.",
        )
    return inner
