"""Structured JSON logs (structlog) for the API: one access line per request with its request id, the
caller's role and id, route, status and latency; every other log line (uvicorn, SQLAlchemy, ours) goes
through the same processors to the same stream. Secrets never reach a line: API keys, key hashes and
resident ID numbers are masked wherever they appear, whoever logged them.

The access line is on every request's path, so structlog renders it directly (one dict, one
`orjson.dumps`, one write) instead of handing it to the standard library, which would build a LogRecord,
look up the caller's frame and format it a second time."""

from __future__ import annotations

import json
import logging
import os
import re
import time

import orjson
import structlog

REQUEST_ID_HEADER = b"x-request-id"
ACCESS_LOGGER = "crosscart.access"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# API keys (cc_ + 43 url-safe base64 chars), SHA-256 hex digests (key hashes), resident ID numbers; a
# string shorter than the shortest of them (18 characters) cannot hold one and is not scanned
_SECRETS = re.compile(r"cc_[A-Za-z0-9_-]{20,}|\b[0-9a-f]{64}\b|\b\d{17}[\dXx]\b")
_SHORTEST_SECRET = 18
MASK = "[redacted]"


def redact(text: str) -> str:
    return _SECRETS.sub(MASK, text)


def _json(event: dict, default) -> str:
    """structlog's JSON serializer: orjson, or the json module for what orjson refuses (integers beyond 64
    bits): a log call never fails."""
    try:
        return orjson.dumps(event, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(event, default=default)


def _redact_event(_, __, event: dict) -> dict:
    for name, value in event.items():
        if isinstance(value, str) and len(value) >= _SHORTEST_SECRET:
            event[name] = redact(value)
    return event


class _HandlerStream:
    """structlog's output: each rendered line is written to the stream of the root handler that renders
    the other libraries' records, under that handler's lock, so lines of the two never interleave and
    redirecting the handler (`setStream`) moves both."""

    def __init__(self, handler: logging.StreamHandler, name: str | None):
        self.handler, self.name = handler, name

    def msg(self, line: str) -> None:
        handler = self.handler
        with handler.lock:
            try:
                handler.stream.write(line + "\n")
                handler.stream.flush()
            except (OSError, ValueError):  # a closed or broken stream: as `logging` does, the caller goes on
                pass

    debug = info = warning = warn = error = critical = exception = fatal = msg


def configure_logging(level: str = "info", json_format: bool = True) -> None:
    """Render structlog's lines and the standard library's records with the same processors (JSON lines,
    or coloured text for a terminal) onto one stream; idempotent, so every app built in a process may
    call it. Loggers obtained earlier keep the configuration they were first used with."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_crosscart", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._crosscart = True
        root.addHandler(handler)
    renderer = (
        structlog.processors.JSONRenderer(serializer=_json)
        if json_format
        else structlog.dev.ConsoleRenderer()
    )
    # exceptions are text before the redaction sees them; level, logger name and time are ours, not scanned
    redacted = [structlog.processors.format_exc_info, _redact_event]
    stamped = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *redacted, *stamped, renderer],
        logger_factory=lambda name=None, *_: _HandlerStream(handler, name),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.contextvars.merge_contextvars, *redacted, *stamped],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))  # fmt: skip
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


class AccessLog:
    """Pure ASGI middleware: take the request id from `X-Request-ID` (or make one), echo it on the
    response, bind it to every log line of the request, and log the request when it ends."""

    def __init__(self, app):
        self.app = app
        self.log = structlog.get_logger(ACCESS_LOGGER).bind()  # configured by now: the app built it first

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                given = value.decode("latin-1")
                request_id = given if _VALID_REQUEST_ID.fullmatch(given) else None
                break
        if request_id is None:
            request_id = os.urandom(16).hex()
        header = (REQUEST_ID_HEADER, request_id.encode())
        started = time.perf_counter()
        status, logged = 500, False

        def log_request() -> None:
            nonlocal logged
            logged = True
            principal = scope.get("state", {}).get("principal")
            self.log.info(
                "request",
                request_id=request_id,
                method=scope["method"],
                route=route_template(scope),
                path=scope["path"],
                status=status,
                latency_ms=round((time.perf_counter() - started) * 1000, 2),
                role=getattr(principal, "role", None),
                key_id=getattr(principal, "key_id", None),
                shopper_id=getattr(principal, "shopper_id", None),
                merchant_id=getattr(principal, "merchant_id", None),
            )

        async def send_with_id(message):
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            elif kind == "http.response.body" and not logged and not message.get("more_body", False):
                log_request()  # before the last byte leaves: the line exists when the client has the answer
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if not logged:
                log_request()
            structlog.contextvars.unbind_contextvars("request_id")


def route_template(scope) -> str | None:
    """The matched route as a template (`/v1/shoppers/{shopper_id}/orders`): FastAPI records the route
    object without the prefixes of the routers it was included through, so put the matched prefix back."""
    route, path = scope.get("route"), scope["path"]
    regex = getattr(route, "path_regex", None)
    if regex is None:
        return None
    for cut in (i for i, ch in enumerate(path) if ch == "/"):
        if regex.fullmatch(path[cut:]):
            return path[:cut] + route.path
    return route.path
