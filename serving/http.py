"""The HTTP protocol the API is served with: uvicorn's h11 protocol plus a deadline for request headers.

uvicorn cancels its keep-alive timer on any byte received and a new connection has no timer at all, so a
client sending a header byte now and then holds a connection (and its memory) forever. This protocol
gives every request `timeout_keep_alive` seconds, from the moment the connection opens or the previous
response ends, to complete its headers; trickling bytes does not reset the deadline.

It also stamps each request with the moment its headers were read off the socket (`ARRIVED` in the
request state, `time.monotonic()`). Every request of a burst is read in one pass of the event loop but
reaches the app only after the ones before it have run up to their first wait (in a burst of 200
checkouts at load 12: up to 1.5 s later); a request's database deadline counts from that stamp
(serving.resilience.DeadlineStamp), so time queued on the loop is not granted again.
"""

from __future__ import annotations

import asyncio
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

ARRIVED = "arrived"  # request-state key: when the request's headers were read (time.monotonic())


class HeaderTimeoutH11Protocol(H11Protocol):
    _header_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        arrived, cycle = time.monotonic(), self.cycle
        super().data_received(data)
        if self.cycle is not None and self.cycle is not cycle:  # a request started; its task has not run
            self.cycle.scope.setdefault("state", {})[ARRIVED] = arrived
        if self.conn.their_state is not h11.IDLE:  # the headers are complete
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm()  # waiting for the next request's headers

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


PROTOCOL = f"{__name__}:HeaderTimeoutH11Protocol"  # for uvicorn's `http=` (importable in every worker)
