"""What every browser test shares: Debian's chromium driven by Playwright, kept on loopback.

A Playwright browser download is not possible here; the tests skip (saying why) where
``/usr/bin/chromium`` or the playwright package is missing.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

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


class _ReadyServer(uvicorn.Server):
    """uvicorn that says when it accepts connections, so the test waits on that, not a sleep."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@asynccontextmanager
async def served_on_loopback(app: ASGIApp) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free loopback port until the block ends; yields its URL."""
    # Bound here on port 0 and handed to uvicorn: the kernel picks a free port and nothing
    # can take it between choosing and listening.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = _ReadyServer(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({serving, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if not server.ready.is_set():
        ready.cancel()
        serving.cancel()
        sock.close()
        pytest.fail("uvicorn did not start serving the API within 30 s")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)
        sock.close()
