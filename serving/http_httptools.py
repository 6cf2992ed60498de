"""serving.http's protocol on uvicorn's httptools protocol (the C parser `crosscart serve` uses when
httptools is installed): the header deadline, the ARRIVED stamp and `GET /health` answered at the read.

httptools parses every request a read delivers, pipelined ones too, in one `feed_data`; uvicorn starts
the first and queues the rest (`pipeline`) until the response before each is complete. A health check is
answered in the parser's callback only when no request is in flight on the connection and the client reads
its answers; otherwise it is queued like any pipelined request, with `answer_health` as its app, so
responses keep the requests' order and unread answers do not pile up in the server.
"""

from __future__ import annotations

import time

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serving.http import (
    ARRIVED,
    HEALTH_BODY,
    HEALTH_HEADERS,
    HEALTH_PATH,
    MAX_HEADER_BYTES,
    HeaderDeadline,
    bodyless,
)

_HEALTH_TAIL = (
    b"".join(name + b": " + value + b"\r\n" for name, value in HEALTH_HEADERS) + b"\r\n" + HEALTH_BODY
)
_HEALTH_TAIL_CLOSE = b"connection: close\r\n" + _HEALTH_TAIL
_TOO_LARGE_BODY = b"Request headers too large."
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY)
)


async def answer_health(scope, receive, send) -> None:
    """The health answer as an ASGI app, for a check queued behind another request."""
    await send({"type": "http.response.start", "status": 200, "headers": HEALTH_HEADERS})
    await send({"type": "http.response.body", "body": HEALTH_BODY})


class HeaderTimeoutHttpToolsProtocol(HeaderDeadline, HttpToolsProtocol):
    _health: bool | None = None  # the message being parsed is a health check answered here: keep-alive?

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a connection whose headers are still incomplete after more than
        MAX_HEADER_BYTES gets 431 and is closed (the parser would buffer them without limit)."""
        waiting = self._header_deadline  # armed: the next request's headers are not complete yet
        super().data_received(data)
        if waiting is None or self._header_deadline is not waiting:  # none awaited, or now complete
            return
        self._header_bytes += len(data)
        if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._disarm()
            self.transport.write(_TOO_LARGE)
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._disarm()
        if not bodyless(self.headers):
            self._expect_body(self.headers)
        self.scope["state"][ARRIVED] = time.monotonic()
        if self.url != HEALTH_PATH or not self._is_health_check():
            super().on_headers_complete()
            return
        keep_alive = self.parser.should_keep_alive()  # the parser reads on past this request iff true
        if (
            (self.cycle is None or self.cycle.response_complete)
            and (not keep_alive or self.parser.get_http_version() == "1.1")
            and not self.flow.write_paused  # a client not reading its answers: queued, under flow control
        ):
            self._health = keep_alive  # answered when the message completes (the next callback)
            return
        # Behind a request in flight (or HTTP/1.0 keep-alive, which uvicorn closes after the response but
        # the parser does not), or while the client does not read what it was sent: a cycle, queued or
        # started as uvicorn does (its answer waits for the client to read, and reading pauses behind it),
        # whose app is the answer.
        app, self.app = self.app, answer_health
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def _is_health_check(self) -> bool:  # its path is HEALTH_PATH
        return (
            self.parser.get_method() == b"GET" and bodyless(self.headers) and not self.parser.should_upgrade()
        )

    def on_message_complete(self) -> None:
        self._body_read()
        if self._health is None:
            super().on_message_complete()
            return
        keep_alive, self._health = self._health, None
        head = [STATUS_LINE[200]]
        for name, value in self.server_state.default_headers:
            head += (name, b": ", value, b"\r\n")
        self.transport.write(b"".join(head) + (_HEALTH_TAIL if keep_alive else _HEALTH_TAIL_CLOSE))
        self.server_state.total_requests += 1
        if keep_alive:
            self._arm()  # waiting for the next request's headers
        else:
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle.response_complete and not self.transport.is_closing():
            self._arm()  # no later request's headers are complete: waiting for them
