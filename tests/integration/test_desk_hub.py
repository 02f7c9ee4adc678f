"""The desk as the hub runs it: contacts published on Kafka are recorded and placed in
conversations by the hub's ``desk`` service; and no event the contracts accept stops it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hypothesis import HealthCheck, given, settings

from channels.publishing import InteractionPublisher
from contracts import Channel, InvalidInteraction, MessageReceived, parse_interaction
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.hub import run_hub
from services.bootstrap.kafka_topics import ensure_topics
from services.bootstrap.settings import Settings
from services.desk.follower import TOPICS
from services.domain import customer_id_for
from tests.generated import plausible_events
from tests.helpers import eventually

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PHONE = "+4930123456789"


async def test_contacts_published_on_kafka_reach_their_conversations_through_the_hub(
    hub_settings: Settings,
) -> None:
    await ensure_topics(hub_settings, hub_settings.kafka_bootstrap)
    hub = bootstrap(hub_settings)
    stop = asyncio.Event()
    running = asyncio.create_task(run_hub(hub, stop, services=("recorder", "desk")))
    texts = [(f"SM{i}", T0 + timedelta(minutes=i)) for i in range(5)]
    texts.append(("SM-later", T0 + timedelta(days=3)))  # after the quiet gap
    try:
        async with InteractionPublisher(
            hub_settings.kafka_bootstrap, topic=hub_settings.interactions_topic
        ) as publisher:
            for ref, at in [*texts, texts[0]]:  # the provider retries SM0: recorded once
                await publisher.publish(
                    MessageReceived(
                        channel=Channel.sms, party=PHONE, provider_ref=ref, occurred_at=at, body=ref
                    )
                )
        desk = hub.desk()
        customer = customer_id_for(PHONE)

        def placed() -> bool:
            conversations = desk.conversations(customer) if desk_has(customer) else []
            return sorted(c.contact_count for c in conversations) == [1, 5]

        def desk_has(customer_id) -> bool:
            from services.desk.store import load_desk

            return load_desk(desk.history, customer_id) is not None

        await eventually(placed, timeout=60, what="the SMS in two conversations")
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)


def test_no_event_the_contracts_accept_stops_the_desk_follower(hub_settings: Settings) -> None:
    hub = bootstrap(hub_settings)
    history, follower = hub.history(), hub.desk_follower()
    placed = []

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(plausible_events())
    def record_and_place(generated) -> None:
        _, raw = generated
        try:
            event = parse_interaction(raw)
        except InvalidInteraction:
            return
        event = event.model_copy(update={"provider_ref": f"gen-{uuid4().hex}"})
        history.record_interactions([event])
        follower.catch_up()  # raises if it cannot place it
        left = history.recorder.select_notifications(
            start=follower.position, limit=1, topics=TOPICS, inclusive_of_start=False
        )
        assert left == []  # every recorded contact was placed (or passed over), none stuck
        placed.append(event.type)

    record_and_place()
    assert len(set(placed)) >= 5, set(placed)
