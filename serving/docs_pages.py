"""`/docs` (Swagger UI) and `/redoc` served from vendored assets (serving/static/vendor), never a CDN:
the API's own documentation must work where the service runs, often with no internet."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

VENDOR_DIR = Path(__file__).with_name("static") / "vendor"
ASSETS = "/static/vendor"


def install(app: FastAPI) -> None:
    """Mount the assets and add the two pages (and `/`, leading to /docs); the app must be built with
    docs_url=None, redoc_url=None."""
    app.mount(ASSETS, StaticFiles(directory=VENDOR_DIR), name="vendor")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        """The address uvicorn prints at start-up: lead a person who opens it to the documentation."""
        return RedirectResponse("/docs")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/swagger-ui/favicon-32x32.png",
            # the default validator badge calls validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )
