"""Hub processes' services run in the test's event loop, their API on a free loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress

import httpx

from deploy.ports import free_port  # outside the ephemeral range; tests import it from here
from services.bootstrap.bootstrap import Hub, bootstrap
from services.bootstrap.hub import run_hub
from services.bootstrap.settings import Settings
from tests.helpers import eventually

__all__ = ["free_port", "gateway"]


@asynccontextmanager
async def gateway(
    settings: Settings, services: Iterable[str], *, hub: Hub | None = None
) -> AsyncIterator[str]:
    """``run_hub`` with ``services`` until the block ends; yields the API's URL once it
    answers.  ``hub``: one built by the test (stand-in senders), else from ``settings``."""
    port = free_port()
    settings = settings.model_copy(update={"http_port": port})
    if hub is None:
        hub = bootstrap(settings)
    else:
        hub.settings = settings
    stop = asyncio.Event()
    running = asyncio.create_task(run_hub(hub, stop, services=tuple(services)))
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url) as client:

        async def answers() -> bool:
            if running.done():
                running.result()  # raises what stopped it
            with suppress(httpx.TransportError):
                return (await client.get("/healthz")).status_code == 200
            return False

        await eventually(answers, what="the gateway to answer")
    try:
        yield url
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)
