"""Where a request ends, as gunicorn's event loop decides it (sluice_common/web/request_framing.py),
checked against h11, an independent HTTP/1.1 parser, on requests cut at arbitrary points."""

from __future__ import annotations

import h11
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice_common.web.request_framing import RequestFraming


def h11_request(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes, int]:
    """(headers, body, bytes used) of the first request in `data`, by h11."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    headers, body = None, b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Request):
            headers = list(event.headers)
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            raise AssertionError(f"h11 stopped at {event!r}")
    used = len(data) - len(conn.trailing_data[0])
    return headers, body, used


@st.composite
def requests_(draw):
    body = draw(st.binary(max_size=3000))
    chunked = draw(st.booleans())
    expect = draw(st.booleans())
    head = b"POST /analyze?phase=prod HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
    if expect:
        head += b"Expect: 100-continue\r\n"
    if chunked:
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
        parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        parts = [part for part in parts if part]
        framed = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + framed, expect
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body, expect


@settings(max_examples=300, deadline=None)
@given(requests_(), st.binary(max_size=200), st.lists(st.integers(1, 700), max_size=30))
def test_framing_ends_each_request_where_h11_does(request_expect, after, pieces):
    request, expect = request_expect
    data = request + after  # `after`: the start of a pipelined next request
    framing = RequestFraming(max_body=None)
    body, offset = b"", 0
    for size in [*pieces, len(data)]:
        if framing.done:
            break
        body += framing.feed(data[offset : offset + size])
        offset += size
    assert framing.done and framing.refusal is None
    headers, payload, used = h11_request(data)
    assert framing.extra + data[offset:] == data[used:]  # nothing after the request is lost
    assert framing.expects_continue == expect
    replayed = framing.head + body
    assert b"100-continue" not in framing.head  # the event loop answered it
    again, payload_again, _ = h11_request(replayed)
    assert payload_again == payload
    assert [h for h in again if h[0] != b"expect"] == [h for h in headers if h[0] != b"expect"]


def test_a_declared_size_over_the_limit_is_refused_before_any_body():
    framing = RequestFraming(max_body=1000)
    framing.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
    assert framing.refusal.status == 413 and "MAX_UPLOAD_MB" in framing.refusal.message


def test_a_chunked_body_over_the_limit_is_refused_as_it_grows():
    framing = RequestFraming(max_body=1000)
    framing.feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert framing.refusal is None
    framing.feed(b"400\r\n" + b"x" * 1024)
    assert framing.refusal.status == 413


def test_a_chunk_announced_over_the_limit_is_refused_before_its_bytes():
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    huge = RequestFraming(max_body=1000)
    huge.feed(head + b"10000000000\r\n")  # 1 TiB announced, nothing of it sent
    assert huge.refusal.status == 413 and huge.body_received < 100
    summed = RequestFraming(max_body=1000)
    summed.feed(head + b"1f4\r\n" + b"x" * 500 + b"\r\n")
    assert summed.refusal is None
    summed.feed(b"1f5\r\n")  # 500 + 501 announced: over 1000
    assert summed.refusal.status == 413
    under = RequestFraming(max_body=1000)  # the limit counts the framing's bytes too
    under.feed(head + b"384\r\n" + b"x" * 900 + b"\r\n0\r\n\r\n")
    assert under.refusal is None and under.done


def test_ambiguous_framing_is_refused():
    for head in (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
    ):
        framing = RequestFraming(max_body=None)
        framing.feed(head)
        assert framing.refusal is not None and framing.refusal.status == 400, head
    framing = RequestFraming(max_body=None)
    framing.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert framing.refusal.status == 400 and "hexadecimal" in framing.refusal.message


def test_a_head_past_gunicorns_limits_is_handed_on_for_gunicorn_to_refuse():
    framing = RequestFraming(max_body=None)
    framing.feed(b"GET /" + b"x" * 900_000)
    assert framing.done and framing.head.startswith(b"GET /")


def gunicorn_body(data: bytes) -> bytes:
    """The body gunicorn's own parser reads from exactly `data` (NoMoreData if it would wait
    on the socket for more)."""
    from gunicorn.config import Config
    from gunicorn.http.parser import RequestParser

    request = next(iter(RequestParser(Config(), iter([data]), ("127.0.0.1", 1))))
    body = b""
    while chunk := request.body.read(8192):
        body += chunk
    return body


LINE_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=40), max_size=4),
    st.lists(LINE_ENDS, min_size=10, max_size=10),
    st.lists(st.integers(1, 50), max_size=20),
)
def test_a_chunked_body_the_loop_calls_complete_is_complete_for_gunicorn(parts, ends, pieces):
    # The loop hands a request to a thread once it is whole; gunicorn's reader must then find
    # it whole too, or the thread waits on the socket (chunk lines ending in a bare LF did).
    lines = [b"%x" % len(part) for part in parts] + [b"0"]
    body = b""
    for i, part in enumerate(parts):
        body += lines[i] + ends[2 * i] + part + ends[2 * i + 1]
    body += b"0" + ends[-2] + ends[-1]
    head = b"POST /analyze HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    framing, offset, received = RequestFraming(max_body=None), 0, b""
    data = head + body
    for size in [*pieces, len(data)]:
        if framing.done or framing.refusal:
            break
        received += framing.feed(data[offset : offset + size])
        offset += size
    if set(ends) == {b"\r\n"}:  # every well-framed body is taken whole
        assert framing.done and framing.refusal is None
    if framing.done and framing.refusal is None:
        assert gunicorn_body(framing.head + received) == b"".join(parts)
    elif framing.refusal is not None:
        assert framing.refusal.status == 400
    # else still waiting for a line end: the loop holds it, and the rate rule ends it


def test_chunk_lines_ending_in_a_bare_lf_are_refused():
    for body in (b"1\na\n0\n\n", b"1\r\na\r\n0\r\n\n", b"1\r\na\n0\r\n\r\n"):
        framing = RequestFraming(max_body=None)
        framing.feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        assert framing.refusal is not None and "bare LF" in framing.refusal.message, body
