"""Run the hub's services in one process: all of them locally (``switchboard up``), or the
chosen ones in production (``switchboard serve <service>``, scaled through Kafka partitions).
The parts come from the one bootstrap (``services/bootstrap/bootstrap.py``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from typing import Any

import uvicorn

from channels.publishing import InteractionPublisher
from services.bootstrap.bootstrap import Hub
from services.bootstrap.health import HubReadiness
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.bootstrap.supervision import supervise

log = logging.getLogger(__name__)

SERVICES = ("recorder", "timeline", "desk", "api", "router", "outbound", "email")


async def run_hub(
    hub: Hub,
    stop: asyncio.Event,
    *,
    services: Iterable[str] = SERVICES,
) -> None:
    """Run the chosen services until ``stop`` is set.

    Each Kafka service is supervised: when Kafka or the store is unavailable, or a service
    fails, it is logged and restarted with back-off while the others (the API above all,
    which answers webhooks 503 meanwhile) keep running.  Only the API failing to serve
    (its port is taken, say) ends the hub.
    """
    settings = hub.settings
    services = set(services)
    tasks: list[asyncio.Task] = []
    follower_stop = threading.Event()
    follower_thread: threading.Thread | None = None
    desk_thread: threading.Thread | None = None
    server: uvicorn.Server | None = None

    states: dict[str, str] = {}  # each supervised service: "ok", or why not (/readyz)
    running: dict[str, Any] = {}  # the current instance of a service, for /readyz

    def supervised(name: str, run: Callable[[], Awaitable[None]]) -> None:
        async def with_topics() -> None:
            await ensure_topics(settings, hub.kafka)
            await run()

        tasks.append(
            asyncio.create_task(supervise(name, with_topics, stop, states=states), name=name)
        )

    if "recorder" in services:

        async def record() -> None:
            running["recorder"] = recorder = hub.recorder()
            await recorder.run(stop)

        supervised("recorder", record)
    if "timeline" in services:
        follower = hub.timeline_follower()
        follower_thread = threading.Thread(
            target=follower.run, args=(follower_stop,), name="timeline", daemon=True
        )
        follower_thread.start()
    if "desk" in services:  # opens and joins conversations from recorded contacts
        desk_follower = hub.desk_follower()
        desk_thread = threading.Thread(
            target=desk_follower.run, args=(follower_stop,), name="desk", daemon=True
        )
        desk_thread.start()
    if "email" in services:
        if hub.channels().mailboxes:

            async def ingest_mail() -> None:
                ingestion = hub.email_ingestion()
                assert ingestion is not None
                await ingestion.run(stop)

            supervised("email", ingest_mail)
        elif services != set(SERVICES):  # asked for explicitly
            log.warning("email: no mailboxes configured (SWITCHBOARD_EMAIL_MAILBOXES)")
    if "outbound" in services:
        supervised("outbound", lambda: hub.dispatcher().run(stop))
    webhook_publisher: InteractionPublisher | None = None
    api_task: asyncio.Task | None = None
    if services & {"api", "router"}:
        view = hub.timeline_view()
        webhook_publisher = hub.publisher()
        # Webhooks answer 503 (the provider retries) until the publisher has connected. Like
        # the others it first reaches Kafka with a cheap admin call (which cleans up after
        # itself when Kafka is down; a producer's failed start leaves one behind).
        supervised("webhook publisher", _connected(webhook_publisher, stop))
        # Presence, routing decisions and call progress from Kafka: the router's board and
        # the screen pops of the agents connected here.
        feed = hub.routing_feed(view)
        supervised("routing feed", lambda: feed.run(stop))
    if "router" in services:
        message_router = hub.message_router(view, webhook_publisher)
        if message_router is None:
            log.info(
                "router: no routing file (SWITCHBOARD_ROUTING_CONFIG); messages wait unassigned"
            )
        else:
            supervised("router", lambda: message_router.run(stop))
    if "api" in services:
        users = hub.user_directory()
        if not users.has_active_admin():
            log.warning(
                "no active admin user: every /v1 request is refused (401). Create one on a "
                "machine with store access: switchboard users add NAME --role admin --token"
            )
        readiness = HubReadiness(hub, states=states, running=running)
        api = hub.api(view=view, publisher=webhook_publisher, users=users, readiness=readiness)
        config = uvicorn.Config(
            api,
            host=settings.http_host,
            port=settings.http_port,
            log_level="warning",
            lifespan="off",
        )
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        api_task = asyncio.create_task(_serve(server, settings), name="api")
        tasks.append(api_task)

    # Everything long-lived exists now: keep it out of the cyclic GC's full collections,
    # which otherwise put 40 ms pauses into webhook answers (measured in bench/webhooks.py).
    gc.collect()
    gc.freeze()
    try:
        stop_wait = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stop_wait and task.exception():
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        if server is not None:
            server.should_exit = True
        follower_stop.set()
        hub.new_events.notify()  # the followers wake and see the stop
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=20)
        if follower_thread is not None:
            follower_thread.join(timeout=10)
        if desk_thread is not None:
            desk_thread.join(timeout=10)
        if webhook_publisher is not None:
            await webhook_publisher.stop()


def _connected(
    publisher: InteractionPublisher, stop: asyncio.Event
) -> Callable[[], Awaitable[None]]:
    async def connect_and_hold() -> None:
        await publisher.start()
        log.info("webhooks publish to Kafka")
        await stop.wait()

    return connect_and_hold


async def _serve(server: uvicorn.Server, settings: Settings) -> None:
    """Serve the API; say where only once it listens (a taken port fails instead)."""
    serving = asyncio.create_task(server.serve())
    # uvicorn has no "listening" event to wait on; this poll lasts only while it starts.
    while not server.started and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if server.started:
        log.info("API on http://%s:%s (OpenAPI at /docs)", settings.http_host, settings.http_port)
    await serving
    if not server.started:
        raise RuntimeError(
            f"the API could not listen on {settings.http_host}:{settings.http_port} "
            "(is the port taken? set SWITCHBOARD_HTTP_PORT)"
        )
