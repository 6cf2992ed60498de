"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): body-size limit and rate-limit
headers; the request metrics (recorded by serving/edge.py)."""

from __future__ import annotations

import os
import re
import threading
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from serving.errors import send_problem

if TYPE_CHECKING:
    from serving.refresh import Refreshing


async def _send_413(send, scope, limit: int) -> None:
    await send_problem(send, scope, 413, "body_too_large", f"request body exceeds {limit} bytes")


async def _send_400_framing(send, scope) -> None:
    detail = "a request body framed by both Content-Length and Transfer-Encoding"
    await send_problem(send, scope, 400, "ambiguous_framing", detail, [(b"connection", b"close")])


class BodySizeLimit:
    """Refuse bodies above `max_bytes` with 413: by Content-Length up front; a body without one (chunked)
    is read up to the limit before the app sees it, then replayed. Whether a request has a body is for its
    headers to say, whatever its method: a chunked DELETE (or GET) body once passed unread and unbounded to
    the idempotency layer, which buffered all of it (300 MB in one request). A request naming both a
    Content-Length and a Transfer-Encoding is refused (400, connection closed), as the httptools parser
    refuses it: h11 reads such a body as chunked (RFC 9112 6.3), so `Content-Length: 1` let 100 MB
    through this limit, and a proxy reading the length instead would split the stream elsewhere."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared, chunked = None, False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                declared = int(value) if value.isdigit() else self.max_bytes + 1
            elif name == b"transfer-encoding":
                chunked = True
        if declared is not None and chunked:
            return await _send_400_framing(send, scope)
        if declared is not None:
            if declared > self.max_bytes:
                return await _send_413(send, scope, self.max_bytes)
            return await self.app(scope, receive, send)
        if not chunked:  # no body
            return await self.app(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, receive, send)  # client went away: let the app see it
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await _send_413(send, scope, self.max_bytes)
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RateLimitHeaders:
    """Adds `RateLimit` and `RateLimit-Policy` to every response of a throttled caller (the decision that
    `current_principal` left in the request state); a 429 carries them already."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def add_headers(message):
            if message["type"] == "http.response.start":
                decision = scope.get("state", {}).get("rate_limit")
                headers = message.get("headers", [])
                if decision is not None and not any(k.lower() == b"ratelimit" for k, _ in headers):
                    extra = [(k.lower().encode(), v.encode()) for k, v in decision.headers().items()]
                    message = {**message, "headers": [*headers, *extra]}
            await send(message)

        await self.app(scope, receive, add_headers)


#: How long one exposition answers `/metrics`. Scrapers hold no key, so the route is counted against no
#: limit: asked in a loop, each answer was a fresh exposition of every series (milliseconds of CPU, on the
#: event loop), as fast as any client could ask. Scrapes come every few seconds at most.
EXPOSITION_SECONDS = 1.0
#: The methods requests are counted by; any other is counted as `other`. h11 takes any token as a method,
#: and each made-up one was a series of its own in every worker's registry (and files), for good.
COUNTED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """Request counts and latencies per route template and status, fallbacks, model swaps and the model
    versions served, in the app's own registry.

    With `multiprocess_dir` (prometheus_client's multiprocess mode, which `crosscart serve --workers N`
    turns on through PROMETHEUS_MULTIPROC_DIR), every worker writes its values to files there and `/metrics`
    from any worker reports all workers together."""

    def __init__(self, multiprocess_dir: str = "") -> None:
        self.registry = CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir
        self.requests = Counter(
            "crosscart_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "crosscart_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5),
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "crosscart_recommendation_fallbacks",
            "Recommendation responses served from popularity because no model was available",
            registry=self.registry,
        )
        self.model_swaps = Gauge(
            "crosscart_model_swaps",
            "Times a new recommender version was swapped in (summed over workers)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.model_info = Gauge(
            "crosscart_model_version_info",
            "1 for the registered model version a worker serves (version none: the fallback)",
            ["model", "name", "version"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        # The periodic refreshes (`serving.refresh.Refreshing`): the age of a loop's data is `time() -` its
        # last success, the oldest over live workers; the failures in a row, the most of any worker.
        self.refresh_last_success = Gauge(
            "crosscart_refresh_last_success_timestamp_seconds",
            "When the data a refresh loop serves was read (Unix time; the oldest of the workers')",
            ["loop"],
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.refresh_failing = Gauge(
            "crosscart_refresh_consecutive_failures",
            "Refreshes of a loop failed since its last success (the most of the workers')",
            ["loop"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.refresh_failures = Counter(
            "crosscart_refresh_failures",
            "Failed refreshes by loop and `failure_code`",
            ["loop", "code"],
            registry=self.registry,
        )
        self._served: dict[str, tuple[str, str]] = {}
        self._series: dict[tuple[str, str, int], tuple] = {}  # labelled children: `labels()` costs a lock
        self._exposed: tuple[float, bytes] | None = None  # (when, text) of the last exposition
        self._exposing = threading.Lock()

    def observe(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """Count one request by route template (None: it matched no route), method and status, and its
        latency."""
        key = (method if method in COUNTED_METHODS else "other", route, status)
        series = self._series.get(key)
        if series is None:  # bounded: route templates x counted methods x statuses
            template = "unmatched" if route is None else route
            series = self._series[key] = (
                self.requests.labels(key[0], template, str(status)),
                self.latency.labels(template),
            )
        series[0].inc()
        series[1].observe(seconds)

    def served(self, model: str, name: str, version: str | None) -> None:
        """Record that `model` (recommender, uplift, ...) now serves `name` at `version`."""
        label = (name, version or "none")
        previous = self._served.get(model)
        if previous == label:
            return
        if previous is not None:  # kept at 0, not removed: multiprocess files cannot drop a series
            self.model_info.labels(model, *previous).set(0)
        self.model_info.labels(model, *label).set(1)
        self._served[model] = label

    def refreshed(self, loop: Refreshing) -> None:
        """Record a refresh of `loop`, successful or not (its `on_refresh`)."""
        self.refresh_failing.labels(loop.name).set(loop.failures)
        if loop.failures:
            self.refresh_failures.labels(loop.name, loop.error_code).inc()
        elif loop.last_success is not None:  # never before: a child is 0 at once, the minimum in multiprocess
            self.refresh_last_success.labels(loop.name).set(loop.last_success)

    def exposition(self) -> bytes:
        """The Prometheus text of this process, or of every worker in multiprocess mode, at most
        `EXPOSITION_SECONDS` old: callers at once wait for one exposition."""
        with self._exposing:
            now = time.monotonic()
            if self._exposed is None or now - self._exposed[0] >= EXPOSITION_SECONDS:
                self._exposed = (now, self._expose())
            return self._exposed[1]

    def _expose(self) -> bytes:
        if not self.multiprocess_dir:
            return generate_latest(self.registry)
        _forget_dead_workers(self.multiprocess_dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)

    def close(self) -> None:
        """A worker stopping: its live gauges stop counting."""
        if self.multiprocess_dir:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)


_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def _forget_dead_workers(directory: str) -> None:
    """Mark dead the workers whose live gauges are in `directory` but whose process is gone. A worker
    killed outright (the OOM killer, SIGKILL) never runs `Metrics.close`, and uvicorn's replacement has
    another pid: the dead worker's last values stayed in every live gauge for good (its refresh timestamp
    the oldest, so a loop's data age grew for ever; its failures in a row; the version it served, beside
    the one now served). Checked at each scrape, a few files; a pid reused meanwhile keeps them. Two
    workers scraping at once both find them, and the second to remove a file finds it gone (its scrape
    failed): it looks again, for fewer files each time."""
    pids = {int(m.group(1)) for name in os.listdir(directory) if (m := _LIVE_GAUGE_FILE.fullmatch(name))}
    for pid in pids - {os.getpid()}:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            while True:
                try:
                    multiprocess.mark_process_dead(pid, directory)
                    break
                except FileNotFoundError:  # another worker's scrape removed one first
                    continue
        except PermissionError:  # alive, another user's
            pass
