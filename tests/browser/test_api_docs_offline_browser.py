"""In a real browser with no way out of the machine, the API docs still render.

Debian's chromium (``/usr/bin/chromium``, driven by Playwright; a Playwright browser download
is not possible here) loads /docs and /redoc from the API served by uvicorn on loopback. Every
request to anything but loopback is aborted and recorded, as a locked-down call-center network
would refuse it; the pages must render all the same and must not even try to leave.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.gateway.api import create_api
from tests.browser.chromium import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LOOPBACK_HOSTS,
    needs_chromium,
    playwright_api,
    served_on_loopback,
)

pytestmark = needs_chromium
# ReDoc's sidebar badge, an <img> from its CDN that no option turns off: the docs pages'
# Content-Security-Policy refuses it before any request leaves (services/gateway/docs.py).
REDOC_BADGE = "img-src https://cdn.redoc.ly/redoc/logo-mini.svg"
RENDER_TIMEOUT_MS = 20_000


@pytest.fixture
async def api_url(tmp_path: Path) -> AsyncIterator[str]:
    """The API (with a real SQLite view) on a free loopback port, stopped at teardown."""
    hub = bootstrap(Settings(data_dir=tmp_path))
    api = create_api(view=hub.timeline_view(), users=hub.user_directory(), routers=[])
    async with served_on_loopback(api) as url:
        yield url


# The page's Content-Security-Policy refusals, gathered in the page (they never reach the network).
RECORD_REFUSALS = """
window.refusedByPolicy = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.refusedByPolicy.push(`${e.effectiveDirective} ${e.blockedURI}`);
});
"""


@dataclass
class OfflinePage:
    page: playwright_api.Page
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def refused_by_policy(self) -> list[str]:
        return list(await self.page.evaluate("window.refusedByPolicy"))


@pytest.fixture
async def offline_page() -> AsyncIterator[OfflinePage]:
    """A fresh chromium page whose requests can reach loopback only."""
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            offline = OfflinePage(page)

            async def loopback_only(route: playwright_api.Route) -> None:
                url = route.request.url
                if urlsplit(url).hostname in LOOPBACK_HOSTS:
                    await route.continue_()
                else:
                    offline.blocked.append(url)
                    await route.abort("internetdisconnected")

            await page.route("**/*", loopback_only)
            await page.add_init_script(RECORD_REFUSALS)
            page.on("pageerror", lambda error: offline.errors.append(str(error)))
            yield offline
        finally:
            await browser.close()


async def test_swagger_ui_renders_and_tries_an_operation_without_internet(
    api_url: str, offline_page: OfflinePage
) -> None:
    page = offline_page.page
    await page.goto(f"{api_url}/docs")

    lookup = page.locator("#operations-customers-lookup_v1_lookup_get")
    await lookup.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
    title = page.locator(".swagger-ui .info .title")
    assert "Switchboard" in await title.inner_text()
    # "Try it out" calls the API from the page: the page's policy must let it reach the hub.
    await lookup.locator(".opblock-summary").click()
    await lookup.get_by_role("button", name="Try it out").click()
    await lookup.locator('input[placeholder="address"]').fill("+4930123456789")
    await lookup.get_by_role("button", name="Execute").click()
    status = lookup.locator(".live-responses-table tr.response .response-col_status")
    await status.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
    # Not signed in (no Authorize): the hub answers 401, so the request did reach it.
    assert (await status.inner_text()).strip() == "401"
    assert offline_page.blocked == []
    assert offline_page.errors == []
    assert await offline_page.refused_by_policy() == []


async def test_redoc_renders_the_operations_without_internet(
    api_url: str, offline_page: OfflinePage
) -> None:
    page = offline_page.page
    await page.goto(f"{api_url}/redoc")

    heading = page.get_by_role("heading", name="Switchboard (0.1.0)")
    await heading.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
    lookup = page.locator('[data-section-id="tag/customers/operation/lookup_v1_lookup_get"]')
    await lookup.wait_for(state="attached", timeout=RENDER_TIMEOUT_MS)
    assert offline_page.blocked == []
    assert offline_page.errors == []
    assert set(await offline_page.refused_by_policy()) <= {REDOC_BADGE}
