"""The web console under /console: marketers plan and measure campaigns, data scientists run experiments
and models, admins review merchants and keys, merchants see their shop and run keyword ads.

Server-rendered Jinja2 pages with htmx (vendored, no CDN) and server-side SVG charts. Every action calls
the API's own router functions and services with the signed-in principal, after the same role check
(`serving.deps.CAPABILITIES`), so the console has no rule set of its own.
"""

from __future__ import annotations

import json
import logging

from fastapi import Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles

from crosscart.settings import Settings
from serving.console import admin, campaigns, coupons, home, keyword_ads, science, shop
from serving.console.auth import Forbidden, Sessions, SignInRequired, TooManyRequests, verify_csrf
from serving.console.web import HERE, KeptForm, redirect, render, templates
from serving.errors import PROBLEM_JSON
from serving.logs import REQUEST_ID
from serving.security import PrincipalCache

log = logging.getLogger(__name__)

PREFIX = "/console"
#: On every console response: no other site may frame a page (clickjacking), nor a browser guess a type.
SECURITY_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)
#: Only the console's own files run or style a page: no inline script, handler or style (an injected
#: `<script>` or `onclick` does nothing), no plugin, no `<base>` redirecting relative URLs, forms post
#: only to the console, and no framing. htmx is told not to add its indicator `<style>` nor to eval
#: (`base.html`'s htmx-config); the slider's handler is in static/console.js.
CONTENT_SECURITY_POLICY = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeaders:
    """Pure ASGI middleware adding SECURITY_HEADERS to the responses under the console's prefix, and
    CONTENT_SECURITY_POLICY to those without a policy of their own (plots bring a stricter, sandboxed
    one, `serving.routers.models.PLOT_HEADERS`, whose inline SVG styles the console's would block)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            return await self.app(scope, receive, send)

        async def add_headers(message):
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), *SECURITY_HEADERS]
                if not any(name.lower() == b"content-security-policy" for name, _ in headers):
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, add_headers)


#: Page titles for the statuses a console user meets as an API problem; others keep the problem's title.
PROBLEM_TITLES = {
    404: "Not found",
    409: "Not done",
    413: "Too large",
    422: "Not accepted",
    500: "Something went wrong",
    503: "Unavailable",
}


def problem_page(status: int, body: bytes, path: str) -> bytes:
    """The console's error page for an API problem document (status, title, detail)."""
    try:
        problem = json.loads(body)
    except ValueError:
        problem = {}
    detail = problem.get("detail") or "The request could not be answered."
    if status == 404 and detail == "Not Found":  # no route: say which address
        detail = f"There is no console page at {path}."
    title = PROBLEM_TITLES.get(status) or problem.get("title") or "Error"
    return templates.get_template("error.html").render(title=title, message=detail, path=path).encode()


def crash_page(path: str) -> bytes:
    """The console's error page for a crash: what happened in a person's words and the request id (the
    log line's `request_id`, the response's X-Request-ID), never the exception itself."""
    message = "The console failed to answer this request. Try again; if it keeps failing, tell support."
    return (
        templates.get_template("error.html")
        .render(title=PROBLEM_TITLES[500], message=message, path=path, request_id=REQUEST_ID.get())
        .encode()
    )


class ProblemPages:
    """Pure ASGI middleware: a problem document (application/problem+json) answered under the console's
    prefix becomes the console's error page, same status and headers. The console's routes reuse the
    API's code, whose refusals the app's handlers turn into problem JSON: an unknown address, a malformed
    query, an unknown id or a busy database showed a person raw JSON. An exception no handler answers
    (a crash, which Starlette answered with a bare "Internal Server Error") is logged here, with its
    traceback and the request id, and answered with the error page naming that id. Static files are left
    alone."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX) or path.startswith(f"{PREFIX}/static/"):
            return await self.app(scope, receive, send)
        start: dict | None = None
        body = b""

        async def to_page(message):
            nonlocal start, body
            if message["type"] == "http.response.start":
                types = [v for k, v in message.get("headers", ()) if k.lower() == b"content-type"]
                if types and types[0].split(b";")[0].strip() == PROBLEM_JSON.encode():
                    start = message
                    return
            if start is None:
                return await send(message)
            body += message.get("body", b"")
            if message.get("more_body"):
                return
            page = problem_page(start["status"], body, path)
            kept = [
                (k, v)
                for k, v in start.get("headers", ())
                if k.lower() not in (b"content-type", b"content-length")
            ]
            headers = [
                *kept,
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(page)).encode()),
            ]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": page})

        started = False

        async def tracked(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await to_page(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            if started:  # part of a response is out: the server can only drop the connection
                raise
            log.exception("console request failed")  # its request id leads to the access line (path)
            page = crash_page(path)
            headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"%d" % len(page))]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": page})


def install(app: FastAPI, settings: Settings, principals: PrincipalCache) -> None:
    """Mount the console on `app`: its routes, static files, security headers, problem pages and the
    403 / sign-in handling. The sessions' memory follows `principals` (the API's key cache): what it
    discards (a revoked key, an ended session), here or pushed from another replica, goes there too."""
    app.add_middleware(ProblemPages)
    app.add_middleware(SecurityHeaders)  # outside ProblemPages: its pages get the headers too
    app.state.console_sessions = Sessions(
        settings.console_secret,
        secure=settings.console_secure_cookie,
        max_age_seconds=int(settings.console_session_hours * 3600),
        stale_seconds=settings.auth_cache_stale_seconds,
    )
    principals.follow(app.state.console_sessions.seen)
    app.state.console_reports = campaigns.ReportCache()
    for module in (home, campaigns, coupons, science, admin, shop, keyword_ads):
        app.include_router(
            module.router, prefix=PREFIX, include_in_schema=False, dependencies=[Depends(verify_csrf)]
        )
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden):
        return await render(request, "error.html", status_code=403, title="Not allowed", message=exc.message)

    @app.exception_handler(TooManyRequests)
    async def too_many(request: Request, exc: TooManyRequests):
        wait = exc.decision.reset
        message = f"Too many requests for this key; wait {wait} seconds and reload."
        response = await render(
            request, "error.html", status_code=429, title="Too many requests", message=message
        )
        response.headers.update(exc.decision.headers())
        return response

    @app.exception_handler(KeptForm)
    async def kept_form(request: Request, exc: KeptForm):
        return exc.page

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, _: SignInRequired):
        return redirect(f"{PREFIX}/sign-in?next={request.url.path}")
