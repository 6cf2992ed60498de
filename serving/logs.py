"""Structured JSON logs (structlog) for the API: one access line per request with its request id, the
caller's role and id, route, status and latency; every other log line (uvicorn, SQLAlchemy, ours) goes
through the same JSON renderer. Secrets never reach a line: API keys, key hashes and resident ID numbers
are masked wherever they appear, whoever logged them."""

from __future__ import annotations

import logging
import re
import time
import uuid

import structlog

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# API keys (cc_ + 43 url-safe base64 chars), SHA-256 hex digests (key hashes), resident ID numbers
_SECRETS = re.compile(r"cc_[A-Za-z0-9_-]{20,}|\b[0-9a-f]{64}\b|\b\d{17}[\dXx]\b")
MASK = "[redacted]"

access_log = structlog.get_logger("crosscart.access")


def redact(text: str) -> str:
    return _SECRETS.sub(MASK, text)


def _redact_event(_, __, event: dict) -> dict:
    for name, value in event.items():
        if isinstance(value, str):
            event[name] = redact(value)
    return event


def configure_logging(level: str = "info", json_format: bool = True) -> None:
    """Route structlog and the standard library through one renderer (JSON lines, or coloured text for a
    terminal); idempotent, so every app built in a process may call it."""
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact_event,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer = structlog.processors.JSONRenderer() if json_format else structlog.dev.ConsoleRenderer()
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=[
        structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer,
    ])  # fmt: skip
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_crosscart", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._crosscart = True
        root.addHandler(handler)
    handler.setFormatter(formatter)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


class AccessLog:
    """Pure ASGI middleware: take the request id from `X-Request-ID` (or make one), echo it on the
    response, bind it to every log line of the request, and log the request when it ends."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = next((v for n, v in scope.get("headers", ()) if n == REQUEST_ID_HEADER), b"").decode(
            "latin-1"
        )
        request_id = given if _VALID_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        started = time.perf_counter()
        status, logged = 500, False

        def log_request() -> None:
            nonlocal logged
            logged = True
            principal = scope.get("state", {}).get("principal")
            access_log.info(
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
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())],
                }
            elif (
                message["type"] == "http.response.body" and not message.get("more_body", False) and not logged
            ):
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
