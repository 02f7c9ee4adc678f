"""``GET /metrics``: Prometheus' text format, counters that move with the traffic, no personal
data; and a process without the API (a worker) serves its probes and metrics too."""

from __future__ import annotations

from collections.abc import Iterable

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from services.bootstrap.settings import Settings
from tests.gateways import gateway
from tests.helpers import eventually, recorded_to_end

TOKEN = "cti-token-for-metrics"
CALLER = "+493055598765"


@pytest.fixture
def store_url(tmp_path) -> str:
    """The metrics are the services'; the stores are tested on both elsewhere."""
    return f"sqlite:///{tmp_path / 'history.db'}"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and labels (the official parser: it fails on
    anything that is not the text format)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def total(found: dict, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and want <= set(ls))


def calls(ids: Iterable[str]) -> list[dict[str, str]]:
    return [
        {
            "event": "newCall",
            "call_id": call_id,
            "direction": "inbound",
            "from": CALLER,
            "to": "+493055500000",
        }
        for call_id in ids
    ]


async def test_metrics_parse_and_move_with_webhooks_records_and_dead_letters(
    hub_settings: Settings,
) -> None:
    settings = hub_settings.model_copy(update={"cti_token": SecretStr(TOKEN)})
    async with (
        gateway(settings, ("api", "recorder", "timeline")) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):

        async def publishing() -> bool:
            checks = (await client.get("/readyz")).json().get("checks", {})
            return checks.get("webhook publisher") == "ok"

        await eventually(publishing, timeout=60, what="the webhooks' publisher to connect")
        before = samples((await client.get("/metrics")).text)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        events = calls(f"metrics-{i}" for i in range(5))
        for event in [*events, events[0]]:  # the phone system sends the first one twice
            answer = await client.post("/webhooks/cti/events", json=event, headers=auth)
            assert answer.status_code == 200, answer.text
        refused = await client.post("/webhooks/cti/events", json=events[1])  # no token
        assert refused.status_code == 401
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(settings.interactions_topic, b"{not json", key=b"x")
        finally:
            await producer.stop()
        await recorded_to_end(settings)

        async def scraped() -> dict:
            answer = await client.get("/metrics")
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
            return samples(answer.text)

        def moved(name: str, **labels: str) -> float:
            return value(now, name, **labels) - value(before, name, **labels)

        async def timeline_moved() -> bool:
            nonlocal now
            now = await scraped()
            return moved("switchboard_projection_position", projection="timeline") > 0

        now: dict = {}
        await eventually(timeline_moved, what="the timeline's position to move")
        assert moved("switchboard_store_events", store="history") >= 5
        ringing = {"channel": "voice", "type": "call.ringing.v1"}
        assert moved("switchboard_interactions_recorded_total", **ringing) == 5
        assert moved("switchboard_interactions_duplicate_total") == 1
        dead = {"service": "recorder"}
        dead_letters = total(now, "switchboard_dead_letters_total", **dead)
        assert dead_letters - total(before, "switchboard_dead_letters_total", **dead) == 1
        route = {"method": "POST", "route": "/webhooks/cti/events"}
        assert moved("switchboard_http_request_seconds_count", status="200", **route) == 6
        assert moved("switchboard_http_request_seconds_count", status="401", **route) == 1
        assert moved("switchboard_store_append_seconds_count") >= 1
        lags = {
            labels: v
            for (name, labels), v in now.items()
            if name == "switchboard_consumer_lag"
            and dict(labels)["topic"] == settings.interactions_topic
        }
        assert lags, "no consumer lag reported for the interactions topic"
        assert set(lags.values()) == {0.0}, lags  # recorded to the end
        text = (await client.get("/metrics")).text
        assert CALLER not in text and CALLER.lstrip("+") not in text  # no personal data


async def test_a_worker_serves_its_probes_and_metrics_and_nothing_else(
    hub_settings: Settings,
) -> None:
    async with (
        gateway(hub_settings, ("recorder",)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        assert (await client.get("/healthz")).json() == {"status": "ok"}

        async def ready() -> bool:
            answer = await client.get("/readyz")
            return answer.status_code == 200 and answer.json()["checks"]["recorder"] == "ok"

        await eventually(ready, timeout=60, what="the recorder worker to be ready")
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "switchboard_store_events" in metrics.text
        # A worker holds no customer data to serve: the API is not there.
        assert (await client.get("/v1/customers/lookup?address=%2B4930")).status_code == 404
        assert (await client.get("/openapi.json")).status_code == 404
