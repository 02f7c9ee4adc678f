"""What every browser test shares: Debian's chromium driven by Playwright, kept on loopback.

A Playwright browser download is not possible here; the tests skip (saying why) where
``/usr/bin/chromium`` or the playwright package is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)
playwright_api = pytest.importorskip(
    "playwright.async_api", reason="browser tests need the playwright package (the dev extra)"
)

# SERVERS.md: without the background-networking flags chromium keeps calling home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
