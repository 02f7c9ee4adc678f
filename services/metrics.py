"""The hub's Prometheus metrics, all in one place (``GET /metrics`` of every hub process).

Each process serves its own: the API's on its port, a worker's (``switchboard serve
recorder`` …) on the same port through the small operations app (``ops_app``).  Labels are
bounded (a channel, an event type, a route template, an error class, a partition) and never
personal: no address, no body, no customer id.  ``deploy/grafana-dashboard.json`` draws them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import REGISTRY, Collector

# Latency buckets for what answers people and providers (seconds): 1 ms … 10 s.
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

INTERACTIONS = Counter(
    "switchboard_interactions_recorded",
    "Interactions recorded into the event store (first delivery; retries are duplicates)",
    ["channel", "type"],
)
DUPLICATES = Counter(
    "switchboard_interactions_duplicate",
    "Provider deliveries already recorded (dropped by their provider_ref)",
)
DEAD_LETTERS = Counter(
    "switchboard_dead_letters",
    "Records set aside on the dead-letter topic, by the service and the class of the error",
    ["service", "error"],
)
CONSUMER_LAG = Gauge(
    "switchboard_consumer_lag",
    "Records on a partition not handled yet (its end minus the next offset to handle)",
    ["group", "topic", "partition"],
)
STORE_APPEND = Histogram(
    "switchboard_store_append_seconds",
    "One recorder transaction: a batch of interactions appended with its Kafka positions",
    buckets=_FAST,
)
STORE_BATCH = Histogram(
    "switchboard_store_append_batch_size",
    "Records in one recorder transaction",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
HTTP_SECONDS = Histogram(
    "switchboard_http_request_seconds",
    "HTTP requests answered (webhooks, API, console), by route template and status",
    ["method", "route", "status"],
    buckets=_FAST,
)
HTTP_REFUSED_DRAINING = Counter(
    "switchboard_http_refused_draining",
    "Webhooks answered 503 while the process drains for a shutdown (the provider retries)",
)
SCREEN_POP = Histogram(
    "switchboard_screen_pop_seconds",
    "From the routing decision to the screen pop pushed to the agents' consoles",
    ["channel"],
    buckets=_FAST,
)
OUTBOUND = Counter(
    "switchboard_outbound_sends",
    "Outbound commands handled, by channel and outcome (sent, failed, refused, rejected, "
    "skipped as already done, dead-lettered)",
    ["channel", "outcome"],
)

CAMPAIGN_COMMANDS = Counter(
    "switchboard_campaign_commands",
    "Campaign send commands committed to the outbound topic, by channel and kind (first: the "
    "planned send; fallback: the next channel after a hard failure)",
    ["channel", "kind"],
)


class _Readings(Collector):
    """Gauges read when scraped: the store's last notification id and each projection's
    position (while events arrive, ``switchboard_store_events -
    switchboard_projection_position`` is about the projection's lag)."""

    FAMILIES = {
        "store": ("switchboard_store_events", "The store's last notification id"),
        "projection": (
            "switchboard_projection_position",
            "The last stored event (notification id) a projection has applied (events it "
            "does not follow do not move it)",
        ),
    }

    def __init__(self) -> None:
        self.sources: dict[str, dict[str, Callable[[], int | None]]] = {
            label: {} for label in self.FAMILIES
        }

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for label, (name, help_text) in self.FAMILIES.items():
            family = GaugeMetricFamily(name, help_text, labels=[label])
            for key, read in sorted(self.sources[label].items()):
                try:
                    value = read()
                except Exception:  # the store is down: leave it out rather than fail
                    continue
                if value is not None:
                    family.add_metric([key], value)
            yield family


READINGS = _Readings()
REGISTRY.register(READINGS)


def watch_store(name: str, read: Callable[[], int | None]) -> None:
    """Report ``read()`` (a store's last notification id) as ``switchboard_store_events``."""
    READINGS.sources["store"][name] = read


def watch_projection(name: str, read: Callable[[], int | None]) -> None:
    """Report ``read()`` (a follower's position) as ``switchboard_projection_position``."""
    READINGS.sources["projection"][name] = read


def exposition(accept: str | None, registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The metrics in the format the scraper asks for (``Accept``: OpenMetrics or one of
    Prometheus' text formats; plain text 0.0.4 when it does not say), and its content type."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


class HttpMetrics:
    """ASGI middleware: every HTTP answer's latency by method, route template and status.

    The route is the template FastAPI matched (``/webhooks/twilio/voice``,
    ``/v1/customers/{customer_id}``), never the raw path, so labels stay bounded."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sent(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or _mounted(scope)
            HTTP_SECONDS.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )


def _mounted(scope: dict[str, Any]) -> str:
    """A request no route template matched: its mount (``/console``, ``/docs``) or ``other``."""
    root = scope.get("root_path") or ""
    return f"{root}/*" if root else "other"


def report_lag(consumer: Any, group: str, tp: Any, next_offset: int) -> None:
    """Set the lag of ``tp`` (a TopicPartition) after handling up to ``next_offset``: the
    partition's end as of the consumer's last fetch, minus that offset."""
    end = consumer.highwater(tp)
    if end is not None:
        CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(max(0, end - next_offset))
