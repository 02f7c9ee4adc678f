"""A call's routing through Twilio's callbacks: an offer that rings out goes to the next agent,
a queue's wait ends in overflow, after hours goes to voicemail — each decision on
``sb.routing.v1`` with its attempt and reason, over real Kafka.

The webhooks are driven through an ASGI transport with Twilio's signature over the public URL
(query strings included: our TwiML carries attempt and exclusions in the callback URLs).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from channels.publishing import InteractionPublisher
from contracts import AgentPresenceChanged, parse_interaction
from services.bootstrap.bootstrap import Hub, bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from tests.helpers import read_topic
from tests.standins.twilio_api import signed_twilio_request

TOKEN = "twilio-auth-token-for-routing-tests"
PUBLIC = "https://hooks.example.com/sb"
CALLER = "+14155550177"
HOTLINE = "+18005550100"
ROUTING = """
default_queue: support
offer_timeout_s: 12
queues:
  support:
    overflow: {after_s: 60, to_queue: backup}
  backup:
    overflow: {after_s: 30, voicemail: true}
  night:
    time_zone: Europe/Berlin
    hours: {daily: "09:00-10:00"}
    after_hours: {voicemail: true}
agents:
  ann: {queues: [support]}
  ben: {queues: [support]}
rules:
  - name: night line
    when: {dialled: ["+18005550199"]}
    queue: night
"""


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.db'}"


@pytest.fixture
def clock() -> datetime | None:
    """The router's clock: None for the real one."""
    return None


@pytest.fixture
def hub(hub_settings: Settings, tmp_path: Path, clock: datetime | None) -> Hub:
    """The hub as the settings build it, with the routing file below and Twilio's token."""
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING)
    settings = hub_settings.model_copy(
        update={
            "routing_config": routing,
            "twilio_auth_token": SecretStr(TOKEN),
            "public_base_url": PUBLIC,
        }
    )
    return bootstrap(settings, clock=None if clock is None else (lambda: clock))


@pytest.fixture
async def twilio(hub: Hub, publisher: InteractionPublisher) -> AsyncIterator[httpx.AsyncClient]:
    await ensure_topics(hub.settings, hub.settings.kafka_bootstrap)
    view = hub.timeline_view()
    board = hub.routing(view).board
    for agent in ("ann", "ben"):
        board.presence_changed(
            AgentPresenceChanged(
                agent=agent, presence="available", occurred_at=datetime.now(UTC), by=agent
            )
        )
    app = FastAPI()
    for router in hub.webhook_routers(publisher=publisher, directory=view):
        app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as c:
        yield c


async def post(client: httpx.AsyncClient, url: str, params: dict[str, str]) -> ET.Element:
    """POST to one of our URLs (as our TwiML gave it to Twilio), signed like Twilio signs."""
    public = url if url.startswith("https://") else PUBLIC + url
    parts = urlsplit(public)
    local = parts.path.removeprefix(urlsplit(PUBLIC).path) + (
        f"?{parts.query}" if parts.query else ""
    )
    answer = await client.post(
        local, data=params, headers=signed_twilio_request(TOKEN, public, params)
    )
    assert answer.status_code == 200, answer.text
    return ET.fromstring(answer.content)


def call(sid: str, to: str = HOTLINE, **more: str) -> dict[str, str]:
    return {"CallSid": sid, "From": CALLER, "To": to, "Direction": "inbound", **more}


async def test_an_offer_that_rings_out_goes_to_the_next_agent_then_the_queue_overflows(
    hub_settings: Settings, twilio: httpx.AsyncClient
) -> None:
    first = await post(twilio, "/webhooks/twilio/voice", call("CA1"))
    dial = first.find("Dial")
    assert dial is not None and dial.get("timeout") == "12"
    offered = dial.findtext("Client/Identity")
    other = {"ann": "ben", "ben": "ann"}[offered]

    # Nobody picks up: Twilio calls the Dial action; the call goes to the other agent.
    second = await post(
        twilio, dial.get("action"), call("CA1", DialCallStatus="no-answer", CallStatus="ringing")
    )
    assert second.findtext("Dial/Client/Identity") == other
    # The other lets it ring out too: nobody left, so it waits in the queue.
    third = await post(
        twilio,
        second.find("Dial").get("action"),
        call("CA1", DialCallStatus="no-answer", CallStatus="ringing"),
    )
    enqueue = third.find("Enqueue")
    assert enqueue is not None and enqueue.text == "support"

    # While it waits, the wait URL holds it; past the queue's 60 s it lets it leave.
    hold = await post(twilio, enqueue.get("waitUrl"), call("CA1", QueueTime="20"))
    assert hold.find("Leave") is None and hold.find("Pause") is not None
    leave = await post(twilio, enqueue.get("waitUrl"), call("CA1", QueueTime="61"))
    assert leave.find("Leave") is not None
    overflow = await post(
        twilio, enqueue.get("action"), call("CA1", QueueResult="leave", QueueTime="61")
    )
    assert overflow.findtext("Enqueue") == "backup"

    decisions = [
        parse_interaction(r.value)
        for r in await read_topic(
            hub_settings.kafka_bootstrap, hub_settings.routing_topic, expect=4
        )
    ]
    assert [
        (d.attempt, d.target.kind, d.target.agent or d.target.queue, d.rule) for d in decisions
    ] == [
        (1, "agent", offered, "skills"),
        (2, "agent", other, "skills"),
        (3, "queue", "support", "queued"),
        (4, "queue", "backup", "no-agent-online"),  # overflowed to a queue nobody serves
    ]
    assert f"{offered} declined the offer" in decisions[2].reason
    assert "waited 61 s in support" in decisions[3].reason


@pytest.mark.parametrize("clock", [datetime(2026, 12, 1, 22, 0, tzinfo=UTC)])  # 23:00 Berlin
async def test_a_call_after_hours_is_answered_by_voicemail_and_says_why(
    hub_settings: Settings, twilio: httpx.AsyncClient
) -> None:
    answer = await post(twilio, "/webhooks/twilio/voice", call("CA9", to="+18005550199"))
    assert answer.find("Record") is not None and answer.find("Enqueue") is None
    records = await read_topic(hub_settings.kafka_bootstrap, hub_settings.routing_topic, expect=1)
    decision = parse_interaction(records[0].value)
    assert (decision.rule, decision.target.kind, decision.target.queue) == (
        "after-hours",
        "voicemail",
        "night",
    )
    assert "rule 'night line' → queue night" in decision.reason
    assert "night is closed at Tue 23:00 Europe/Berlin" in decision.reason
