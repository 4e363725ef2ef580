"""Two defences against a web page that uses its visitor's browser to reach a Sluice service.

- Cross-site requests: a page on another site (another port of 127.0.0.1 included) can make
  the browser POST to the API (a text/plain form, a no-cors fetch) without reading the answer.
  With no SLUICE_API_TOKEN nothing else stops it, so every method but GET, HEAD and OPTIONS is
  refused when the browser's own headers say the request came from elsewhere.
- DNS rebinding: a page on an attacker's name re-resolves that name to 127.0.0.1 and is then
  same-origin with the service, reads included. Its requests carry the attacker's name as
  Host, so only the Hosts SLUICE_ALLOWED_HOSTS accepts are answered.

Programs (curl, requests, the Sluice client, preprocess calling the trainer) send neither
Origin nor Sec-Fetch-Site, and an IP address, localhost or a Compose service name as Host:
neither rule touches them.
"""

from __future__ import annotations

import ipaddress
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from flask import Flask, request

from sluice_common import error_codes
from sluice_common.errors import ApiError
from sluice_common.web.errors import error_response

# Methods browsers send cross-site that change nothing here (and the CORS preflight).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values of a request this service's own pages made, or the user typed.
# `same-site` is refused: another port on the same host is the same site.
OWN_FETCHES = frozenset({"same-origin", "none"})
DEFAULT_PORTS = {"http": "80", "https": "443"}
# Echoed header values are cut to this many characters.
ECHO_CHARS = 120
ADVICE = (
    "browsers' cross-site requests are refused; call the API from a program (curl, the Sluice "
    "client) or from this stack's own pages (the console, /docs)"
)


def _echo(value: str) -> str:
    return value if len(value) <= ECHO_CHARS else value[:ECHO_CHARS] + "..."


def split_host(host: str) -> tuple[str, str | None]:
    """The name (or IP address, without brackets) and the port of a Host header, lowercased."""
    host = host.strip().lower()
    if host.startswith("["):  # [v6] or [v6]:port
        name, _, rest = host[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else None
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name, port
    return host, None  # a name, IPv4, or a bare IPv6 address (two or more colons)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def parse_allowed_hosts(value: str | None) -> tuple[str, ...]:
    """SLUICE_ALLOWED_HOSTS as its entries, lowercased, blanks dropped."""
    return tuple(e.strip().lower() for e in (value or "").split(",") if e.strip())


def host_allowed(host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a request whose Host header is `host` is answered.

    Always: no Host (HTTP/1.0, never a browser), an IP address, localhost, a name without a
    dot (a Compose service, a machine on the LAN): a rebinding page needs a name the attacker's
    DNS answers for, which has a dot. Otherwise `allowed` must list it: an entry matches the
    name (any port) or name:port, with `*` as a wildcard (`*.example.com`); `*` alone allows all.
    """
    if host is None:
        return True
    name, port = split_host(host)
    if _is_ip(name) or name == "localhost" or "." not in name:
        return True
    with_port = f"{name}:{port}" if port else name
    return any(fnmatchcase(name, e) or fnmatchcase(with_port, e) for e in allowed)


def _netloc(origin_or_host: str, scheme: str) -> str:
    """host[:port] lowercased, without the scheme's default port."""
    name, port = split_host(origin_or_host)
    if ":" in name:
        name = f"[{name}]"
    return name if port in (None, "", DEFAULT_PORTS.get(scheme)) else f"{name}:{port}"


def cross_site_evidence(
    method: str, sec_fetch_site: str | None, origin: str | None, host: str | None
) -> str | None:
    """The header that shows a state-changing request came from another site's page, as
    `Name: value`; None for a safe method, a same-origin request, or a program's request.

    Sec-Fetch-Site (every current browser sends it) is the browser's own verdict and wins.
    Without it, Origin must name this service's host[:port]; the scheme is not compared, since
    behind a TLS proxy the service sees http while the page was https, and whatever answers
    on this host and port is this service anyway. `Origin: null` (sandboxed pages, file://,
    some redirects) is cross-site.
    """
    if method.upper() in SAFE_METHODS:
        return None
    if sec_fetch_site is not None:
        if sec_fetch_site.strip().lower() in OWN_FETCHES:
            return None
        return f"Sec-Fetch-Site: {_echo(sec_fetch_site)}"
    if origin is None:
        return None
    parts = urlsplit(origin.strip())
    same = (
        parts.scheme in DEFAULT_PORTS
        and bool(parts.netloc)
        and host is not None
        and _netloc(parts.netloc, parts.scheme) == _netloc(host, parts.scheme)
    )
    return None if same else f"Origin: {_echo(origin)}"


def install_browser_checks(app: Flask, allowed_hosts: str | None) -> None:
    """Refuse requests to a Host `allowed_hosts` does not accept (host_allowed), then
    state-changing requests a browser sent from another site (cross_site_evidence)."""
    allowed = parse_allowed_hosts(allowed_hosts)
    check_host = "*" not in allowed

    # Answered here rather than raised, before any other hook: error_response gives the API's
    # paths JSON and the console's its HTML error page (add_html_error_pages).
    @app.before_request
    def _check_browser():
        host = request.headers.get("Host")
        if check_host and not host_allowed(host, allowed):
            return error_response(
                ApiError(
                    error_codes.HOST_NOT_ALLOWED,
                    f"Host {_echo(host or '')!r} is not one this service answers to (a page on "
                    "another name re-resolved to this address, as in DNS rebinding, sends it too). "
                    "If it is this service's name, add it to SLUICE_ALLOWED_HOSTS "
                    "(comma-separated); IP addresses, localhost and names without a dot are always "
                    "accepted.",
                )
            )
        seen = cross_site_evidence(
            request.method,
            request.headers.get("Sec-Fetch-Site"),
            request.headers.get("Origin"),
            host,
        )
        if seen:
            return error_response(
                ApiError(
                    error_codes.CROSS_SITE_REQUEST,
                    f"This {request.method} came from another site's page ({seen}): {ADVICE}.",
                )
            )
        return None
