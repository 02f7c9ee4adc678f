"""Kafka -> recorder -> customer history -> timeline, on SQLite and PostgreSQL, real broker."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from channels.publishing import InteractionPublisher
from contracts import (
    CallRinging,
    Channel,
    Direction,
    MessageReceived,
    dump_interaction,
    identity_of,
)
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.gateway.api import create_api
from services.recorder import Recorder
from tests.helpers import (
    eventually,
    read_topic,
    recorded_refs,
    recorded_to_end,
    timeline_follower,
)

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def sms(
    ref: str, body: str = "Where is my parcel?", party: str = "+49 30 12345678", at: datetime = NOW
) -> MessageReceived:
    return MessageReceived(
        channel=Channel.sms, party=party, provider_ref=ref, occurred_at=at, body=body
    )


async def test_published_sms_and_call_appear_on_the_timeline_and_lookup(
    hub_settings: Settings,
    running_recorder: Recorder,
    publisher: InteractionPublisher,
    auth_header: dict[str, str],
) -> None:
    await publisher.publish(sms("SM1"))
    await publisher.publish(
        CallRinging(
            direction=Direction.inbound,
            party="+493012345678",
            provider_ref="CA1:ringing",
            call_id="CA1",
            occurred_at=NOW + timedelta(minutes=5),
        )
    )
    follower = timeline_follower(hub_settings)
    view = bootstrap(hub_settings).timeline_view()

    def both_shown() -> bool:
        follower.catch_up()
        cid = view.customer_for_address("+493012345678")
        return cid is not None and len(view.timeline(cid)) == 2

    await eventually(both_shown, what="two timeline entries")
    users = bootstrap(hub_settings).user_directory()
    api = TestClient(create_api(view=view, users=users), headers=auth_header)
    found = api.get("/v1/lookup", params={"address": "+49 (30) 1234-5678"})
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["known"] is True and body["address"] == "+493012345678"
    card = body["customer"]
    assert card["contact_count"] == 2
    assert card["last_channel"] == "voice"
    assert [r["type"] for r in card["recent"]] == ["call.ringing.v1", "message.received.v1"]
    items = api.get(f"/v1/customers/{card['customer_id']}/timeline").json()["items"]
    assert [i["type"] for i in items] == ["call.ringing.v1", "message.received.v1"]
    assert items[1]["summary"] == "Where is my parcel?"
    unknown = api.get("/v1/lookup", params={"address": "+4930999999"})
    assert unknown.status_code == 200 and unknown.json() == {
        "address": "+4930999999",
        "known": False,
        "customer": None,
        "candidates": [],
    }
    assert api.get("/v1/lookup", params={"address": "not a phone"}).status_code == 422


async def test_same_provider_message_twice_is_recorded_once(
    hub_settings: Settings, running_recorder: Recorder, publisher: InteractionPublisher
) -> None:
    first = sms("SM-dup")
    await publisher.publish(first)
    await publisher.publish(first)  # the provider retried the webhook
    # and once more with a new event id, as a provider retry would have
    await publisher.publish(first.model_copy(update={"event_id": first.event_id.__class__(int=7)}))
    await publisher.publish(sms("SM-next"))
    await eventually(lambda: running_recorder.stats.consumed >= 4, what="4 records consumed")
    counts = recorded_refs(hub_settings)
    assert counts["message.received.v1|SM-dup"] == 1
    assert counts["message.received.v1|SM-next"] == 1
    assert running_recorder.stats.duplicates == 2


async def test_poison_record_is_dead_lettered_with_reason_and_later_records_are_recorded(
    hub_settings: Settings, running_recorder: Recorder, publisher: InteractionPublisher
) -> None:
    await publisher.publish_raw(b'{"type": "fax.received.v1"}', key="x")
    await publisher.publish_raw(b"\xff\xfe not json", key="y")
    # A time at the edge of the range whose UTC conversion overflows (it once stopped the
    # hub); on the partition of the record after it, which must still be recorded.
    after = sms("SM-after")
    ancient = json.loads(dump_interaction(sms("SM-ancient")))
    ancient["occurred_at"] = "0001-01-01T00:00:00+03:04"
    ancient_raw = json.dumps(ancient, separators=(",", ":")).encode()
    await publisher.publish_raw(ancient_raw, key=identity_of(after.party))
    await publisher.publish(after)
    await recorded_to_end(hub_settings)  # every record handled: its partition's offset passed
    counts = recorded_refs(hub_settings)
    assert counts["message.received.v1|SM-after"] == 1
    assert counts["message.received.v1|SM-ancient"] == 0
    letters = await read_topic(
        hub_settings.kafka_bootstrap, hub_settings.deadletter_topic, expect=3
    )
    assert len(letters) == 3
    by_payload = {}
    for letter in letters:
        body = json.loads(letter.value)
        by_payload[base64.b64decode(body["payload_b64"])] = body
    fax = by_payload[b'{"type": "fax.received.v1"}']
    assert "unknown type 'fax.received.v1'" in fax["reason"]
    assert fax["source_topic"] == hub_settings.interactions_topic
    assert "Invalid JSON" in by_payload[b"\xff\xfe not json"]["reason"]
    assert "occurred_at" in by_payload[ancient_raw]["reason"]
    assert running_recorder.stats.dead_lettered == 3


async def test_restarted_recorder_resumes_from_stored_offsets_without_rerecording(
    hub_settings: Settings, publisher: InteractionPublisher
) -> None:
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    for i in range(20):
        await publisher.publish(sms(f"SM-r{i}", party=f"+49301234{5600 + i}"))
    for _ in range(2):
        recorder = bootstrap(hub_settings).recorder()
        stop = asyncio.Event()
        task = asyncio.create_task(recorder.run(stop))
        await recorder.wait_started()
        await eventually(
            lambda: sum(recorded_refs(hub_settings).values()) >= 20, what="20 recorded"
        )
        await recorded_to_end(hub_settings)
        stop.set()
        await asyncio.wait_for(task, 30)
    counts = recorded_refs(hub_settings)
    assert len(counts) == 20 and set(counts.values()) == {1}
    # The second run was assigned the partitions and re-read nothing: it starts at the
    # offsets stored with the events (Kafka's committed offsets are not the source of truth).
    assert recorder.stats.consumed == 0


async def test_delivery_status_on_the_view_only_moves_forward(
    hub_settings: Settings,
    running_recorder: Recorder,
    publisher: InteractionPublisher,
    auth_header: dict[str, str],
) -> None:
    from contracts import DeliveryStatus, DeliveryStatusChanged, MessageSent

    party = "+493012345678"
    await publisher.publish(
        MessageSent(
            channel=Channel.sms,
            party=party,
            provider_ref="SMout1",
            occurred_at=NOW,
            body="Your parcel left",
        )
    )
    # The provider's callbacks arrive out of order: delivered, then a late sent.
    for status in (DeliveryStatus.delivered, DeliveryStatus.sent):
        await publisher.publish(
            DeliveryStatusChanged(
                channel=Channel.sms,
                party=party,
                provider_ref=f"SMout1:{status}",
                occurred_at=NOW + timedelta(seconds=5),
                status=status,
                message_ref="SMout1",
            )
        )
    follower = timeline_follower(hub_settings)
    view = bootstrap(hub_settings).timeline_view()

    def three_on_timeline() -> bool:
        follower.catch_up()
        cid = view.customer_for_address(party)
        return cid is not None and len(view.timeline(cid)) == 3

    await eventually(three_on_timeline, what="the message and both reports")
    users = bootstrap(hub_settings).user_directory()
    api = TestClient(create_api(view=view, users=users), headers=auth_header)
    body = api.get("/v1/deliveries/SMout1").json()
    assert body["status"] == "delivered"
    assert api.get("/v1/deliveries/nope").status_code == 404
