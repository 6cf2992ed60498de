"""`/docs` (Swagger UI) and `/redoc` served from vendored assets (serving/static/vendor), never a CDN:
the API's own documentation must work where the service runs, often with no internet.

The pages are module-level functions reading the app from the request: FastAPI keeps every endpoint it
classifies in process-wide caches (up to 4,096 callables each), so a closure over the app kept each app
built in the process (tests, reloads) alive with everything it held."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

VENDOR_DIR = Path(__file__).with_name("static") / "vendor"
ASSETS = "/static/vendor"
#: No other site may frame the pages: Swagger UI keeps the key pasted into *Authorize* (an admin's too)
#: and opens an operation from the address, so a framed `/docs` under decoys had the reader's own clicks
#: send a request with that key (clickjacking). Only framing is restricted: the pages' inline scripts run.
NO_FRAMING = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


def root() -> RedirectResponse:
    """The address uvicorn prints at start-up: lead a person who opens it to the documentation."""
    return RedirectResponse("/docs")


def swagger_ui(request: Request) -> HTMLResponse:
    app = request.app
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{ASSETS}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/swagger-ui/favicon-32x32.png",
        # the default validator badge calls validator.swagger.io
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
    )
    page.headers.update(NO_FRAMING)
    return page


def redoc(request: Request) -> HTMLResponse:
    app = request.app
    page = get_redoc_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{ASSETS}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False,
    )
    page.headers.update(NO_FRAMING)
    return page


def install(app: FastAPI) -> None:
    """Mount the assets and add the two pages (and `/`, leading to /docs); the app must be built with
    docs_url=None, redoc_url=None."""
    app.mount(ASSETS, StaticFiles(directory=VENDOR_DIR), name="vendor")
    for path, page in (("/", root), ("/docs", swagger_ui), ("/redoc", redoc)):
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)
