"""Run the hub's services in one process: all of them locally (``switchboard up``), or the
chosen ones in production (``switchboard serve <service>``, scaled through Kafka partitions).
The parts come from the one bootstrap (``services/bootstrap/bootstrap.py``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from channels.publishing import InteractionPublisher
from services import metrics
from services.bootstrap.bootstrap import Hub
from services.bootstrap.health import HubReadiness
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.bootstrap.supervision import supervise
from services.gateway.operations import Drain, monotonic_deadline, ops_app
from services.gateway.pops import PopBoard

log = logging.getLogger(__name__)

SERVICES = ("recorder", "timeline", "desk", "api", "router", "outbound", "email", "campaigns")


async def run_hub(
    hub: Hub,
    stop: asyncio.Event,
    *,
    services: Iterable[str] = SERVICES,
    refuse_s: float | None = None,
) -> None:
    """Run the chosen services until ``stop`` is set, then shut down gracefully.

    Each Kafka service is supervised: when Kafka or the store is unavailable, or a service
    fails, it is logged and restarted with back-off while the others (the API above all,
    which answers webhooks 503 meanwhile) keep running.  Only the API failing to serve
    (its port is taken, say) ends the hub.

    Shutting down (``stop``: SIGTERM, Ctrl-C) takes at most ``settings.drain_seconds``:
    webhooks are refused with 503 + Retry-After for ``refuse_s`` (default
    ``settings.drain_refuse_seconds``: the load balancer sees ``/readyz`` fail and sends them
    elsewhere) while those in flight finish and publish; then the API stops listening, the
    consoles' streams close (they reconnect elsewhere), and the consumers finish the batch
    they hold, commit it and stop.  Nothing acknowledged is lost: a webhook is answered 200
    only once Kafka has it, a record's offset is committed only once the store has it.
    """
    settings = hub.settings
    services = set(services)
    tasks: list[asyncio.Task] = []
    halt = asyncio.Event()  # the services' own stop: set once the API has drained
    follower_stop = threading.Event()
    follower_thread: threading.Thread | None = None
    reach_thread: threading.Thread | None = None
    desk_thread: threading.Thread | None = None
    server: uvicorn.Server | None = None
    drain = Drain()
    pops: PopBoard | None = None

    states: dict[str, str] = {}  # each supervised service: "ok", or why not (/readyz)
    running: dict[str, Any] = {}  # the current instance of a service, for /readyz

    def supervised(name: str, run: Callable[[], Awaitable[None]]) -> None:
        async def with_topics() -> None:
            await ensure_topics(settings, hub.kafka)
            await run()

        tasks.append(
            asyncio.create_task(supervise(name, with_topics, halt, states=states), name=name)
        )

    readiness = HubReadiness(hub, states=states, running=running)
    metrics.watch_store("history", readiness.last_event)
    if "recorder" in services:

        async def record() -> None:
            running["recorder"] = recorder = hub.recorder()
            await recorder.run(halt)

        supervised("recorder", record)
    if "timeline" in services:
        follower = hub.timeline_follower()
        metrics.watch_projection("timeline", lambda: follower.position)
        follower_thread = threading.Thread(
            target=follower.run, args=(follower_stop,), name="timeline", daemon=True
        )
        follower_thread.start()
        # The reachability view: its own tables and position, beside the timeline.
        reach_follower = hub.reachability_follower()
        metrics.watch_projection("reachability", lambda: reach_follower.position)
        reach_thread = threading.Thread(
            target=reach_follower.run, args=(follower_stop,), name="reachability", daemon=True
        )
        reach_thread.start()
    if "desk" in services:  # opens and joins conversations from recorded contacts
        desk_follower = hub.desk_follower()
        metrics.watch_projection("desk", lambda: desk_follower.position)
        desk_thread = threading.Thread(
            target=desk_follower.run, args=(follower_stop,), name="desk", daemon=True
        )
        desk_thread.start()
    if "email" in services:
        if hub.channels().mailboxes:

            async def ingest_mail() -> None:
                ingestion = hub.email_ingestion()
                assert ingestion is not None
                await ingestion.run(halt)

            supervised("email", ingest_mail)
        elif services != set(SERVICES):  # asked for explicitly
            log.warning("email: no mailboxes configured (SWITCHBOARD_EMAIL_MAILBOXES)")
    if "outbound" in services:
        supervised("outbound", lambda: hub.dispatcher().run(halt))
    if "campaigns" in services:  # runs the running campaigns (services/campaigns/host.py)

        async def run_campaigns() -> None:
            running["campaigns"] = host = hub.campaign_host()
            await host.run(halt)

        supervised("campaigns", run_campaigns)
    webhook_publisher: InteractionPublisher | None = None
    if services & {"api", "router"}:
        view = hub.timeline_view()
        webhook_publisher = hub.publisher()
        running["webhook publisher"] = webhook_publisher
        # Webhooks answer 503 (the provider retries) until the publisher has connected. Like
        # the others it first reaches Kafka with a cheap admin call (which cleans up after
        # itself when Kafka is down; a producer's failed start leaves one behind).
        supervised("webhook publisher", _connected(webhook_publisher, halt))
        # Presence, routing decisions and call progress from Kafka: the router's board and
        # the screen pops of the agents connected here.
        feed = hub.routing_feed(view)
        pops = hub.routing(view).pops
        supervised("routing feed", lambda: feed.run(halt))
    if "router" in services:
        message_router = hub.message_router(view, webhook_publisher)
        if message_router is None:
            log.info(
                "router: no routing file (SWITCHBOARD_ROUTING_CONFIG); messages wait unassigned"
            )
        else:
            supervised("router", lambda: message_router.run(halt))
    if "api" in services:
        users = hub.user_directory()
        if not users.has_active_admin():
            log.warning(
                "no active admin user: every /v1 request is refused (401). Create one on a "
                "machine with store access: switchboard users add NAME --role admin --token"
            )
        api = hub.api(
            view=view, publisher=webhook_publisher, users=users, readiness=readiness, drain=drain
        )
        server = _server(api, settings)
        tasks.append(asyncio.create_task(_serve(server, settings, "API"), name="api"))
    else:  # a worker: its probes and metrics only; without them it still works
        server = _server(ops_app(readiness, drain), settings)
        ops = asyncio.create_task(_serve(server, settings, "probes and metrics"), name="ops")
        ops.add_done_callback(_report_ops_failure)

    # Everything long-lived exists now: keep it out of the cyclic GC's full collections,
    # which otherwise put 40 ms pauses into webhook answers (measured in bench/webhooks.py).
    gc.collect()
    gc.freeze()
    ended_by: BaseException | None = None
    try:
        stop_wait = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stop_wait and task.exception():
                ended_by = task.exception()
        stop_wait.cancel()
    finally:
        stop.set()
        left = monotonic_deadline(settings.drain_seconds)
        if "api" in services and ended_by is None:
            await _drain_api(drain, settings, left, refuse_s)
        if server is not None:
            server.should_exit = True
        if pops is not None:
            pops.close_streams()  # the consoles reconnect (to another instance)
        halt.set()
        follower_stop.set()
        hub.new_events.notify()  # the followers wake and see the stop
        await _finish(tasks, left)
        for thread in (follower_thread, reach_thread, desk_thread):
            if thread is not None:
                thread.join(timeout=max(left(), 0.1))
                if thread.is_alive():
                    log.warning("shutdown: the %s follower is still busy; leaving it", thread.name)
        if webhook_publisher is not None:
            await webhook_publisher.stop()  # flushes what the answered webhooks published
    if ended_by is not None:
        raise ended_by


async def _drain_api(
    drain: Drain, settings: Settings, left: Callable[[], float], refuse_s: float | None
) -> None:
    """Refuse new webhooks for a while (``/readyz`` says draining) and let those in flight
    finish."""
    drain.start()
    refuse = settings.drain_refuse_seconds if refuse_s is None else refuse_s
    log.info(
        "shutting down: webhooks answer 503 for %gs, %d in flight",
        min(refuse, left()),
        drain.in_flight,
    )
    await asyncio.sleep(min(refuse, left()))
    if not await drain.settled(left()):
        log.warning("shutdown: %d webhooks still in flight at the deadline", drain.in_flight)


async def _finish(tasks: list[asyncio.Task], left: Callable[[], float]) -> None:
    """Let the services finish what they hold until the deadline; cancel what is left."""
    pending = [t for t in tasks if not t.done()]
    if pending:
        _, late = await asyncio.wait(pending, timeout=max(left(), 0.1))
        for task in late:
            log.warning(
                "shutdown: %s did not finish by the deadline; cancelling it", task.get_name()
            )
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=5)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.debug("%s ended with %r", task.get_name(), task.exception())


def _report_ops_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s; this process works on without its probes and metrics", task.exception())


def _server(app: Any, settings: Settings) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        lifespan="off",
        # In-flight requests get the rest of the deadline; streams are closed before.
        timeout_graceful_shutdown=max(1, int(settings.drain_seconds)),
    )
    return _QuietServer(config)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own SIGTERM/SIGINT handlers: the hub's (``run_hub``'s drain)
    decide when it stops listening.  uvicorn's would close the listener at once, before the
    webhooks in flight were refused-or-finished, and take the signal from the hub."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _connected(
    publisher: InteractionPublisher, stop: asyncio.Event
) -> Callable[[], Awaitable[None]]:
    async def connect_and_hold() -> None:
        await publisher.start()
        log.info("webhooks publish to Kafka")
        await stop.wait()

    return connect_and_hold


async def _serve(server: uvicorn.Server, settings: Settings, what: str) -> None:
    """Serve ``what`` on the configured address; a taken port fails here, as an exception
    (uvicorn's own bind would end the whole process)."""
    host, port = settings.http_host, settings.http_port
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as e:
        raise RuntimeError(
            f"the {what} could not listen on {host}:{port} ({e.strerror or e}; is the port "
            "taken? set SWITCHBOARD_HTTP_PORT)"
        ) from None
    sock.set_inheritable(True)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    # uvicorn has no "listening" event to wait on; this poll lasts only while it starts.
    while not server.started and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if server.started:
        where = f"http://{host}:{sock.getsockname()[1]}"
        log.info("%s on %s%s", what, where, " (OpenAPI at /docs)" if what == "API" else "")
    try:
        await serving
    finally:
        sock.close()
