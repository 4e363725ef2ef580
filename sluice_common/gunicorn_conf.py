"""gunicorn settings both services run with (`gunicorn -c python:sluice_common.gunicorn_conf`).

Bounded request parsing: gunicorn's own limits on the request line and headers, so a long
line costs a quick 4xx instead of a rescan per chunk (unlimited, 8 MiB of request line took
~9 s of CPU). gunicorn answers those before Flask sees the request; its error pages are HTML,
so they are rewritten here in Sluice's one JSON error shape.
"""

from __future__ import annotations

import json

from gunicorn import util

# The longest request line gunicorn allows; a query string needs far less (model names are
# at most 64 characters, targets 512).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190


def _error_body(status: int, mesg: str) -> tuple[int, str, dict]:
    """Status, reason and our error body for a request gunicorn refused to parse."""
    if mesg.startswith("Request Line is too large"):
        return (
            414,
            "URI Too Long",
            {
                "code": "request_line_too_long",
                "message": f"The request line is too long ({mesg}); send at most "
                f"{limit_request_line} bytes of URL and query string.",
            },
        )
    if status == 431:
        return (
            431,
            "Request Header Fields Too Large",
            {
                "code": "headers_too_large",
                "message": f"The request headers are too large ({mesg[:200]}); send at most "
                f"{limit_request_fields} headers of at most {limit_request_field_size} bytes.",
            },
        )
    return (
        status,
        "Bad Request" if status == 400 else "Error",
        {
            "code": "bad_request" if status < 500 else "internal_error",
            "message": f"The HTTP request could not be parsed: {mesg[:200]}.",
        },
    )


def write_json_error(sock, status_int, reason, mesg) -> None:
    """gunicorn's util.write_error, answering JSON instead of HTML."""
    status, reason, error = _error_body(int(status_int), str(mesg))
    body = json.dumps({"error": error}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin1") + body)


util.write_error = write_json_error
