"""The hub outlives a Kafka outage: started with the broker down, it serves its API, answers
webhooks 503 (so the phone system retries), and records everything once Kafka is back."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from channels.publishing import InteractionPublisher
from contracts import Channel, MessageReceived
from deploy.ports import free_port
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.hub import run_hub
from services.bootstrap.settings import Settings
from tests.helpers import eventually, recorded_refs, recorded_to_end, timeline_when_shown

pytestmark = pytest.mark.slow

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
TOKEN = "cti-token-for-tests"


async def test_hub_started_while_kafka_is_down_serves_and_records_once_kafka_is_up(
    restartable_kafka, store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await asyncio.to_thread(restartable_kafka.stop)
    settings = Settings(
        data_dir=tmp_path / "var",
        store=store_url,
        kafka_bootstrap=restartable_kafka.bootstrap,
        topic_partitions=2,
        session_timeout_ms=3000,
        http_port=free_port(),
        drain_refuse_seconds=0,
        cti_token=TOKEN,
    )
    stop = asyncio.Event()
    hub = asyncio.create_task(
        run_hub(bootstrap(settings), stop, services=["recorder", "timeline", "api"])
    )
    base = f"http://127.0.0.1:{settings.http_port}"
    call = {
        "event": "newCall",
        "call_id": "outage-1",
        "direction": "inbound",
        "from": "+493055512345",
        "to": "+493055500000",
    }
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:

            async def api_answers() -> bool:
                try:
                    return (await client.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(api_answers, timeout=30, what="the API while Kafka is down")
            await eventually(
                lambda: "recorder cannot run" in caplog.text,
                timeout=60,
                what="the recorder to report the outage and retry",
            )
            refused = await client.post("/webhooks/cti/events", json=call, headers=auth)
            assert refused.status_code == 503, refused.text
            assert "Retry-After" in refused.headers
            assert not hub.done(), "the hub went down with Kafka"
            # not ready, and it says why: a load balancer sends the webhooks elsewhere
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503, not_ready.text
            assert "kafka: not reachable" in not_ready.json()["detail"]
            assert "Retry-After" in not_ready.headers

            await asyncio.to_thread(restartable_kafka.start)

            async def webhook_accepted() -> bool:  # the phone system's retry
                response = await client.post("/webhooks/cti/events", json=call, headers=auth)
                return response.status_code < 300

            await eventually(webhook_accepted, timeout=90, what="the webhook once Kafka is back")

            async def ready() -> bool:
                answer = await client.get("/readyz")
                return answer.status_code == 200 and answer.json()["checks"]["recorder"] == "ok"

            await eventually(ready, timeout=90, what="/readyz once Kafka is back")
        async with InteractionPublisher(
            settings.kafka_bootstrap, topic=settings.interactions_topic
        ) as pub:
            for i in range(20):
                await pub.publish(
                    MessageReceived(
                        channel=Channel.sms,
                        party="+493055512345",
                        provider_ref=f"SM-outage-{i}",
                        occurred_at=T0 + timedelta(seconds=i),
                        body=f"after the outage {i}",
                    )
                )
        await eventually(lambda: len(recorded_refs(settings)) >= 21, timeout=90, what="21 recorded")
        await recorded_to_end(settings)
        assert set(recorded_refs(settings).values()) == {1}
        entries = await timeline_when_shown(settings, "+493055512345", 21)
        assert [e.type for e in entries].count("call.ringing.v1") == 1
    finally:
        stop.set()
        await asyncio.wait_for(hub, 60)
