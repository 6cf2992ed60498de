"""HTTP caching, in one place: the public catalog and ranking reads get a strong `ETag` (hash of the body),
`304 Not Modified` when `If-None-Match` matches, and `Cache-Control` (public for anonymous callers,
private for keyed ones, whose answers may differ by role), with `Vary: Authorization`; every other answer
to a key, and every console page, is `no-store`."""

from __future__ import annotations

import hashlib

CACHED_PREFIXES = ("/v1/products", "/v1/rankings", "/v1/categories")
MAX_AGE_SECONDS = 30
#: An answer that is the caller's own: kept by no cache, the browser's (back button, disk) included. Without
#: it, a key's orders, its new API key or a signed-in console page (each with the session's CSRF token)
#: carried no Cache-Control at all.
NO_STORE = (b"cache-control", b"no-store")
CONSOLE, CONSOLE_STATIC = "/console", "/console/static/"


def is_private(scope) -> bool:
    """A request whose answer is the caller's: one with a key, or a console page (not its static files,
    the same for everyone)."""
    path = scope["path"]
    if path.startswith(CONSOLE):
        return not path.startswith(CONSOLE_STATIC)
    return any(name == b"authorization" for name, _ in scope["headers"])


def _no_store(start: dict) -> dict:
    """A response start message with `no-store` unless it says how to cache already."""
    headers = start.get("headers", [])
    if any(name.lower() == b"cache-control" for name, _ in headers):
        return start
    return {**start, "headers": [*headers, NO_STORE]}


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    tags = [t.strip().removeprefix(b"W/") for t in if_none_match.split(b",")]
    return b"*" in tags or etag in tags


class ConditionalGet:
    def __init__(self, app, prefixes: tuple[str, ...] = CACHED_PREFIXES, max_age: int = MAX_AGE_SECONDS):
        self.app, self.prefixes, self.max_age = app, prefixes, max_age

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] not in ("GET", "HEAD") or not scope["path"].startswith(self.prefixes):
            if not is_private(scope):
                return await self.app(scope, receive, send)

            async def no_store(message):
                await send(_no_store(message) if message["type"] == "http.response.start" else message)

            return await self.app(scope, receive, no_store)
        headers = dict(scope.get("headers", ()))
        visibility = b"private" if b"authorization" in headers else b"public"
        start, chunks = None, []

        async def hold(message):
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._finish(
                        send, start, b"".join(chunks), headers.get(b"if-none-match"), visibility
                    )
            else:
                await send(message)

        await self.app(scope, receive, hold)

    async def _finish(self, send, start, body: bytes, if_none_match: bytes | None, visibility: bytes) -> None:
        if start["status"] != 200:  # a refusal: not the shared read, so a key's is its own (no-store)
            await send(_no_store(start) if visibility == b"private" else start)
            await send({"type": "http.response.body", "body": body})
            return
        etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
        extra = [
            (b"etag", etag),
            (b"cache-control", visibility + b", max-age=" + str(self.max_age).encode()),
            (b"vary", b"Authorization"),
        ]
        if if_none_match is not None and _matches(if_none_match, etag):
            await send({"type": "http.response.start", "status": 304, "headers": extra})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({**start, "headers": [*start.get("headers", []), *extra]})
        await send({"type": "http.response.body", "body": body})
