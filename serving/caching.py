"""HTTP caching for the public catalog and ranking reads: a strong `ETag` (hash of the body),
`304 Not Modified` when `If-None-Match` matches, and `Cache-Control` (public for anonymous callers,
private for keyed ones, whose answers may differ by role), with `Vary: Authorization`."""

from __future__ import annotations

import hashlib

CACHED_PREFIXES = ("/v1/products", "/v1/rankings", "/v1/categories")
MAX_AGE_SECONDS = 30


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    tags = [t.strip().removeprefix(b"W/") for t in if_none_match.split(b",")]
    return b"*" in tags or etag in tags


class ConditionalGet:
    def __init__(self, app, prefixes: tuple[str, ...] = CACHED_PREFIXES, max_age: int = MAX_AGE_SECONDS):
        self.app, self.prefixes, self.max_age = app, prefixes, max_age

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or not scope["path"].startswith(self.prefixes)
        ):
            return await self.app(scope, receive, send)
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
        if start["status"] != 200:
            await send(start)
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
