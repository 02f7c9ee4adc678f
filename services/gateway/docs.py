"""The API's documentation pages (Swagger UI at /docs, ReDoc at /redoc), served offline.

FastAPI's own pages load their scripts, styles and favicon from the internet (a CDN and
fastapi.tiangolo.com); on a call center's locked-down network they stay blank. Here the same
pages, built with FastAPI's ``get_swagger_ui_html``/``get_redoc_html``, point at copies that
ship in this package (``static/docs/``, vendored by ``vendor_docs_assets.sh``, licences beside
them) and are served by the hub itself. The app must be built with ``docs_url=None`` and
``redoc_url=None`` so that FastAPI's CDN pages do not answer first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = [
    "DOCS_ASSETS_DIR",
    "DOCS_ASSETS_URL",
    "DOCS_CONTENT_SECURITY_POLICY",
    "install_offline_docs",
]

DOCS_ASSETS_URL = "/static/docs"
DOCS_ASSETS_DIR = Path(__file__).parent / "static" / "docs"

# Swagger UI's online validator badge would send our document to validator.swagger.io.
NO_ONLINE_VALIDATOR: dict[str, Any] = {"validatorUrl": None}
# The pages may load from the hub only. The browser enforces it, so a reference the bundles
# carry (ReDoc's sidebar badge is an <img> from cdn.redoc.ly, with no option to turn it off) is
# refused before any request leaves, and a future asset version cannot start calling out
# unnoticed. Inline script and styles: FastAPI's page set-up and both UIs need them; data: and
# blob: are in-page (Swagger UI's CSS icons, ReDoc's search worker).
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
    ]
)


def install_offline_docs(
    api: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc"
) -> None:
    """Serve Swagger UI at ``docs_url`` and ReDoc at ``redoc_url`` from the packaged assets."""
    openapi_url = api.openapi_url
    if openapi_url is None:
        raise ValueError("the documentation pages need the OpenAPI document: set openapi_url")
    # StaticFiles checks the folder now: an install without the package data fails at start-up
    # instead of serving blank pages.
    api.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    oauth2_redirect_url = api.swagger_ui_oauth2_redirect_url

    @api.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root_path(request)
        assets = root + DOCS_ASSETS_URL
        return _self_contained(
            get_swagger_ui_html(
                openapi_url=root + openapi_url,
                title=f"{api.title} - Swagger UI",
                swagger_js_url=f"{assets}/swagger-ui/swagger-ui-bundle.js",
                swagger_css_url=f"{assets}/swagger-ui/swagger-ui.css",
                swagger_favicon_url=f"{assets}/favicon.svg",
                oauth2_redirect_url=root + oauth2_redirect_url if oauth2_redirect_url else None,
                init_oauth=api.swagger_ui_init_oauth,
                swagger_ui_parameters={**NO_ONLINE_VALIDATOR, **(api.swagger_ui_parameters or {})},
            )
        )

    if oauth2_redirect_url:

        @api.get(oauth2_redirect_url, include_in_schema=False)
        async def swagger_ui_oauth2_redirect() -> HTMLResponse:
            return _self_contained(get_swagger_ui_oauth2_redirect_html())

    @api.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = _root_path(request)
        return _self_contained(
            get_redoc_html(
                openapi_url=root + openapi_url,
                title=f"{api.title} - ReDoc",
                redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc/redoc.standalone.js",
                redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.svg",
                with_google_fonts=False,  # ReDoc falls back to the browser's sans-serif
            )
        )


def _self_contained(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
    return page


def _root_path(request: Request) -> str:
    """The prefix a reverse proxy serves the hub under ('' when none), as FastAPI's pages use."""
    return str(request.scope.get("root_path", "")).rstrip("/")
