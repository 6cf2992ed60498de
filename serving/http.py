"""The HTTP protocol the API is served with: uvicorn's, plus a deadline for request headers, an arrival
stamp and `GET /health` answered at the read. `PROTOCOL` names it for uvicorn's `http=`: the one on
uvicorn's httptools protocol (C parser, serving/http_httptools.py) where httptools is installed (it comes
with uvicorn[standard]), else the one on uvicorn's pure-Python h11 protocol below; the httptools one
costs markedly less CPU per request (docs/api.md, "Slow clients").

uvicorn cancels its keep-alive timer on any byte received and a new connection has no timer at all, so a
client sending a header byte now and then holds a connection (and its memory) forever. These protocols
give every request `timeout_keep_alive` seconds, from the moment the connection opens or the previous
response ends, to complete its headers; trickling bytes does not reset the deadline. Its body, if any,
then has that long plus a second per SLOWEST_BODY_BYTES_PER_SECOND of it. A client that stops reading its
answer has that long to read again (`HeaderDeadline.pause_writing`).

They also stamp each request with the moment its headers were read off the socket (`ARRIVED` in the
request state, `time.monotonic()`). Every request of a burst is read in one pass of the event loop but
reaches the app only after the ones before it have run up to their first wait (in a burst of 200
checkouts at load 12: up to 1.5 s later); a request's database deadline counts from that stamp
(serving.resilience.DeadlineStamp), so time queued on the loop is not granted again.

And they answer `GET /health` themselves, in the same callback that read it (unless the client has left
earlier answers unread: then it waits its turn under flow control like any request, or a client pipelining
checks without reading would make the server buffer every answer), as a load balancer's monitor URI is
answered by the front layer: a request reaches the app only as a task that runs after every
callback already queued on the event loop (under mixed traffic, other requests' steps: about 30 ms p99
between read and app on the 2-core bench host, two thirds of /health's time in the API), and then crosses
the middleware and FastAPI. The liveness answer still comes from the event loop that serves every
request, so a stalled loop still fails it; it is not in the app's request metrics or access log. A check
pipelined behind a request still being answered waits its turn, so responses keep the requests' order.
"""

from __future__ import annotations

import asyncio
import time
from importlib.util import find_spec

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

ARRIVED = "arrived"  # request-state key: when the request's headers were read (time.monotonic())
#: Request line and headers a connection may send before they are complete (h11's own default): the
#: httptools parser has no bound of its own and kept 100 MB of one header in memory.
MAX_HEADER_BYTES = 16 * 1024
#: A request body must arrive within the header timeout plus one second per this many bytes of it (of at
#: most BODY_WAIT_CAP_BYTES; a chunked body counts as that): trickled a byte at a time, one held its
#: connection and request task forever.
SLOWEST_BODY_BYTES_PER_SECOND = 16 * 1024
BODY_WAIT_CAP_BYTES = 1 << 20
HEALTH_PATH = b"/health"
HEALTH_BODY = b'{"status":"ok"}'  # serving.routers.health answers the same where this protocol is not used
HEALTH_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(HEALTH_BODY)).encode()),
]


def bodyless(headers) -> bool:
    """No request body announced: (name, value) pairs, names lower-case."""
    return all(
        name not in (b"content-length", b"transfer-encoding") or value == b"0" for name, value in headers
    )


def body_length(headers) -> int | None:
    """The declared Content-Length (None for a chunked body or an unreadable length)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class HeaderDeadline:
    """The header deadline (module docstring), for a uvicorn HTTP protocol: armed when the connection
    opens (by `connection_made`) or a response ends (by the protocol), disarmed by the protocol when the
    next request's headers are complete, never by bytes arriving. Then the body's deadline, if it has one
    (`_expect_body`), until the protocol has read all of it (`_body_read`)."""

    _header_deadline: asyncio.TimerHandle | None = None
    _body_deadline: asyncio.TimerHandle | None = None
    _write_deadline: asyncio.TimerHandle | None = None
    _header_bytes = 0  # read since the deadline was armed, while the headers are still incomplete

    def _arm(self) -> None:
        self._disarm()
        self._header_bytes = 0
        self._header_deadline = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _expect_body(self, headers) -> None:
        """The request's headers are complete and announce a body: it must be read by its deadline."""
        self._body_read()
        size = body_length(headers)
        size = BODY_WAIT_CAP_BYTES if size is None else min(size, BODY_WAIT_CAP_BYTES)
        seconds = self.timeout_keep_alive + size / SLOWEST_BODY_BYTES_PER_SECOND
        self._body_deadline = self.loop.call_later(seconds, self._body_too_slow)

    def _body_read(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _body_too_slow(self) -> None:
        """Close the connection: the app reading the body is told the client went away."""
        self._body_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def pause_writing(self) -> None:
        """The client stopped reading (the transport's buffer is full): it has `timeout_keep_alive` to
        read again. Unbounded, a client that never read a large answer held it in memory for ever (the
        keep-alive close waits for the buffer to drain): 16 MB per connection, still held after 15 s."""
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(self.timeout_keep_alive, self._write_stalled)

    def resume_writing(self) -> None:
        self._writing()
        super().resume_writing()

    def _writing(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _write_stalled(self) -> None:
        """Drop the connection and what it still buffers (`close` would wait for the client to read it)."""
        self._write_deadline = None
        self.transport.abort()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._body_read()
        self._writing()
        super().connection_lost(exc)


class HeaderTimeoutH11Protocol(HeaderDeadline, H11Protocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._parse = self.conn.next_event
        self.conn.next_event = self._next_event  # uvicorn's handle_events reads events through this

    def _next_event(self):
        """h11's next event, after answering any health checks that come first (pipelined ones too: h11
        parses a request only once the previous response is complete)."""
        while True:
            event = self._parse()
            if not (
                type(event) is h11.Request
                and event.method == b"GET"
                and event.target == HEALTH_PATH
                and bodyless(event.headers)
                and not self.flow.write_paused  # client not reading its answers: to the app
            ):
                return event
            self._parse()  # the request's EndOfMessage: it has no body
            headers = self.server_state.default_headers + HEALTH_HEADERS
            self.transport.write(
                self.conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
                + self.conn.send(h11.Data(data=HEALTH_BODY))
                + self.conn.send(h11.EndOfMessage())
            )
            if self.conn.our_state is h11.MUST_CLOSE:  # the client asked to close (or spoke HTTP/1.0)
                self.conn.send(h11.ConnectionClosed())
                self.transport.close()
                self.on_response_complete()
                return h11.NEED_DATA
            self.conn.start_next_cycle()
            self.on_response_complete()

    def data_received(self, data: bytes) -> None:
        arrived, cycle = time.monotonic(), self.cycle
        super().data_received(data)
        if self.cycle is not None and self.cycle is not cycle:  # a request started; its task has not run
            self.cycle.scope.setdefault("state", {})[ARRIVED] = arrived
        if self.conn.their_state is not h11.IDLE:  # the headers are complete
            self._disarm()
        if self.conn.their_state is not h11.SEND_BODY:  # no body, or all of it read
            self._body_read()
        elif self._body_deadline is None and self.cycle is not None:
            self._expect_body(self.cycle.scope["headers"])

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm()  # waiting for the next request's headers


# for uvicorn's `http=` (an import path: importable in every worker)
PROTOCOL = (
    "serving.http_httptools:HeaderTimeoutHttpToolsProtocol"
    if find_spec("httptools") is not None
    else f"{__name__}:HeaderTimeoutH11Protocol"
)


def server_options(
    header_timeout_seconds: float, forwarded_allow_ips: str, shutdown_grace_seconds: float
) -> dict:
    """uvicorn's HTTP options for `crosscart serve`. X-Forwarded-For and -Proto are believed only from the
    proxies named in `forwarded_allow_ips`: uvicorn's default believes them from 127.0.0.1, which is every
    client of an API bound there (its default), so anyone could pick the address its anonymous rate limit
    and failed-key throttle count against by sending the header. On SIGTERM, requests in flight get
    `shutdown_grace_seconds`: uvicorn waits with no limit by default, and one client that never finished
    its body held the exit until the orchestrator killed the process, before the app's shutdown wrote
    what its background writers held."""
    return {
        "timeout_graceful_shutdown": shutdown_grace_seconds,
        "http": PROTOCOL,  # httptools (or h11) + this module: headers complete within the timeout, bounded
        "timeout_keep_alive": max(1, round(header_timeout_seconds)),
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "proxy_headers": bool(forwarded_allow_ips.strip()),
        "forwarded_allow_ips": forwarded_allow_ips.strip() or None,
    }
