"""``/docs`` (Swagger UI) and ``/redoc`` served with local assets: FastAPI's defaults load
them from a CDN, which leaves a blank page on an air-gapped cluster.

The JavaScript and CSS come from the ``fastapi-offline`` package (part of the ``serve`` extra),
which ships Swagger UI and ReDoc's dist files inside the wheel; the pages are FastAPI's own
``get_swagger_ui_html`` / ``get_redoc_html`` pointed at them.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the assets are mounted.
ASSETS_URL = "/docs-assets"
#: Swagger UI options: no validator badge (it would fetch an image from swagger.io).
SWAGGER_UI_PARAMETERS: dict[str, Any] = {"validatorUrl": None}


def assets_dir() -> str:
    """The folder of ``fastapi-offline``'s bundled Swagger UI / ReDoc files."""
    return str(resources.files("fastapi_offline") / "static")


def add_offline_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` from local assets (``app`` built with ``docs_url=None,
    redoc_url=None``)."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
