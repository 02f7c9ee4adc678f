"""The API's documentation pages work on a network without internet.

A call center's network may reach nothing outside: /docs (Swagger UI) and /redoc must load
every script, style and icon from the hub itself. The pages are read as HTML: each ``src`` and
``href`` must be a path on this server, and each must answer with the asset it names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.gateway.api import create_api
from services.gateway.docs import DOCS_ASSETS_DIR

DOC_PAGES = ["/docs", "/redoc"]
# Any absolute or protocol-relative URL: a page naming one would reach outside the hub.
ABSOLUTE_URL = re.compile(r"(?:https?:)?//[\w.-]+", re.IGNORECASE)
# What a Content-Security-Policy may allow: this origin and in-page content, no other host.
IN_PAGE_SOURCES = {"'self'", "'unsafe-inline'", "'none'", "data:", "blob:"}
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".svg": ("image/svg+xml",),
    ".png": ("image/png",),
}


class _References(HTMLParser):
    """Every ``src`` and ``href`` in a page, whatever the tag."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value or "" for name, value in attrs if name in ("src", "href")]


def references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    parser.close()
    return parser.urls


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    hub = bootstrap(Settings(data_dir=tmp_path))
    api = create_api(view=hub.timeline_view(), users=hub.user_directory(), routers=[])
    with TestClient(api) as client:
        yield client


@pytest.mark.parametrize("page", DOC_PAGES)
def test_doc_page_references_only_assets_on_the_hub(client: TestClient, page: str) -> None:
    response = client.get(page)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = references(response.text)
    assert urls, f"{page} references no script or style at all"
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url!r}"
    # Inline scripts too (the Swagger UI set-up names the OpenAPI document and redirect URL).
    assert ABSOLUTE_URL.findall(response.text) == []


@pytest.mark.parametrize("page", DOC_PAGES)
def test_every_asset_a_doc_page_references_is_served(client: TestClient, page: str) -> None:
    for url in references(client.get(page).text):
        asset = client.get(url)

        assert asset.status_code == 200, url
        expected = CONTENT_TYPES[Path(url).suffix]
        assert asset.headers["content-type"].startswith(expected), (url, asset.headers)
        assert len(asset.content) > 100, url


@pytest.mark.parametrize("page", [*DOC_PAGES, "/docs/oauth2-redirect"])
def test_doc_pages_tell_the_browser_to_load_from_the_hub_only(
    client: TestClient, page: str
) -> None:
    policy = client.get(page).headers["content-security-policy"]

    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    sources = {source for d in directives.values() for source in d.split()}
    assert sources <= IN_PAGE_SOURCES, sources - IN_PAGE_SOURCES


def test_swagger_ui_loads_the_served_openapi_document(client: TestClient) -> None:
    page = client.get("/docs").text
    document = client.get("/openapi.json")

    assert "url: '/openapi.json'" in page
    assert document.status_code == 200
    assert "/v1/lookup" in document.json()["paths"]


def test_doc_pages_are_not_operations_of_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert not [p for p in paths if p.startswith(("/docs", "/redoc", "/static"))]


def test_swagger_ui_oauth2_redirect_page_is_served_without_outside_references(
    client: TestClient,
) -> None:
    response = client.get("/docs/oauth2-redirect")

    assert response.status_code == 200
    assert references(response.text) == []
    assert ABSOLUTE_URL.findall(response.text) == []


def test_behind_a_proxy_prefix_the_pages_load_their_assets_under_it(tmp_path: Path) -> None:
    hub = bootstrap(Settings(data_dir=tmp_path))
    api = create_api(view=hub.timeline_view(), users=hub.user_directory(), routers=[])
    with TestClient(api, root_path="/switchboard") as client:
        for page in DOC_PAGES:
            html = client.get(page).text

            assert all(url.startswith("/switchboard/static/docs/") for url in references(html))
            assert "/switchboard/openapi.json" in html


def test_the_vendored_assets_ship_with_their_licences() -> None:
    for licence in ["swagger-ui/LICENSE", "swagger-ui/NOTICE", "redoc/LICENSE"]:
        assert (DOCS_ASSETS_DIR / licence).stat().st_size > 0, licence
    assert (DOCS_ASSETS_DIR / "VENDORED.txt").read_text().count("@") >= 2
