"""The outer layer of every HTTP request (pure ASGI): its request id, access line and metrics, and the
recommendation fast path's answers (serving/fastpath.py), in one coroutine with one send wrapper.

Each pure-ASGI layer costs a coroutine, a send closure and a message copy per request; as three layers
(access log, metrics, fast path) with the body-size limit between them, the hottest request paid for four
before its page was looked up. Here the fast path answers first (a GET without a body has nothing for
the size limit, rate-limit headers, conditional GETs or idempotency to do) and its response is written
with the request id in its constant headers, then measured and logged like any other; every other request
goes on to the rest of the middleware and FastAPI.
"""

from __future__ import annotations

import time

from serving.caching import NO_STORE
from serving.fastpath import RecommendationFastPath
from serving.logs import (
    REQUEST_ID,
    REQUEST_ID_HEADER,
    flush_access_lines,
    log_access,
    request_id_of,
    route_template,
)
from serving.middleware import Metrics
from serving.proxies import UntrustedProxyCheck

_JSON = (b"content-type", b"application/json")


class RequestEdge:
    """Request id (`X-Request-ID` taken or made, echoed on the response, bound to every log line of the
    request), the access line (when `access_log`; written when the last body byte is handed to the server),
    the request metrics (route template and status, latency until the app returns), and `fast`'s answers."""

    def __init__(
        self,
        app,
        metrics: Metrics,
        fast: RecommendationFastPath | None = None,
        access_log: bool = True,
        proxy_check: UntrustedProxyCheck | None = None,
    ):
        self.app, self.metrics, self.fast, self.access_log = app, metrics, fast, access_log
        self.proxy_check = proxy_check  # asked until it has seen an untrusted proxy, then dropped

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind != "http":
            if kind != "lifespan" or not self.access_log:
                return await self.app(scope, receive, send)
            try:
                return await self.app(scope, receive, send)
            finally:
                flush_access_lines()
        started = time.perf_counter()
        if self.proxy_check is not None and self.proxy_check.check(scope):
            self.proxy_check = None
        request_id = request_id_of(scope["headers"]) if self.access_log else None
        bound = REQUEST_ID.set(request_id) if request_id is not None else None
        status, logged, template = 500, request_id is None, None
        try:
            body = None
            if self.fast is not None and scope["method"] == "GET":
                body = await self.fast.answer(scope)
            if body is not None:
                status = 200
                headers = [_JSON, (b"content-length", b"%d" % len(body)), NO_STORE]  # a key's page
                if request_id is not None:
                    headers.append((REQUEST_ID_HEADER, request_id.encode()))
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                if not logged:
                    logged, template = True, log_access(scope, request_id, status, started)
                await send({"type": "http.response.body", "body": body})
                return
            header = (REQUEST_ID_HEADER, request_id.encode()) if request_id is not None else None

            async def observe(message):
                nonlocal status, logged, template
                kind = message["type"]
                if kind == "http.response.start":
                    status = message["status"]
                    if header is not None:
                        message = {**message, "headers": [*message.get("headers", ()), header]}
                elif kind == "http.response.body" and not logged and not message.get("more_body", False):
                    # its latency: up to the last byte handed to the server
                    logged, template = True, log_access(scope, request_id, status, started)
                await send(message)

            await self.app(scope, receive, observe)
        finally:
            elapsed = time.perf_counter() - started
            if not logged:
                template = log_access(scope, request_id, status, started)
            elif template is None:
                template = route_template(scope)
            self.metrics.observe(scope["method"], template, status, elapsed)
            if bound is not None:
                REQUEST_ID.reset(bound)
