"""The generic CTI webhook: any phone system's call events -> real Kafka -> timeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from channels.publishing import InteractionPublisher
from contracts import AgentPresenceChanged
from projections.timeline import TimelineView
from services.bootstrap.bootstrap import Hub, bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.recorder import Recorder
from tests.helpers import eventually, recorded_refs, records_in, timeline_follower

TOKEN = "cti-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PATH = "/webhooks/cti/events"
CUSTOMER = "+4930123456789"
HOTLINE = "+493050000000"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """Channel tests need one store; the store itself is tested on both elsewhere."""
    return f"sqlite:///{tmp_path / 'history.db'}"


def cti_hub(settings: Settings, **more: object) -> Hub:
    """The hub of a phone system's installation: the CTI token set, national numbers German."""
    update = {"cti_token": SecretStr(TOKEN), "default_region": "DE", **more}
    return bootstrap(settings.model_copy(update=update))


def cti_app(hub: Hub, publisher: InteractionPublisher, view: TimelineView | None = None) -> FastAPI:
    """The hub's webhooks (only the CTI one is configured), without the rest of its API."""
    app = FastAPI()
    directory = view if view is not None else hub.timeline_view()
    for router in hub.webhook_routers(publisher=publisher, directory=directory):
        app.include_router(router)
    return app


@pytest.fixture
async def pbx(
    hub_settings: Settings, publisher: InteractionPublisher
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=cti_app(cti_hub(hub_settings), publisher))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as c:
        yield c


async def test_json_and_form_events_of_two_calls_reach_the_timeline(
    hub_settings: Settings, running_recorder: Recorder, pbx: httpx.AsyncClient
) -> None:
    # An Asterisk-style inbound call, partly JSON, partly form-encoded, national numbers.
    inbound = {"call_id": "1714060712.42", "direction": "inbound", "from": "030 123456789"}
    inbound["to"] = "030 50000000"
    answers = [
        await pbx.post(
            PATH,
            json={**inbound, "event": "newCall", "timestamp": "2026-03-14T10:00:00+01:00"},
            headers=AUTH,
        ),
        await pbx.post(
            PATH,
            data={
                **inbound,
                "event": "answer",
                "extension": "201",
                "timestamp": "2026-03-14T09:00:05Z",
            },
            headers=AUTH,
        ),
        await pbx.post(
            PATH,
            json={
                **inbound,
                "event": "hangup",
                "duration": 61,
                "agent": "agent_7",
                "timestamp": "2026-03-14T09:01:06Z",
            },
            headers=AUTH,
        ),
        # An outbound call nobody picked up: the customer is "to".
        await pbx.post(
            PATH,
            data={
                "event": "hangup",
                "call_id": "out-9",
                "direction": "outbound",
                "from": HOTLINE,
                "to": CUSTOMER,
                "reason": "busy",
                "duration": "",
                "timestamp": "2026-03-14T11:00:00+01:00",
            },
            headers=AUTH,
        ),
    ]
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert answers[0].json() == {
        "status": "recorded",
        "type": "call.ringing.v1",
        "provider_ref": "1714060712.42:ringing",
        "detail": None,
        "route": None,
    }
    follower = timeline_follower(hub_settings)
    view = bootstrap(hub_settings).timeline_view()

    def four_entries() -> bool:
        follower.catch_up()
        customer = view.customer_for_address(CUSTOMER)
        return customer is not None and len(view.timeline(customer)) == 4

    await eventually(four_entries, what="four call events on the timeline")
    entries = view.timeline(view.customer_for_address(CUSTOMER))  # type: ignore[arg-type]
    assert [(e.summary, e.direction) for e in entries] == [
        ("Missed call (busy)", "outbound"),
        ("Call ended after 1m01s", "inbound"),
        ("Call answered by 201", "inbound"),
        (f"Incoming call from {CUSTOMER}", "inbound"),
    ]
    assert entries[1].payload["agent"] == "agent_7"
    assert entries[3].payload["endpoint"] == "030 50000000"


async def test_the_same_event_posted_twice_is_recorded_once(
    hub_settings: Settings, running_recorder: Recorder, pbx: httpx.AsyncClient
) -> None:
    event = {
        "event": "newCall",
        "call_id": "c-7",
        "direction": "inbound",
        "from": CUSTOMER,
        "to": HOTLINE,
    }
    for _ in range(3):
        assert (await pbx.post(PATH, json=event, headers=AUTH)).status_code == 200
    await eventually(lambda: running_recorder.stats.consumed >= 3, what="three records consumed")
    assert recorded_refs(hub_settings)["call.ringing.v1|c-7:ringing"] == 1


async def test_a_missing_or_wrong_token_is_a_bearer_challenge_and_publishes_nothing(
    hub_settings: Settings, pbx: httpx.AsyncClient
) -> None:
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    event = {
        "event": "newCall",
        "call_id": "c-8",
        "direction": "inbound",
        "from": CUSTOMER,
        "to": HOTLINE,
    }
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ):
        answer = await pbx.post(PATH, json=event, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert await records_in(hub_settings) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {
                "event": "ringing",
                "call_id": "c",
                "direction": "inbound",
                "from": CUSTOMER,
                "to": "1",
            },
            "event",
        ),
        ({"event": "newCall", "direction": "inbound", "from": CUSTOMER, "to": "1"}, "call_id"),
        (
            {
                "event": "newCall",
                "call_id": "c",
                "direction": "sideways",
                "from": CUSTOMER,
                "to": "1",
            },
            "direction",
        ),
        ({"event": "newCall", "call_id": "c", "direction": "inbound", "to": "1"}, "from"),
        (
            {
                "event": "newCall",
                "call_id": "c",
                "direction": "inbound",
                "from": CUSTOMER,
                "to": "1",
                "timestamp": "2026-03-14T10:00:00",
            },
            "timestamp",
        ),
        (
            {
                "event": "newCall",
                "call_id": "c",
                "direction": "inbound",
                "from": CUSTOMER,
                "to": "1",
                # Converting this to UTC leaves datetime's range (year 0).
                "timestamp": "0001-01-01T00:00:00+03:04",
            },
            "timestamp",
        ),
        (
            {
                "event": "hangup",
                "call_id": "c",
                "direction": "inbound",
                "from": CUSTOMER,
                "to": "1",
                "duration": -3,
            },
            "duration",
        ),
    ],
)
async def test_malformed_events_are_400s_naming_the_field(
    hub_settings: Settings, pbx: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    answer = await pbx.post(PATH, json=body, headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["detail"]
    assert await records_in(hub_settings) == 0


async def test_bodies_that_are_not_an_event_object(pbx: httpx.AsyncClient) -> None:
    json_type = {**AUTH, "Content-Type": "application/json"}
    assert (await pbx.post(PATH, content=b"{not json", headers=json_type)).status_code == 400
    assert (await pbx.post(PATH, content=b"[1, 2]", headers=json_type)).status_code == 400
    plain = {**AUTH, "Content-Type": "text/plain"}
    assert (await pbx.post(PATH, content=b"event=newCall", headers=plain)).status_code == 415


async def test_a_withheld_callers_call_is_recorded_under_the_call(
    hub_settings: Settings, running_recorder: Recorder, pbx: httpx.AsyncClient
) -> None:
    event = {
        "event": "newCall",
        "call_id": "c-9",
        "direction": "inbound",
        "from": "anonymous",
        "to": HOTLINE,
    }
    answer = await pbx.post(PATH, json=event, headers=AUTH)
    assert answer.status_code == 200
    assert answer.json()["status"] == "recorded"
    await eventually(
        lambda: recorded_refs(hub_settings)["call.ringing.v1|c-9:ringing"] == 1,
        what="the withheld call recorded",
    )


def test_the_openapi_document_describes_json_and_form_bodies_and_the_bearer_token(
    tmp_path: Path,
) -> None:
    dead = InteractionPublisher("127.0.0.1:1")
    spec = cti_app(cti_hub(Settings(data_dir=tmp_path)), dead).openapi()
    operation = spec["paths"][PATH]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "application/x-www-form-urlencoded"}
    schema = content["application/json"]["schema"]
    assert set(schema["required"]) == {"event", "call_id", "direction", "from", "to"}
    assert schema["properties"]["event"]["enum"] == ["newCall", "answer", "hangup"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert {"400", "401", "413", "415", "503"} <= set(operation["responses"])


async def test_a_routed_new_call_names_its_target_and_the_decision_is_recorded(
    hub_settings: Settings,
    running_recorder: Recorder,
    publisher: InteractionPublisher,
    tmp_path: Path,
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        "default_queue: support\nqueues:\n  support: {}\n"
        "agents:\n  ann: {queues: [support]}\n  ben: {queues: [support]}\n"
    )
    hub = cti_hub(hub_settings, routing_config=routing)
    view = hub.timeline_view()
    # As the routing feed would tell the router's board from the presence topic.
    hub.routing(view).board.presence_changed(
        AgentPresenceChanged(
            agent="ben", presence="available", occurred_at=datetime.now(UTC), by="ben"
        )
    )
    app = cti_app(hub, publisher, view)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as pbx:
        call = {"event": "newCall", "call_id": "77.1", "direction": "inbound"}
        answer = await pbx.post(PATH, json={**call, "from": CUSTOMER, "to": HOTLINE}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        route = answer.json()["route"]
        assert (route["kind"], route["agent"], route["queue"]) == ("agent", "ben", "support")
        assert "ben" in route["reason"]
        # ben holds that call (capacity 1) and ann is offline: the next caller waits.
        again = await pbx.post(
            PATH,
            json={**call, "call_id": "77.2", "from": "+4930111111", "to": HOTLINE},
            headers=AUTH,
        )
        assert again.json()["route"]["kind"] == "queue"
    await eventually(
        lambda: recorded_refs(hub_settings)["contact.routed.v1|77.1:routed:1"] == 1,
        what="the decision to be recorded in the caller's history",
    )
