"""The web console under /console: marketers plan and measure campaigns, data scientists run experiments
and models, admins review merchants and keys, merchants see their shop and run keyword ads.

Server-rendered Jinja2 pages with htmx (vendored, no CDN) and server-side SVG charts. Every action calls
the API's own router functions and services with the signed-in principal, after the same role check
(`serving.deps.CAPABILITIES`), so the console has no rule set of its own.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles

from crosscart.settings import Settings
from serving.console import admin, campaigns, coupons, home, keyword_ads, science, shop
from serving.console.auth import Forbidden, Sessions, SignInRequired, TooManyRequests, verify_csrf
from serving.console.web import HERE, redirect, render

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


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the console on `app`: its routes, static files, security headers and the 403 / sign-in
    handling."""
    app.add_middleware(SecurityHeaders)
    app.state.console_sessions = Sessions(
        settings.console_secret,
        secure=settings.console_secure_cookie,
        max_age_seconds=int(settings.console_session_hours * 3600),
    )
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

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, _: SignInRequired):
        return redirect(f"{PREFIX}/sign-in?next={request.url.path}")
